"""A callback for the DDP tests: what each rank trained on and evaluated, in ``draws_rank<r>.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl


class DrawProbe(pl.Callback):
    """Records the dataset indices of every training batch this rank gets (from its sampler, each
    checked against the batch that arrives), and how many sentences it evaluates per round."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.batches: list[list[int]] = []
        self.mismatches = 0
        self.val_sentences: list[int] = []
        self.test_sentences = 0
        self._epoch: list[list[int]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch = list(trainer.train_dataloader.sampler)  # Lightning has called set_epoch

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict, batch_idx: int
    ) -> None:
        indices = self._epoch[batch_idx]
        items = trainer.datamodule.datasets["train"].items
        if [tuple(items[i].sentence.tags) for i in indices] != [tuple(t) for t in batch["gold_tags"]]:
            self.mismatches += 1
        self.batches.append(indices)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.val_sentences.append(0)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch: dict, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.val_sentences[-1] += len(batch["gold_tags"])

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch: dict, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.test_sentences += len(batch["gold_tags"])

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {
            "world_size": trainer.world_size,
            "batches": self.batches,
            "mismatches": self.mismatches,
            "val_sentences": self.val_sentences,
            "test_sentences": self.test_sentences,
        }
        (self.folder / f"draws_rank{trainer.global_rank}.json").write_text(json.dumps(record))
