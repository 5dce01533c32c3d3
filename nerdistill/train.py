"""``python -m nerdistill.train``: train the student on a blend of gold and distilled data."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
import wandb
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from nerdistill.allocator import keep_freed_memory
from nerdistill.data.labels import LabelSet

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit, test with the best checkpoint, and write metrics.json and the HF-format model."""
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    labels = LabelSet(tuple(cfg.labels))
    schedule = instantiate(cfg.schedule)
    datamodule = instantiate(cfg.data, _partial_=True)(schedule=schedule, labels=labels)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
    refuse_silent_resume(callbacks, cfg.get("ckpt_path"))
    datamodule.prepare_pools()  # bad data or config fails here, before any model loads
    module = instantiate(cfg.model.module, _partial_=True)(labels=list(labels.types))
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values() if c is not None] if cfg.get("logger") else False
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        fitted = time.perf_counter()
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")  # "" without a ModelCheckpoint
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        metrics = {
            "val_f1_best": float(module.val_f1_best),
            "test": module.test_metrics,
            "best_checkpoint": best,
            "global_step": trainer.global_step,
            "schedule": str(datamodule.schedule),
            "pools": {"original": datamodule.n_original, "distilled": datamodule.n_distilled},
            # fit includes the validation rounds; test is one pass over the test split
            "timing": {"fit_s": round(fitted - started, 1), "test_s": round(time.perf_counter() - fitted, 1)},
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        export = out / "model"
        module.model.save_pretrained(export)
        datamodule.tokenizer.save_pretrained(export)
        log.info("test micro F1 %.4f (best val F1 %.4f); outputs in %s", module.test_metrics["micro"]["f1"], module.val_f1_best, out)
        return metrics
    finally:
        if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
            wandb.finish()  # each multirun job gets its own W&B run


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


def set_torch_threads(setting: int | str | None) -> None:
    """``auto``: under Hydra's joblib launcher, each of its ``n_jobs`` parallel jobs gets an equal
    share of the cores (PyTorch would otherwise give every job all of them); an int sets it."""
    if setting == "auto":
        launcher = HydraConfig.get().launcher if HydraConfig.initialized() else {}
        n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")).lower() else None
        setting = max(1, (os.cpu_count() or 1) // n_jobs) if n_jobs and n_jobs > 0 else None
    if setting:
        torch.set_num_threads(int(setting))
        log.info("PyTorch uses %d threads", torch.get_num_threads())


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Returns ``val/f1_best`` for Hydra sweepers."""
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()
    set_torch_threads(cfg.get("torch_threads"))
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    return train(cfg)["val_f1_best"]


if __name__ == "__main__":
    main()
