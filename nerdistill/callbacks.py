"""Lightning callbacks: the per-step distilled-share log written into the run directory."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl


class DistilledShareLog(pl.Callback):
    """Writes ``distilled_share.csv`` (optimiser step, progress, scheduled share, realised share of
    the batch) as training runs, following the module's run plan; with gradient accumulation a
    step has one row per batch."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._rows: list[tuple[int, float, float, float]] = []
        self._batches = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches = trainer.global_step * pl_module.plan.accumulate  # resumed runs continue the count

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch: dict, batch_idx: int) -> None:
        plan = pl_module.plan
        step = self._batches // plan.accumulate
        self._batches += 1
        progress = plan.progress(step)
        self._rows.append((step, progress, plan.schedule(progress), batch["distilled_share"]))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._flush(trainer)

    def _flush(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero or not self._rows:
            return
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "progress", "scheduled_share", "realised_share"])
            writer.writerows(self._rows)
        self._rows = []
