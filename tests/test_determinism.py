"""The same seed and config on the CPU give the same run, to the byte; another seed another run."""

import json
from pathlib import Path

import pytest
from omegaconf import open_dict

from nerdistill.train import train
from tests.conftest import compose_config

# where a run went and how long it took: the only fields that may differ between identical runs
RUN_SPECIFIC = ("timing", "best_checkpoint")


def outcome(run_dir: Path) -> tuple[dict, bytes, str]:
    """metrics.json without timings and paths, the exported weights' bytes, the share log."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert Path(metrics["best_checkpoint"]).parent == run_dir / "checkpoints"
    kept = {k: v for k, v in metrics.items() if k not in RUN_SPECIFIC}
    return kept, (run_dir / "model" / "model.safetensors").read_bytes(), (run_dir / "distilled_share.csv").read_text()


def assert_same_seed_same_run_other_seed_other_run(tmp_path: Path, overrides: list[str], learns: bool = True) -> None:
    """``learns``: the budget is long enough for the scores to move off 0 (else only the weights
    can show that another seed gives another run)."""
    runs = {name: [*overrides, f"seed={seed}"] for name, seed in (("a", 1), ("b", 1), ("c", 2))}
    for name, run in runs.items():
        cfg = compose_config("train", run, tmp_path / name)
        with open_dict(cfg):  # run a tokenises, b and c read its cache (keyed by content): that must not matter either
            cfg.paths.cache_dir = str(tmp_path / "cache")
        train(cfg)
    a, b, c = (outcome(tmp_path / name) for name in runs)
    assert a[0] == b[0]  # every metric, to the last digit
    assert a[1] == b[1]  # the exported model, byte for byte
    assert a[2] == b[2]
    assert a[1] != c[1]  # another seed: other initial weights, batches and dropout masks
    if learns:
        assert a[0]["test"] != c[0]["test"] or a[0]["val_f1_best"] != c[0]["val_f1_best"]


def test_tiny_runs_are_reproducible(tmp_path, tiny_train_overrides):
    assert_same_seed_same_run_other_seed_other_run(tmp_path, [*tiny_train_overrides, "schedule=sigmoid"])


@pytest.mark.slow
def test_minilm_runs_are_reproducible(tmp_path, tiny_train_overrides):
    short = [o for o in tiny_train_overrides if not o.startswith(("model=", "trainer.max_epochs", "trainer.limit_"))]
    budget = [
        "model=minilm",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "data.passes.original=0.5",
        "data.passes.distilled=0.5",
    ]
    # 8 steps: MiniLM tags everything O on any seed (F1 0), so the seeds differ in their weights only
    assert_same_seed_same_run_other_seed_other_run(tmp_path, [*short, *budget, "schedule=sigmoid"], learns=False)
