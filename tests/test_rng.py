"""The random generator states a checkpoint holds: read back with ``weights_only=True``, they replay the draws."""

import io
import random

import numpy as np
import torch

from nerdistill.student.rng import rng_states, set_rng_states


def draws() -> tuple:
    return random.random(), np.random.rand(), np.random.randn(), torch.rand(3).tolist()


def test_saved_states_load_weights_only_and_replay_the_draws():
    np.random.randn()  # NumPy's state then holds a cached Gaussian
    buffer = io.BytesIO()
    torch.save({"rng_states": rng_states()}, buffer)
    expected = draws()
    buffer.seek(0)
    set_rng_states(torch.load(buffer, weights_only=True)["rng_states"])
    assert draws() == expected
