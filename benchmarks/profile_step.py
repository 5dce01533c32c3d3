"""Where a training step's time goes: torch.profiler over steps of the real Lightning loop
(MiniLM, batch 32, bf16-mixed, length-aware batches), grouped by operator.

    python -m benchmarks.profile_step                      # writes results/profile_step.{json,txt}
    python -m benchmarks.profile_step --system-malloc      # without nerdistill's allocator setting
    python -m benchmarks.profile_step --name profile_step_avx2 trainer.precision=32-true   # any train override
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pytorch_lightning as pl
from torch.profiler import ProfilerActivity, profile, schedule

from benchmarks.common import RESULTS, write_result
from benchmarks.train_throughput import nerdistill_fit
from nerdistill.allocator import keep_freed_memory

WAIT, WARMUP, ACTIVE = 10, 3, 10


class StepProfiler(pl.Callback):
    """Profiles ``ACTIVE`` steps after ``WAIT + WARMUP`` unprofiled ones."""

    def __init__(self) -> None:
        self.profiler = profile(
            activities=[ProfilerActivity.CPU], schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE, repeat=1)
        )

    def on_train_start(self, trainer, pl_module) -> None:
        self.profiler.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.profiler.step()

    def on_train_end(self, trainer, pl_module) -> None:
        self.profiler.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system-malloc", action="store_true", help="leave glibc malloc at its defaults")
    parser.add_argument("--name", help="results file name (default: profile_step, or profile_step_system_malloc)")
    parser.add_argument("overrides", nargs="*", help="train config overrides, after the profiled defaults")
    args = parser.parse_args()
    if not args.system_malloc:
        keep_freed_memory()
    callback = StepProfiler()
    steps = WAIT + WARMUP + ACTIVE
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            "schedule=original",
            "data.gold_budget=2000",
            "data.passes.original=1",
            "trainer.max_epochs=1",
            f"trainer.max_steps={steps}",
            *args.overrides,
        ]
        nerdistill_fit(overrides, Path(tmp), callbacks=[callback])
    events = callback.profiler.key_averages()
    total_ms = sum(e.self_cpu_time_total for e in events) / 1000 / ACTIVE
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    ops = {
        e.key: {
            "ms_per_step": round(e.self_cpu_time_total / 1000 / ACTIVE, 1),
            "share": round(e.self_cpu_time_total / 1000 / ACTIVE / total_ms, 3),
            "calls_per_step": e.count // ACTIVE,
        }
        for e in top
    }
    name = args.name or ("profile_step_system_malloc" if args.system_malloc else "profile_step")
    (RESULTS / f"{name}.txt").write_text(events.table(sort_by="self_cpu_time_total", row_limit=25))
    for op, row in ops.items():
        print(f"{op:45s} {row['ms_per_step']:7.1f} ms  {100 * row['share']:5.1f}%  {row['calls_per_step']} calls")
    print(f"total self CPU per step: {total_ms:.1f} ms")
    write_result(
        name,
        {
            "command": " ".join(["python -m benchmarks.profile_step", *sys.argv[1:]]),
            "steps_profiled": ACTIVE,
            "self_cpu_ms_per_step": round(total_ms, 1),
            "top_ops": ops,
        },
    )


if __name__ == "__main__":
    main()
