"""The run plan: one count of optimiser steps for the sampler, the LR schedule and the share log."""

import csv
import logging
import math
import re

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from nerdistill.student.blend import blend
from nerdistill.student.plan import make_plan
from nerdistill.student.relabel import gold_key
from nerdistill.student.schedules import Original, Sequential
from nerdistill.train import build, pools, read_data, train
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
        [
            "trainer.accumulate_grad_batches=2",
            "trainer.max_epochs=-1",
            "trainer.max_steps=41",
            "data.passes.distilled=2",
        ],
        ["trainer.max_steps=11"],  # before the budget's end
    ],
)
def test_lr_restart_and_data_switch_land_on_the_same_step(tmp_path, tiny_train_overrides, overrides):
    cfg = compose_config(
        "train",
        [
            *tiny_train_overrides,
            "schedule=sequential",
            "trainer.max_epochs=1",
            *overrides,
            "trainer.limit_val_batches=0",
        ],
        tmp_path,
    )
    recorder = StepRecorder()
    run = build(cfg, read_data(cfg), callbacks=[recorder], logger=False, enable_checkpointing=False)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    plan = run.datamodule.plan
    assert run.trainer.global_step == len(recorder.lrs) == plan.total_steps
    accumulate = plan.accumulate
    assert len(recorder.shares) == plan.total_steps * accumulate
    # the first optimiser step all of whose batches are gold, and the first step of the LR's second
    # warmup: after the first phase's decay began, where the LR stops decaying
    switch = next(
        step
        for step in range(plan.total_steps)
        if all(s == 0.0 for s in recorder.shares[step * accumulate : (step + 1) * accumulate])
    )
    lrs = recorder.lrs
    decaying = next(step for step in range(1, plan.total_steps) if lrs[step] < lrs[step - 1])
    restart = next(step for step in range(decaying, plan.total_steps) if lrs[step] == 0.0 or lrs[step] > lrs[step - 1])
    assert switch == restart == plan.phase_steps()[0]
    assert all(s == 1.0 for s in recorder.shares[: switch * accumulate])


def test_limit_train_batches_is_refused_with_the_key_to_use(tmp_path, tiny_train_overrides):
    cfg = compose_config("train", [*tiny_train_overrides, "+trainer.limit_train_batches=0.5"], tmp_path)
    with pytest.raises(ValueError, match="data.steps_per_epoch"):
        build(cfg, read_data(cfg), logger=False, enable_checkpointing=False)


def test_share_log_counts_optimiser_steps_with_accumulation(tmp_path, tiny_train_overrides):
    cfg = compose_config(
        "train", [*tiny_train_overrides, "schedule=sequential", "trainer.accumulate_grad_batches=2"], tmp_path
    )
    metrics = train(cfg)
    with (tmp_path / "distilled_share.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(r["step"]) for r in rows]
    assert steps == [t for t in range(metrics["global_step"]) for _ in range(2)]
    assert torch.tensor([float(r["progress"]) for r in rows]).max() < 1.0


# --- data.draws: a step budget that does not depend on the gold set's size ---------------------
def gold_plan(tmp_path, *overrides):
    """The blend and the plan of one epoch of a gold-only run (a sequential one with ``schedule=sequential``)."""
    cfg = compose_config(
        "train", ["model=tiny", "schedule=original", "data.batch_size=32", "trainer.max_epochs=1", *overrides], tmp_path
    )
    sources = read_data(cfg)
    plan = build(cfg, sources, logger=False, enable_checkpointing=False).datamodule.plan
    return blend(pools(cfg, sources), instantiate(cfg.schedule), cfg.data.passes, cfg.data.get("draws")), plan


def test_fixed_gold_draws_give_every_gold_set_the_same_steps(tmp_path):
    # passes: 605 sentences get fewer steps than 1,000 (605 x 20 / 32 = 378.1 against 625)
    assert gold_plan(tmp_path, "data.gold_budget=605")[1].total_steps == 379
    assert gold_plan(tmp_path, "data.gold_budget=1000")[1].total_steps == 625
    # draws: 20,000 gold sentences drawn, whatever the set's size
    for budget in (605, 1000, 1385):
        blended, plan = gold_plan(tmp_path, f"data.gold_budget={budget}", "data.draws.original=20000")
        assert plan.total_steps == 625
        assert blended.passes["original"] == pytest.approx(20000 / budget)


def test_token_draws_draw_long_sentences_fewer_times(tmp_path):
    blended, plan = gold_plan(tmp_path, "data.gold_budget=605", "data.draws.original=300000", "data.draws.unit=tokens")
    tokens = sum(len(s.tokens) for s in blended.pools.original)
    assert blended.passes["original"] == pytest.approx(300000 / tokens)
    assert plan.total_steps == math.ceil(300000 / tokens * 605 / 32)


def test_draws_set_the_sequential_switch_as_passes_do(tmp_path):
    _, plan = gold_plan(tmp_path, "schedule=sequential", "data.gold_budget=605", "data.draws.original=20000")
    distilled = 3 * plan.n_distilled
    assert plan.schedule.switch == pytest.approx(distilled / (distilled + 20000))


def test_without_draws_the_plan_and_the_gold_model_key_are_those_of_before(tmp_path):
    cfg = compose_config("train", ["model=tiny"], tmp_path)
    before = cfg.copy()
    with open_dict(before):
        del before.data.draws  # a config from before data.draws existed
    assert gold_key(cfg) == gold_key(before)
    with open_dict(cfg):
        cfg.data.draws.original = 20000
    assert gold_key(cfg) != gold_key(before)  # fixed gold draws train another gold model
    _, plan = gold_plan(tmp_path, "data.gold_budget=1000")
    _, plan_before = gold_plan(tmp_path, "data.gold_budget=1000", "~data.draws")
    assert plan == plan_before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.draws.unit=words", "data.draws.unit='words'"),
        ("data.draws.original=-5", "data.draws.original=-5"),
        ("+data.draws.gold=5", "data.draws takes"),
    ],
)
def test_bad_draws_name_their_key(tmp_path, override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gold_plan(tmp_path, override)
