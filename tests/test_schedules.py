import math

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nerdistill.student.schedules import Cosine, Distilled, Linear, Original, Power, Sequential, Sigmoid, SimpleMix
from tests.conftest import CONF


@pytest.mark.parametrize(
    ("schedule", "expected"),  # share at progress 0, 0.5, 1
    [
        (Original(), (0, 0, 0)),
        (Distilled(), (1, 1, 1)),
        (Sequential(switch=0.4), (1, 0, 0)),
        (Sequential(switch=0.6), (1, 1, 0)),
        (SimpleMix(mix=0.3), (0.3, 0.3, 0.3)),
        (Linear(), (1, 0.5, 0)),
        (Cosine(), (1, 0.5, 0)),
        (Sigmoid(steepness=10, midpoint=0.5), (1 / (1 + math.exp(-5)), 0.5, 1 / (1 + math.exp(5)))),
        (Power(exponent=2), (1, 0.25, 0)),
        (Power(exponent=2, order="original_first"), (0, 0.75, 1)),
        (Sequential(switch=0.4, order="original_first"), (0, 1, 1)),
        (Cosine(order="original_first"), (0, 0.5, 1)),
    ],
)
def test_share_at_start_middle_end(schedule, expected):
    assert [schedule(p) for p in (0.0, 0.5, 1.0)] == pytest.approx(expected)


def test_pool_dependent_defaults_resolve_from_sizes():
    assert SimpleMix().resolve(1000, 3000)(0.2) == pytest.approx(0.75)
    assert Sequential().resolve(1000, 3000).switch == pytest.approx(0.75)
    assert Sequential(order="original_first").resolve(1000, 3000).switch == pytest.approx(0.25)
    with pytest.raises(ValueError, match="resolve"):
        SimpleMix()(0.5)


def test_passes_weigh_the_sizes_except_for_all():
    """The defaults (20 gold passes, 3 distilled) put sequential's switch and simple_mix's share at
    the pass-weighted ratio; schedule=all draws every sentence equally often."""
    weighted = 3 * 4887 / (3 * 4887 + 20 * 1000)
    assert Sequential().resolve(1000, 4887, 20, 3).switch == pytest.approx(weighted)
    assert SimpleMix().resolve(1000, 4887, 20, 3).mix == pytest.approx(weighted)
    all_ = instantiate(OmegaConf.load(CONF / "schedule" / "all.yaml"))
    assert all_.resolve(1000, 4887, 20, 3).mix == pytest.approx(4887 / 5887)
    assert all_.resolve(2000, 2000, 20, 3).mix == pytest.approx(0.5)


def test_pools_used():
    assert not Original().uses_distilled and Original().uses_original
    assert Distilled().uses_distilled and not Distilled().uses_original
    assert Sigmoid().uses_distilled and Sigmoid().uses_original


@pytest.mark.parametrize(
    "build",
    [
        lambda: SimpleMix(mix=1.5),
        lambda: Sequential(switch=-0.1),
        lambda: Sigmoid(steepness=-1),
        lambda: Sigmoid(midpoint=2),
        lambda: Power(exponent=0),
        lambda: Power(exponent=-2),
        lambda: Linear(order="backwards"),
    ],
)
def test_out_of_range_parameters_are_errors(build):
    with pytest.raises(ValueError, match="schedule"):
        build()


def test_every_schedule_config_instantiates():
    configs = sorted((CONF / "schedule").glob("*.yaml"))
    assert {c.stem for c in configs} >= {
        "original",
        "distilled",
        "sequential",
        "simple_mix",
        "sigmoid",
        "cosine",
        "power",
        "linear",
    }
    grid = [k / 20 for k in range(21)]
    for config in configs:
        schedule = instantiate(OmegaConf.load(config)).resolve(1000, 4887)
        shares = [schedule.share(p) for p in grid]
        # the curve itself stays in [0, 1] (the clamp in __call__ hides nothing), and a shipped
        # schedule moves from distilled towards gold, never back
        assert all(0.0 <= s <= 1.0 for s in shares), config.stem
        assert all(a >= b for a, b in zip(shares, shares[1:])), config.stem
