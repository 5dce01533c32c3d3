"""``python -m nerdistill.train``: train the student on a blend of gold and distilled data."""

from __future__ import annotations

import logging
import shutil
import time
import warnings
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, Timer
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.warnings import PossibleUserWarning

from nerdistill.card import git_commit, model_card
from nerdistill.checks import check_types, check_value, exit_on_input_error
from nerdistill.data.labels import LabelSet
from nerdistill.data.pools import Pools
from nerdistill.files import atomic_path, write_json
from nerdistill.runtime import configure_process, device_type, resolve_precision
from nerdistill.student import relabel
from nerdistill.student.blend import Sources, blend, read_sources
from nerdistill.student.callbacks import best_score
from nerdistill.student.datamodule import BlendDataModule
from nerdistill.student.module import TokenClassifier
from nerdistill.student.plan import make_plan

log = logging.getLogger(__name__)
# what reads each key of cfg.data, for its type checks (its _target_, the data module, takes its own keys only)
DATA_USERS = (read_sources, Sources.pools, make_plan, BlendDataModule)


def train(cfg: DictConfig) -> dict:
    """Check the config, read the data (each file once), run the noise-aware stage where ``denoise``
    asks for it (:func:`denoise`), then fit, test and write the run (:func:`fit`). Under DDP every
    rank runs this and returns the same metrics; global rank 0 writes the files."""
    started = time.perf_counter()
    check_config(cfg)
    precision = trainer_precision(cfg)
    sources = read_data(cfg)
    denoised = None
    if relabel.enabled(cfg):
        sources, denoised = denoise(cfg, sources, precision)
    return fit(cfg, sources, precision, started, denoised)


def read_data(cfg: DictConfig) -> Sources:
    """``cfg.data``'s files, each read once: those of the pools ``cfg.schedule`` draws from (both
    pools where ``denoise`` relabels)."""
    data = cfg.data
    schedule = instantiate(cfg.schedule)
    return read_sources(
        data.original,
        data.distilled,
        data.validation,
        data.test,
        LabelSet(tuple(cfg.labels)),
        schedule,
        data.gold_overlap,
        every_pool=relabel.enabled(cfg),
    )


def pools(cfg: DictConfig, sources: Sources) -> Pools:
    """The pools ``cfg.data``'s budgets draw from ``sources``."""
    data = cfg.data
    return sources.pools(data.gold_budget, data.get("distilled_budget"), data.gold_overlap, data.budget_seed)


def denoise(cfg: DictConfig, sources: Sources, precision: str) -> tuple[Sources, dict]:
    """The noise-aware stage (``denoise``, :mod:`nerdistill.student.relabel`), before the data
    module: the gold-only model (given, reused, or trained here on this run's gold pool) relabels the
    distilled pool into ``relabel_1/``; with ``denoise.rounds > 1`` a student trained on round k's
    pool relabels the teacher's pool for round k + 1 (self-training). Returns the sources with the
    last relabelled pool as the distilled one, and what happened, for metrics.json."""
    started = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    # the rule checked before any model trains
    relabelling = relabel.Relabelling(cfg, pools(cfg, sources), sources.original or [])
    with relabel.gold_model(cfg) as gold:
        if gold.config is not None:
            gold.trained(fit(gold.config, sources, precision, time.perf_counter()))
    model_dir, rounds = gold.folder, []
    for round_ in range(1, relabelling.rounds + 1):
        pool, entry = relabelling.relabel(model_dir, out / f"relabel_{round_}")
        relabelled = replace(sources, distilled=pool)
        if round_ < relabelling.rounds:  # self-training: the student of this round relabels the next
            folder = out / f"round_{round_}"
            metrics = fit(
                relabel.sub_run(cfg, folder, **{"data.distilled": [entry["pool"]]}),
                relabelled,
                precision,
                time.perf_counter(),
            )
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
            entry |= {"student_test_f1": metrics["test"]["micro"]["f1"], "student_val_f1_best": metrics["val_f1_best"]}
            model_dir = folder / "model"
        rounds.append(entry)
    return relabelled, gold.record() | {"rounds": rounds, "seconds": round(time.perf_counter() - started, 1)}


