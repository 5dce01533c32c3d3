"""Lightning callbacks: the per-step distilled-share log written into the run directory."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl


class DistilledShareLog(pl.Callback):
    """Writes ``distilled_share.csv`` (step, progress, scheduled share, realised share) as training runs."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._rows: list[tuple[int, float, float, float]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch: dict, batch_idx: int) -> None:
        step = trainer.global_step - 1
        total = max(1, trainer.datamodule.total_steps())
        progress = step / total
        self._rows.append((step, progress, trainer.datamodule.schedule(progress), batch["distilled_share"]))

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
