"""Padding: how many token positions a training run computes per real token, by sort window.

    python -m benchmarks.padding                       # the gold recipe and the sequential default
    python -m benchmarks.padding --windows 0,16,64,128 --schedules original,simple_mix

Counts every batch of the run's full plan (all epochs) with the real tokenised lengths: padded
positions (batch size x longest sentence in the batch) over real tokens, and how many batch slots
hold an example already in the same batch. No model is run, so it takes seconds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import compose_train, write_result
from nerdistill.train import build, read_data


def plan_padding(schedule: str, window: int, workdir: Path) -> dict:
    """Padded/real token ratio and repeated slots over every batch of one run's plan."""
    cfg = compose_train([f"schedule={schedule}", f"data.sort_window={window}"], workdir)
    datamodule = build(
        cfg, read_data(cfg), logger=False, enable_checkpointing=False, enable_progress_bar=False
    ).datamodule
    datamodule.setup("fit")
    sampler = datamodule.train_sampler(rank=0)
    lengths = datamodule.datasets["train"].lengths
    padded = real = repeated = 0
    for epoch in range(cfg.trainer.max_epochs):
        for batch in sampler.global_batches(epoch):
            padded += int(lengths[batch].max()) * len(batch)
            real += int(lengths[batch].sum())
            repeated += len(batch) - len(np.unique(batch))
    return {
        "schedule": schedule,
        "sort_window": window,
        "padded_per_real_token": round(padded / real, 3),
        "repeated_slots": repeated,
        "steps": datamodule.plan.total_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", default="original,sequential")
    parser.add_argument("--windows", default="0,16,32,64,128")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for schedule in args.schedules.split(","):
            for window in map(int, args.windows.split(",")):
                rows.append(plan_padding(schedule, window, Path(tmp)))
                print(rows[-1], flush=True)
    write_result(
        "padding",
        {
            "command": f"python -m benchmarks.padding --schedules {args.schedules} --windows {args.windows}",
            "runs": rows,
        },
    )


if __name__ == "__main__":
    main()
