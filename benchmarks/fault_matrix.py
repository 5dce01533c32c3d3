"""Annotation under injected faults against the SIMULATED teacher: each fault kind alone, then
mixed; sentences annotated and failed (by reason), answers asked for twice, wall time per cell.

    python -m benchmarks.fault_matrix                          # 9 cells of 50 sentences
    python -m benchmarks.fault_matrix --cells mixed,timeout

Each cell is a fresh ``python -m nerdistill.annotate`` process with an empty cache in a temp dir,
on the same 50 seeded CoNLL-2003 train sentences, written to one small file that is both the
input and the simulator's oracle. ``tests/test_teacher_annotate.py::test_fault_matrix`` runs the
same cells (``CELLS``, :func:`overrides`) and checks every one.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import DATA_DIR, ROOT, write_result
from nerdistill.data.conll import read_conll, write_conll
from nerdistill.data.pools import take_budget

SENTENCES = 50
RATE = 0.3  # each fault kind alone: the share of attempts it hits
KINDS = ("429", "500", "timeout", "dropped", "malformed", "truncated", "empty", "wrong_format")
# cell -> {fault kind: share of attempts}; the kinds are the simulator's `rate_<kind>` knobs
CELLS: dict[str, dict[str, float]] = {
    **{kind: {kind: RATE} for kind in KINDS},
    "mixed": {"429": 0.1, "500": 0.05, "timeout": 0.05, "malformed": 0.05, "truncated": 0.05},
}
# The client's timeout is far above a healthy answer's time on loopback (tens of ms, under 0.3 s
# at concurrency 32 on a loaded 2-core machine) and the simulator holds a timed-out request until
# the client gives up (`hang` is only a cap), so a timeout is the fault's and never the machine's.
# Two retries, so that three faults in a row fail a sentence and the table shows it.
SETTINGS = [
    "teacher.client.timeout=5",
    "teacher.client.max_retries=2",
    "teacher.client.concurrency=16",
    "teacher.sim.hang=60",
    "teacher.sim.retry_after_ms=10",
    "prompt.k=0",
    "progress=false",
]


def write_sentences(path: Path, data_dir: Path = DATA_DIR, n: int = SENTENCES, seed: int = 0) -> Path:
    """``n`` seeded CoNLL-2003 train sentences as a CoNLL file: the input and the simulator's oracle."""
    write_conll(path, take_budget(read_conll(data_dir / "conll2003" / "train.txt"), n, seed, "n"))
    return path


def overrides(cell: str, sentences: Path) -> list[str]:
    """``annotate`` overrides for one cell: its faults on ``sentences``, with :data:`SETTINGS`."""
    faults = [f"teacher.sim.rate_{kind}={rate}" for kind, rate in CELLS[cell].items()]
    return [*SETTINGS, f"input.path={sentences}", "input.n=null", f"teacher.sim.oracle=[{sentences}]", *faults]


def measure(cell: str, sentences: Path, tmp: Path) -> dict:
    """One cell as a fresh process; the figures from its ``report.json``."""
    run_dir = tmp / cell
    cmd = [
        sys.executable,
        "-m",
        "nerdistill.annotate",
        *overrides(cell, sentences),
        f"cache={tmp / cell}.sqlite",
        f"paths.data_dir={DATA_DIR}",
        f"hydra.run.dir={run_dir}",
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{shlex.join(cmd)} failed:\n{done.stderr[-3000:]}")
    report = json.loads((run_dir / "report.json").read_text())
    stats, s, calls = report["simulator"]["stats"], report["sentences"], report["calls"]
    return {
        "faults": CELLS[cell],
        "injected": {k.removeprefix("fault_"): v for k, v in sorted(stats.items()) if k.startswith("fault_")},
        "sentences": s["total"],
        "annotated": s["annotated"],
        "failed": s["failed"],
        "failed_by_reason": s["failed_by_reason"],
        "reasked": calls["reasked"],
        "calls_made": calls["made"],
        "calls_failed": calls["failed"],
        "answered": stats.get("answered", 0),
        "answered_again": stats.get("answered_again", 0),
        "job_wall_s": report["time"]["wall_s"],
        "process_wall_s": round(wall, 2),
    }


def table(results: dict[str, dict]) -> str:
    """The Markdown table docs/teacher.md shows."""
    rows = [
        "| faults (share of attempts) | attempts hit | annotated | failed (reason) | re-asks "
        "| answers received / sent | duplicate calls | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        faults = ", ".join(f"{kind} {rate:.0%}" for kind, rate in r["faults"].items())
        hit = ", ".join(f"{kind} {n}" for kind, n in r["injected"].items())
        failed = f"{r['failed']}" + (
            " (" + ", ".join(f"{k} {n}" for k, n in r["failed_by_reason"].items()) + ")" if r["failed"] else ""
        )
        rows.append(
            f"| {faults} | {hit} | {r['annotated']} | {failed} | {r['reasked']} "
            f"| {r['calls_made']} / {r['answered']} | {r['answered_again']} | {r['job_wall_s']:.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated cells of the matrix")
    parser.add_argument("--name", default="fault_matrix")
    args = parser.parse_args()
    cells = args.cells.split(",")
    unknown = set(cells) - set(CELLS)
    if unknown:
        parser.error(f"unknown cells {sorted(unknown)}; the matrix has {list(CELLS)}")
    with tempfile.TemporaryDirectory(prefix="fault_matrix_") as tmp:
        sentences = write_sentences(Path(tmp) / "sentences.txt")
        results = {}
        for cell in cells:
            results[cell] = measure(cell, sentences, Path(tmp))
            print(
                f"{cell}: {results[cell]['annotated']} annotated, {results[cell]['failed']} failed, "
                f"{results[cell]['job_wall_s']} s",
                flush=True,
            )
    print(table(results))
    write_result(
        args.name,
        {
            "command": ("python -m benchmarks.fault_matrix " + shlex.join(sys.argv[1:])).strip(),
            "teacher": "SIMULATED (teacher=sim, in-process on localhost)",
            "sentences": SENTENCES,
            "settings": SETTINGS,
            "note": (
                "answers received = calls.made (each stored in the cache); sent = the simulator's 200 answers; "
                "duplicate calls = the simulator's answered_again (a request answered again after a 200); "
                "wall = report.json time.wall_s"
            ),
            "cells": results,
            "table": table(results),
        },
    )


if __name__ == "__main__":
    main()
