"""``teacher.mode=batch`` against the SIMULATED teacher: a run killed (SIGKILL) while polling its
batch, the same command resuming it, and the same sentences online for comparison.

    python -m benchmarks.batch_resume                  # 200 seeded CoNLL-2003 train sentences
    python -m benchmarks.batch_resume --n 50 --name batch_resume_small

The simulator runs in this process (so that its batches outlive the killed job) with 5% malformed
answers (so that re-asks need a second round of batches) and answers ``--per-poll`` requests of a
batch per poll. Each job is a fresh ``python -m nerdistill.annotate`` process with ``teacher=openai``
pointed at it; the online run gets a simulator of its own (fresh attempt counts, so the same answers).
Prices: gpt-4o-mini's (0.15 / 0.60 USD per 1M tokens) on the simulator's estimated usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import DATA_DIR, ROOT, write_result
from nerdistill.teacher.sim import SimServer, SimSettings

PRICES = ["prices.sim.input=0.15", "prices.sim.output=0.60"]  # gpt-4o-mini's


def settings(per_poll: int) -> SimSettings:
    return SimSettings(oracle=[str(DATA_DIR / "conll2003" / "train.txt")], rate_malformed=0.05, batch_per_poll=per_poll)


def command(sim: SimServer, n: int, run_dir: Path, cache: Path, batch: bool) -> list[str]:
    mode = ["teacher.mode=batch", "teacher.batch.poll_interval=0.2"] if batch else []
    overrides = [
        "teacher=openai",
        "teacher.model=sim",
        f"teacher.base_url={sim.url}",
        "teacher.api_key_env=null",
        f"input.n={n}",
        "prompt.k=0",
        "progress=false",
        *PRICES,
        *mode,
    ]
    return [
        sys.executable,
        "-m",
        "nerdistill.annotate",
        *overrides,
        f"paths.data_dir={DATA_DIR}",
        f"hydra.run.dir={run_dir}",
        f"cache={cache}",
    ]


def finish(cmd: list[str]) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{shlex.join(cmd)} failed:\n{done.stderr[-3000:]}")
    run_dir = Path(next(a for a in cmd if a.startswith("hydra.run.dir=")).split("=", 1)[1])
    return json.loads((run_dir / "report.json").read_text()), round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--per-poll", type=int, default=20)
    parser.add_argument("--kill-after-polls", type=int, default=4)
    parser.add_argument("--name", default="batch_resume")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batch_resume_") as tmp:
        tmp = Path(tmp)
        with SimServer(settings(args.per_poll)) as sim:
            online, online_wall = finish(command(sim, args.n, tmp / "online", tmp / "online.sqlite", batch=False))

        with SimServer(settings(args.per_poll)) as sim:
            cmd = command(sim, args.n, tmp / "batch", tmp / "batch.sqlite", batch=True)
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
            )
            while sim.teacher.stats["batch_polls"] < args.kill_after_polls:
                if proc.poll() is not None:
                    sys.exit(f"the batch job ended before it was killed:\n{proc.stderr.read().decode()[-3000:]}")
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            (batch_id,) = sim.batches.batches
            at_kill = {
                "polls": sim.teacher.stats["batch_polls"],
                "status": sim.batches.batches[batch_id]["status"],
                "request_counts": dict(sim.batches.batches[batch_id]["request_counts"]),
            }
            resumed, resumed_wall = finish(cmd)
            stats = dict(sim.teacher.stats)
            repeated = sum(n > 1 for n in sim.batches.custom_ids.values())
        same = (tmp / "batch" / "distilled.conll").read_bytes() == (tmp / "online" / "distilled.conll").read_bytes()

    result = {
        "sentences": args.n,
        "killed_at": at_kill,
        "resumed_run": {
            "batches": resumed["batch"]["batches"],
            "requests": resumed["batch"]["requests"],
            "calls": resumed["calls"],
            "sentences": resumed["sentences"],
            "cost": resumed["cost"],
            "process_wall_s": resumed_wall,
        },
        "simulator": {
            "batches_created": stats.get("batches_created", 0),
            "batch_requests": stats.get("batch_requests", 0),
            "custom_ids_submitted_twice": repeated,
            "answered_again": stats.get("answered_again", 0),
        },
        "online": {
            "calls": online["calls"],
            "sentences": online["sentences"],
            "cost": online["cost"],
            "process_wall_s": online_wall,
        },
        "same_distilled_conll_as_online": same,
        "micro_f1": {"batch": resumed["quality"]["micro"]["f1"], "online": online["quality"]["micro"]["f1"]},
    }
    print(json.dumps(result, indent=2))
    write_result(
        args.name,
        {
            "command": ("python -m benchmarks.batch_resume " + shlex.join(sys.argv[1:])).strip(),
            "teacher": (
                "SIMULATED (nerdistill.teacher.sim in the benchmark's process, rate_malformed 0.05; "
                "usage estimated as characters/4)"
            ),
            "prices": "gpt-4o-mini: 0.15 / 0.60 USD per 1M input / output tokens; batch_price_factor 0.5",
            **result,
        },
    )


if __name__ == "__main__":
    main()