def fit(cfg: DictConfig, sources: Sources, precision: str, started: float, denoised: dict | None = None) -> dict:
    """Train on ``sources`` as ``cfg`` says, test with the best checkpoint, and write the run into
    ``cfg.paths.output_dir``: plan.json, metrics.json (with ``denoised``, the noise-aware stage's
    record) and the HF-format model. ``started``: when the run began, for its total time."""
    out = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
    refuse_silent_resume(callbacks, cfg.get("ckpt_path"))
    check_resume(cfg.get("ckpt_path"), list(cfg.labels))
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values() if c is not None] if cfg.get("logger") else False
    if not loggers:  # Lightning's LearningRateMonitor refuses a trainer without a logger: nothing to log to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    timer = Timer()
    callbacks.append(timer)
    run = build(cfg, sources, precision, callbacks=callbacks, logger=loggers)
    datamodule, module, trainer = run.datamodule, run.module, run.trainer
    plan = datamodule.plan
    # every rank evaluates the whole dev and test sets: its metrics are already the global ones
    if trainer.world_size > 1:
        warnings.filterwarnings(
            "ignore", message=r".*sync_dist=True.*when logging on epoch level", category=PossibleUserWarning
        )
    if rank_zero_only.rank == 0:  # under DDP every rank runs this function; set from the launcher's environment
        write_json(out / "plan.json", plan.as_dict())
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True) | {"precision": precision})
    try:
        # weights_only: a checkpoint is unpickled with torch's allow-list of tensors and plain types, never
        # arbitrary objects
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        fit_s = timer.time_elapsed("train")  # read before the test, which loads the best checkpoint's timer state
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")  # "" without a ModelCheckpoint
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics = {
            "val_f1_best": tested_dev_f1(trainer),
            "test": module.test_metrics,
            "best_checkpoint": best,
            "global_step": trainer.global_step,
            "schedule": str(plan.schedule),
            "pools": {"original": plan.n_original, "distilled": plan.n_distilled},
            "precision": precision,
            # Lightning's Timer: fit includes the validation rounds (and, resumed, the time before the
            # resume); test is one pass over the test split; total includes reading data and relabelling
            "timing": {
                "fit_s": round(fit_s, 1),
                "test_s": round(timer.time_elapsed("test"), 1),
                "total_s": round(time.perf_counter() - started, 1),
            },
        }
        if denoised is not None:
            metrics["denoise"] = denoised
        if not trainer.is_global_zero:  # every rank evaluated the whole dev and test sets; rank 0 writes
            return metrics
        card = run_card(cfg, metrics)
        with atomic_path(out / "model") as export:
            module.model.save_pretrained(export)
            datamodule.tokenizer.save_pretrained(export)
            if card is not None:
                (export / "README.md").write_text(card, encoding="utf-8")
        write_json(out / "metrics.json", metrics)  # last: a run dir with metrics.json is a finished run
        log.info(
            "test micro F1 %.4f (best val F1 %.4f); outputs in %s",
            module.test_metrics["micro"]["f1"],
            metrics["val_f1_best"],
            out,
        )
        return metrics
    finally:
        if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
            import wandb  # imported only where a W&B logger ran (about 1.3 s)

            wandb.finish()  # each multirun job gets its own W&B run


@dataclass(frozen=True)
class Run:
    """A run wired from its config and data: the data module (which holds the run plan), the model
    and the trainer."""

    datamodule: BlendDataModule
    module: TokenClassifier
    trainer: pl.Trainer


def run_card(cfg: DictConfig, metrics: dict) -> str | None:
    """The exported model's card (:mod:`nerdistill.card`) with this run's overrides; a card that
    cannot be made is a warning, never the loss of a trained model."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    try:
        return model_card(cfg, metrics, overrides, git_commit())
    except Exception:  # documentation only: log it, keep the model
        log.exception("the model card could not be written; write it later with python -m nerdistill.card <run dir>")
        return None


def tested_dev_f1(trainer: pl.Trainer) -> float:
    """Dev F1 of the weights the test used: the best checkpoint's score, or (without a checkpoint
    callback monitoring ``val/f1``, as under ``fast_dev_run``) the last validation's."""
    best = best_score(trainer)
    return best if best is not None else float(trainer.callback_metrics.get("val/f1", 0.0))


def check_config(cfg: DictConfig) -> None:
    """Values of the wrong type (``data.batch_size=abc``) fail here, naming their key, before
    anything is read; ranges are checked where each value is used."""
    check_value("seed", cfg.seed, (int,))
    check_value("ckpt_path", cfg.get("ckpt_path"), (str, type(None)))
    for user in DATA_USERS:
        check_types(cfg.data, "data", user)
    check_types(cfg.schedule, "schedule")
    check_types(cfg.model.module, "model.module")
    check_types(cfg.trainer, "trainer")


