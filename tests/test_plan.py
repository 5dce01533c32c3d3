"""The run plan: one count of optimiser steps for the sampler, the LR schedule and the share log."""

import csv
import logging

import pytest
import pytorch_lightning as pl
import torch

from nerdistill.student.plan import make_plan
from nerdistill.student.schedules import Original, Sequential
from nerdistill.train import build, train
from tests.conftest import compose_config

SEQUENTIAL = Sequential(switch=0.25)


def test_budget_is_cut_into_epochs_of_optimiser_steps():
    plan = make_plan(SEQUENTIAL, 100, 300, 1000, 10, max_epochs=4)
    assert (plan.steps_per_epoch, plan.epochs, plan.total_steps, plan.batches_per_epoch) == (25, 4, 100, 25)
    accumulated = make_plan(SEQUENTIAL, 100, 300, 1000, 10, accumulate=2, world_size=2, max_epochs=4)
    # 40 examples per optimiser step: the same budget in a quarter of the steps, each of 2 batches
    assert (accumulated.steps_per_epoch, accumulated.total_steps, accumulated.batches_per_epoch) == (7, 28, 14)


def test_max_steps_ends_training_where_lightning_does(caplog):
    shorter = make_plan(SEQUENTIAL, 100, 300, 1000, 10, max_epochs=4, max_steps=30)
    assert (shorter.total_steps, shorter.epochs) == (30, 2)
    unbounded = make_plan(SEQUENTIAL, 100, 300, 1000, 10, max_epochs=-1, max_steps=250)
    assert (unbounded.steps_per_epoch, unbounded.total_steps, unbounded.epochs) == (100, 250, 3)
    with caplog.at_level(logging.WARNING):
        capped = make_plan(SEQUENTIAL, 100, 300, 1000, 10, max_epochs=1, max_steps=250)
    assert capped.total_steps == 100 and "trainer.max_epochs=-1" in caplog.text
    with pytest.raises(ValueError, match="trainer.max_steps"):
        make_plan(SEQUENTIAL, 100, 300, 1000, 10, max_epochs=-1)


def test_phase_steps_are_the_first_steps_past_each_boundary():
    assert make_plan(SEQUENTIAL, 100, 300, 1000, 10, max_epochs=4).phase_steps() == (25,)
    assert make_plan(Sequential(switch=0.3), 100, 300, 1000, 10, max_epochs=1, max_steps=33).phase_steps() == (10,)
    assert make_plan(Original(), 100, 0, 1000, 10, max_epochs=1).phase_steps() == ()


class StepRecorder(pl.Callback):
    """The LR of every optimiser step and the distilled share of every batch, in order."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.shares: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.shares.append(float(batch["distilled_share"]))


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.accumulate_grad_batches=2"],
        # beyond the budget's one epoch, by steps; the switch (2/3 x 41 = 27.3) would fall between
        # the two batches of step 27 if the sampler counted batches, not optimiser steps
        ["trainer.accumulate_grad_batches=2", "trainer.max_epochs=-1", "trainer.max_steps=41", "data.passes.distilled=2"],
        ["trainer.max_steps=11"],  # before the budget's end
    ],
)
def test_lr_restart_and_data_switch_land_on_the_same_step(tmp_path, tiny_train_overrides, overrides):
    cfg = compose_config("train", [*tiny_train_overrides, "schedule=sequential", "trainer.max_epochs=1", *overrides, "trainer.limit_val_batches=0"], tmp_path)
    recorder = StepRecorder()
    run = build(cfg, callbacks=[recorder], logger=False, enable_checkpointing=False)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    plan = run.plan
    assert run.trainer.global_step == len(recorder.lrs) == plan.total_steps
    accumulate = plan.accumulate
    assert len(recorder.shares) == plan.total_steps * accumulate
    # the first optimiser step all of whose batches are gold, and the first step of the LR's second
    # warmup: after the first phase's decay began, where the LR stops decaying
    switch = next(step for step in range(plan.total_steps) if all(s == 0.0 for s in recorder.shares[step * accumulate : (step + 1) * accumulate]))
    lrs = recorder.lrs
    decaying = next(step for step in range(1, plan.total_steps) if lrs[step] < lrs[step - 1])
    restart = next(step for step in range(decaying, plan.total_steps) if lrs[step] == 0.0 or lrs[step] > lrs[step - 1])
    assert switch == restart == plan.phase_steps()[0]
    assert all(s == 1.0 for s in recorder.shares[: switch * accumulate])


def test_limit_train_batches_is_refused_with_the_key_to_use(tmp_path, tiny_train_overrides):
    cfg = compose_config("train", [*tiny_train_overrides, "+trainer.limit_train_batches=0.5"], tmp_path)
    with pytest.raises(ValueError, match="data.steps_per_epoch"):
        build(cfg, logger=False, enable_checkpointing=False)


def test_share_log_counts_optimiser_steps_with_accumulation(tmp_path, tiny_train_overrides):
    cfg = compose_config("train", [*tiny_train_overrides, "schedule=sequential", "trainer.accumulate_grad_batches=2"], tmp_path)
    metrics = train(cfg)
    with (tmp_path / "distilled_share.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(r["step"]) for r in rows]
    assert steps == [t for t in range(metrics["global_step"]) for _ in range(2)]
    assert torch.tensor([float(r["progress"]) for r in rows]).max() < 1.0
