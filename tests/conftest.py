"""Shared fixtures: the real data beside the checkout and composed Hydra configs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATA_DIR = Path(os.environ.get("NERDISTILL_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()

# under pytest-xdist (``-n N``), each worker gets its share of the cores instead of all of them
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(autouse=True)
def sigint_handler_restored():
    """Lightning ignores SIGINT for good once fit sees a KeyboardInterrupt (its shutdown must not be
    interrupted), and processes started afterwards inherit that: a later test's Ctrl-C to a child
    job would be lost. Every test gets the handler it started with back."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "conll2003" / "train.txt").exists():
        pytest.fail(f"CoNLL-2003 not found under {DATA_DIR}; set NERDISTILL_DATA_DIR")
    return DATA_DIR


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as ``python -m nerdistill.<verb>`` would, with outputs in ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name=config_name, overrides=[f"paths.data_dir={DATA_DIR}", *overrides], return_hydra_config=True
        )
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.cache_dir = str(output_dir / "cache")
        del cfg.hydra
    return cfg


# a tiny random BERT on a small budget: seconds, not minutes
TINY_TRAIN = [
    "model=tiny",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "data.gold_budget=64",
    "data.distilled_budget=64",
    "data.passes.original=1",
    "data.passes.distilled=1",
    "data.batch_size=8",
    "data.eval_batch_size=256",
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]


# a tiny gold-only run, one epoch: a model to evaluate, predict or load
TINY_GOLD_RUN = [
    "model=tiny",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "schedule=original",
    "data.gold_budget=64",
    "data.passes.original=1",
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


@pytest.fixture
def tiny_train_overrides() -> list[str]:
    return list(TINY_TRAIN)
