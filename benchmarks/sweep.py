"""Sweep wall time: the phase-3 grid through Hydra's basic launcher (one job after another) and
through the joblib launcher (``hydra/launcher=local_parallel``: 2 jobs at once, each with half the cores).

    python -m benchmarks.sweep                                  # a shortened grid, both launchers
    python -m benchmarks.sweep --full                           # the real phase-3 sweep (30 runs, hours on CPU)

The shortened grid is phase 3's blends with linear decay, seed 1, at a tenth of the step budget
(2 gold and 0.3 distilled passes, one validation round): every job still loads the model,
tokenises, trains, validates, tests and exports, so the launchers' overheads and the gain from
parallel jobs show; the full sweep's time is projected from the runs' measured wall times.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import DATA_DIR, ROOT, write_result

SHORT = [
    "schedule=sigmoid,cosine,power,simple_mix",
    "model.module.lr_schedule=linear",
    "seed=1",
    "data.passes.original=2",
    "data.passes.distilled=0.3",
    "trainer.max_epochs=1",
]
LAUNCHERS = {"basic": [], "joblib_2_jobs": ["hydra/launcher=local_parallel"]}


def sweep(overrides: list[str], sweep_dir: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "nerdistill.train",
        "-m",
        "experiment=phase3_blends",
        *overrides,
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"paths.data_dir={DATA_DIR}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"sweep failed:\n{done.stderr[-3000:]}")
    runs = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))]
    return {
        "command": " ".join(["python", *cmd[1:]]).replace(str(sweep_dir), "<tmp>"),
        "jobs": len(runs),
        "wall_s": round(wall, 1),
        "fit_s_per_job": [r["timing"]["fit_s"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the real phase-3 sweep: 30 runs")
    parser.add_argument("--launchers", default=",".join(LAUNCHERS))
    args = parser.parse_args()
    grid = [] if args.full else SHORT
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for launcher in args.launchers.split(","):
            results[launcher] = sweep([*grid, *LAUNCHERS[launcher]], Path(tmp) / launcher)
            print(launcher, {k: v for k, v in results[launcher].items() if k != "command"}, flush=True)
    if {"basic", "joblib_2_jobs"} <= results.keys():
        results["joblib_speedup"] = round(results["basic"]["wall_s"] / results["joblib_2_jobs"]["wall_s"], 2)
        print("joblib speedup", results["joblib_speedup"])
    write_result(
        "sweep_full" if args.full else "sweep",
        {"grid": "phase3_blends" + ("" if args.full else " (shortened: " + " ".join(SHORT) + ")"), "results": results},
    )


if __name__ == "__main__":
    main()
