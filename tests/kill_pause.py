"""A callback for the training kill test (``tests/test_kill.py``), in a module of its own: the run it
pauses imports nothing else of the tests (``tests/conftest.py`` would set another torch thread
count under pytest-xdist, and the killed run would compute other bits than the runs it is compared with)."""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl

HOLD_S = 600  # the test kills the run long before this


class PauseMidSecondEpoch(pl.Callback):
    """Before the ``batch``-th batch of the second epoch (after the first epoch's checkpoint and a
    few steps it does not hold) it marks ``marker`` and holds the run, drawing no random numbers,
    until it is killed, whatever the machine's speed."""

    def __init__(self, marker: str, batch: int = 3) -> None:
        self.marker, self.batch = Path(marker), batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == self.batch:
            self.marker.touch()
            time.sleep(HOLD_S)
            raise RuntimeError("not killed")