def check_resume(ckpt_path: str | None, labels: list[str]) -> None:
    """``ckpt_path`` must be a checkpoint file of a run with the same entity types (read with
    ``weights_only=True``): a wrong path or a foreign checkpoint fails before any model loads."""
    if not ckpt_path:
        return
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    try:
        # only the labels are read: a zip checkpoint (torch.save's format) is mapped, not copied
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        saved = list(checkpoint["hyper_parameters"]["labels"])
    except Exception as err:
        raise ValueError(
            f"ckpt_path={ckpt_path}: not a nerdistill training checkpoint ({type(err).__name__}: {err})"
        ) from None
    if saved != labels:
        raise ValueError(
            f"ckpt_path={ckpt_path}: the checkpoint was trained on labels {saved}, this run has labels {labels}"
        )


def build(cfg: DictConfig, sources: Sources, precision: str | None = None, **trainer_kwargs) -> Run:
    """Draw and blend the pools (a bad budget, pool or schedule fails here, before any model loads),
    then build the model and the trainer, plan the run (:func:`~nerdistill.student.plan.make_plan`,
    once) and give the plan to the data module."""
    blended = blend(pools(cfg, sources), instantiate(cfg.schedule), cfg.data.passes, cfg.data.get("draws"))
    labels = LabelSet(tuple(cfg.labels))
    module = instantiate(cfg.model.module, _partial_=True)(labels=list(labels.types))
    trainer = build_trainer(cfg, precision, **trainer_kwargs)
    refuse_limit_train_batches(trainer)
    plan = make_plan(
        blended.schedule,
        len(blended.pools.original),
        len(blended.pools.distilled),
        blended.examples,
        cfg.data.batch_size,
        world_size=trainer.world_size,
        accumulate=trainer.accumulate_grad_batches,
        max_epochs=trainer.max_epochs,
        max_steps=trainer.max_steps,
        steps_per_epoch=cfg.data.steps_per_epoch,
    )
    log.info(
        "run plan: %d optimiser steps in %d epochs of %d; phases start at steps %s",
        plan.total_steps,
        plan.epochs,
        plan.steps_per_epoch,
        list(plan.phase_steps()) or "-",
    )
    data = cfg.data
    datamodule = BlendDataModule(
        blended.pools,
        sources.validation,
        sources.test,
        plan,
        tokenizer=data.tokenizer,
        labels=labels,
        eval_batch_size=data.eval_batch_size,
        max_length=data.max_length,
        sort_window=data.sort_window,
        num_workers=data.num_workers,
        cache_dir=data.cache_dir,
        seed=data.seed,
        distilled_loss_weight=data.distilled_loss_weight,
    )
    return Run(datamodule, module, trainer)


def trainer_precision(cfg: DictConfig) -> str:
    """``trainer.precision`` resolved for the trainer's device (``auto``: by hardware), logged."""
    return resolve_precision(
        cfg.trainer.precision, device_type(cfg.trainer.get("accelerator")), "trainer.precision"
    ).precision


def build_trainer(cfg: DictConfig, precision: str | None = None, **kwargs) -> pl.Trainer:
    """``cfg.trainer`` instantiated with its precision resolved (see :func:`trainer_precision`)."""
    return instantiate(cfg.trainer, precision=precision or trainer_precision(cfg), **kwargs)


def refuse_silent_resume(callbacks: list[pl.Callback], ckpt_path: str | None) -> None:
    """With an ``OnExceptionCheckpoint`` callback, Lightning's ``fit(ckpt_path=None)`` resumes from
    the newest checkpoint in the checkpoint callbacks' folders: a run into an output dir that holds
    an earlier run's checkpoints would silently continue that run. Resuming must be asked for."""
    if ckpt_path:
        return
    for folder in sorted({Path(c.dirpath) for c in callbacks if getattr(c, "dirpath", None)}):
        found = sorted(p.name for p in folder.glob("*.ckpt"))
        if found:
            raise FileExistsError(
                f"{folder} already holds checkpoints of an earlier run ({', '.join(found)}): "
                f"pass ckpt_path={folder / 'last.ckpt'} to resume it, or choose a new output dir (hydra.run.dir=...)"
            )


def refuse_limit_train_batches(trainer: pl.Trainer) -> None:
    """``trainer.limit_train_batches`` would cut epochs short behind the run plan's back."""
    if not trainer.fast_dev_run and trainer.limit_train_batches != 1.0:
        raise ValueError(
            f"trainer.limit_train_batches={trainer.limit_train_batches} would cut epochs short behind the "
            "blending schedule's back: set data.steps_per_epoch (optimiser steps per epoch) instead"
        )


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Returns ``val/f1_best`` for Hydra sweepers."""
    configure_process(cfg.get("runtime"))
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    with exit_on_input_error(log):
        return train(cfg)["val_f1_best"]


if __name__ == "__main__":
    main()
