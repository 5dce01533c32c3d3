"""The training entry point end to end with a tiny random BERT (seconds per run)."""

import csv
import itertools
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from transformers import pipeline

from nerdistill.student.module import lr_factor
from nerdistill.train import train
from tests.conftest import compose_config


def test_train_writes_metrics_plan_share_log_and_hf_model(tmp_path, tiny_train_overrides):
    cfg = compose_config("train", [*tiny_train_overrides, "schedule=sigmoid"], tmp_path)
    metrics = train(cfg)

    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    for key in ("precision", "recall", "f1"):
        assert 0.0 <= written["test"]["micro"][key] <= 1.0
        assert key in written["test"]["macro"]
    assert set(written["test"]["per_type"]) <= {"PER", "ORG", "LOC", "MISC"}
    assert 0.0 <= written["val_f1_best"] <= 1.0

    with (tmp_path / "distilled_share.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == written["global_step"] == 16  # (64 + 64) / 8 steps
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert (plan["total_steps"], plan["epochs"], plan["steps_per_epoch"]) == (16, 2, 8)
    assert float(rows[0]["realised_share"]) == 1.0 and float(rows[-1]["realised_share"]) == 0.0
    assert all(abs(float(r["scheduled_share"]) - float(r["realised_share"])) <= 1 / 8 for r in rows)

    tagger = pipeline("token-classification", model=str(tmp_path / "model"))
    assert isinstance(tagger("Peter Blackburn visited Paris ."), list)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_csv_log_holds_the_lr_schedule_and_the_best_dev_f1_of_the_tested_checkpoint(tmp_path, tiny_train_overrides):
    overrides = [
        *tiny_train_overrides,
        "logger=csv",
        "trainer.log_every_n_steps=1",
        "schedule=sequential",
        "model.module.lr_restart=true",
    ]
    cfg = compose_config("train", overrides, tmp_path)
    metrics = train(cfg)

    with (tmp_path / "csv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    logged = {int(r["step"]): float(r["train/lr/decay"]) for r in rows if r["train/lr/decay"]}
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert sorted(logged) == list(range(plan["total_steps"]))
    restart = [s / plan["total_steps"] for s in plan["phase_steps"]]
    module = cfg.model.module
    for step, lr in logged.items():  # the LR the optimiser used at each step, restarting where the data switches
        assert lr == pytest.approx(
            module.lr * lr_factor(step / plan["total_steps"], restart, module.warmup_ratio, module.lr_schedule)
        )
    assert plan["phase_steps"] == [8] and logged[8] == 0.0 < logged[7] < logged[9]

    dev = [(float(r["val/f1"]), float(r["val/f1_best"])) for r in rows if r["val/f1"]]
    assert len(dev) == 2 and [best for _, best in dev] == list(itertools.accumulate((f1 for f1, _ in dev), max))
    assert metrics["val_f1_best"] == pytest.approx(max(f1 for f1, _ in dev))
    assert f"f1{metrics['val_f1_best']:.4f}" in Path(metrics["best_checkpoint"]).name


@pytest.mark.slow
def test_compiled_model_trains_and_saves_eager_parameter_names(tmp_path, tiny_train_overrides, monkeypatch):
    # Dynamo captures the graphs as with the default backend; what this test is about (the in-place
    # compile keeps checkpoints and exports eager) does not need inductor's code generation, which
    # takes minutes on 2 CPU cores
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(
        torch.nn.Module, "compile", lambda self, **kwargs: compile_module(self, backend="eager", **kwargs)
    )
    cfg = compose_config("train", [*tiny_train_overrides, "model.module.compile=true", "trainer.max_steps=3"], tmp_path)
    metrics = train(cfg)
    assert metrics["global_step"] == 3
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert "model.classifier.weight" in state and not any("_orig_mod" in key for key in state)
    assert isinstance(pipeline("token-classification", model=str(tmp_path / "model"))("Peter visited Paris ."), list)


def test_fast_dev_run_flag(tmp_path, tiny_train_overrides):
    cfg = compose_config("train", [*tiny_train_overrides, "trainer.fast_dev_run=true", "schedule=simple_mix"], tmp_path)
    metrics = train(cfg)
    assert metrics["global_step"] == 1


class InterruptAfterFirstEpoch(pl.Callback):
    """Stands in for Ctrl-C early in the second epoch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_a_checkpoint_and_resume_continues_the_schedule(tmp_path, tiny_train_overrides):
    overrides = [*tiny_train_overrides, "schedule=linear"]
    stop = "+callbacks.interrupt._target_=tests.test_train.InterruptAfterFirstEpoch"
    with pytest.raises(SystemExit):  # Lightning shuts down gracefully on Ctrl-C, then exits 1
        train(compose_config("train", [*overrides, stop], tmp_path / "a"))
    assert (tmp_path / "a" / "checkpoints" / "interrupted.ckpt").exists()
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    # the same output dir without ckpt_path: an error, not a silent resume (Lightning's default
    # with OnExceptionCheckpoint), and the interrupted run's checkpoint is kept
    with pytest.raises(FileExistsError, match="ckpt_path="):
        train(compose_config("train", overrides, tmp_path / "a"))
    assert (tmp_path / "a" / "checkpoints" / "interrupted.ckpt").exists()
    metrics = train(compose_config("train", [*overrides, f"ckpt_path={last}"], tmp_path / "b"))
    assert metrics["global_step"] == 16
    with (tmp_path / "b" / "distilled_share.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(8, 16))
    assert float(rows[0]["scheduled_share"]) == pytest.approx(1 - 8 / 16)
