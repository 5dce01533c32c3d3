"""The global random number generators' states, as a checkpoint can hold them.

Lightning restores a resumed run's weights, optimiser, LR scheduler, loops and callbacks, not the
global generators that dropout masks (``nerdistill.student.dropout``: torch's default generator) and the
DataLoader iterator's base seed draw from: without them a resumed run trains on other masks than
the run it continues.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_states() -> dict:
    """Python's, NumPy's and torch's (CPU, and CUDA once initialised) global generator states, in
    types that ``torch.load(weights_only=True)`` reads back (tensors, tuples, numbers)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Set the generators to what :func:`rng_states` returned (CUDA's only where the same number
    of devices is visible)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and torch.cuda.device_count() == len(states["cuda"]):
        torch.cuda.set_rng_state_all(states["cuda"])
