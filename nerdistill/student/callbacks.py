"""Lightning callbacks: the per-step distilled-share log written into the run directory, a
``ModelCheckpoint`` that a run resumed into a new output directory continues, and the best dev
F1 it holds."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning import callbacks

log = logging.getLogger(__name__)


class DistilledShareLog(pl.Callback):
    """Writes ``distilled_share.csv`` (optimiser step, progress, scheduled share, realised share of
    the batch) as training runs, following the run plan the data module holds; with gradient
    accumulation a step has one row per batch. Under DDP the realised share is the global batch's
    (the mean of the ranks' equal-sized shards, all-reduced once per epoch) and global rank 0 writes
    the file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._rows: list[tuple[int, float, float, float]] = []
        self._batches = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches = trainer.global_step * trainer.datamodule.plan.accumulate  # resumed runs continue the count

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch: dict, batch_idx: int
    ) -> None:
        plan = trainer.datamodule.plan
        step = self._batches // plan.accumulate
        self._batches += 1
        self._rows.append((step, plan.progress(step), plan.share(step), batch["distilled_share"]))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1 and self._rows:  # every rank has one row per batch of the epoch
            local = torch.tensor([row[3] for row in self._rows], dtype=torch.float64, device=pl_module.device)
            shares = trainer.strategy.reduce(local, reduce_op="mean").tolist()
            self._rows = [(*row[:3], share) for row, share in zip(self._rows, shares)]
        self._flush(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.world_size > 1:  # a collective could hang on a rank that is gone; a shard's share is not the batch's
            log.warning(
                "distilled_share.csv: the %d rows of the unfinished epoch are not written (DDP)", len(self._rows)
            )
            return
        self._flush(trainer)

    def _flush(self, trainer: pl.Trainer) -> None:
        rows, self._rows = self._rows, []  # every rank starts the next epoch empty
        if not trainer.is_global_zero or not rows:
            return
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "progress", "scheduled_share", "realised_share"])
            writer.writerows(rows)


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, which also keeps the best score and best checkpoint of a
    run resumed into another directory (a new Hydra output dir). Lightning's own forgets them
    there, so the first validation after the resume made its checkpoint the best whatever it
    scored, and the test ran on another model than the uninterrupted run's. The best checkpoint
    may so stay in the earlier run's directory (Lightning deletes no checkpoint outside
    ``dirpath``). Named as Lightning's, so its state keeps the key Lightning files it under and
    checkpoints load into either."""

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict({**state_dict, "dirpath": self.dirpath})


def dev_f1_checkpoint(trainer: pl.Trainer) -> callbacks.ModelCheckpoint | None:
    """The trainer's ``ModelCheckpoint`` monitoring ``val/f1``, if it has one."""
    return next(
        (c for c in trainer.checkpoint_callbacks if isinstance(c, callbacks.ModelCheckpoint) and c.monitor == "val/f1"),
        None,
    )


def best_score(trainer: pl.Trainer) -> float | None:
    """The best ``val/f1`` the trainer's checkpoint callback has kept (saved in its checkpoints, so a
    resumed run continues it); ``None`` without such a callback or before its first checkpoint."""
    checkpoint = dev_f1_checkpoint(trainer)
    return None if checkpoint is None or checkpoint.best_model_score is None else float(checkpoint.best_model_score)
