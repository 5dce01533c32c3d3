"""Time to quality: recipes trained to the end, nerdistill's fast path versus fp32 random batches
versus the HF Trainer default; wall time, test F1 and peak RSS per run, mean and std over seeds.

    python -m benchmarks.time_to_quality                          # everything, 3 seeds
    python -m benchmarks.time_to_quality --recipes gold1000 --seeds 1

Each run is a fresh process (``python -m nerdistill.train ...`` or ``benchmarks.hf_recipe``);
finished runs are kept in ``results/time_to_quality_runs.jsonl`` with the CPU they ran on and a
``--session`` label, and skipped when re-run on the same CPU in the same session. Wall-time ratios are
only taken between runs of one CPU and session: the same machine type ran about 7% apart in two
sittings of one day, and a variant's meaning follows the defaults of the commit it ran at. While
``runs/time_to_quality/PAUSE`` exists no new run starts (other benchmarks get a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import DATA_DIR, RESULTS, ROOT, SLOW_PATH, TRAINED_EMBEDDINGS, machine, write_result

RECIPES = {
    "gold1000": ["schedule=original"],  # the tuned 1,000-gold recipe: 20 passes, lr 2e-4
    "sequential": ["schedule=sequential"],  # 3 passes over GPT-3.5 labels, then the gold recipe
}
VARIANTS = {
    "fast": [],  # the defaults: precision auto, length-aware batches, cheap dropout masks, frozen word embeddings
    "fp32_random": SLOW_PATH,
    "torch_dropout": ["model.module.cheap_dropout=false"],  # the fast path with PyTorch's CPU dropout masks
    "trained_embeddings": TRAINED_EMBEDDINGS,  # the fast path training every parameter
    # like the HF default, no model selection: the same steps in one epoch, validated once at the end
    "fast_final": ["trainer.max_epochs=1"],
    "hf_default": None,  # benchmarks.hf_recipe (gold1000 only, as fast_final)
    # recorded only: "fast_eager_attention" and "fast_final_eager_attention" are "fast" and
    # "fast_final" at commit ff7eda6, whose cheap dropout also replaced the attention (peak RSS 3.1 GiB)
}
# tried for the fp32 path (issue 32), only when named: fewer passes over the distilled
# pool before the gold, and torch.compile (inductor, dynamic shapes; compile time included)
TRIED = {
    "distilled_2_passes": ["data.passes.distilled=2"],
    "distilled_1_pass": ["data.passes.distilled=1"],
    "compile": ["model.module.compile=true"],
}
# the one recipe a variant applies to, where it applies to one only
ONLY_FOR = {"hf_default": "gold1000", "fast_final": "gold1000", **dict.fromkeys(TRIED, "sequential")}
RUNS_DIR = ROOT / "benchmarks" / "runs" / "time_to_quality"
PAUSE = RUNS_DIR / "PAUSE"


def command(recipe: str, variant: str, seed: int, out: Path) -> list[str]:
    if variant == "hf_default":
        return [sys.executable, "-m", "benchmarks.hf_recipe", "--seed", str(seed), "--out", str(out)]
    overrides = [
        *RECIPES[recipe],
        *(VARIANTS | TRIED)[variant],
        f"seed={seed}",
        "model=minilm",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"paths.data_dir={DATA_DIR}",
        f"hydra.run.dir={out}",
    ]
    return [sys.executable, "-m", "nerdistill.train", *overrides]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--session", default="", help="label for this sitting's runs (ratios are taken within one)")
    parser.add_argument("--summarize", action="store_true", help="only rewrite the summary from the finished runs")
    args = parser.parse_args()
    log_file = RESULTS / "time_to_quality_runs.jsonl"
    if args.summarize:
        return summarize(log_file)
    cpu, limits = machine()["cpu"], machine()["isa_limits"]
    rows = [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.exists() else []
    here = sitting({"cpu": cpu, "session": args.session, "isa_limits": limits})
    done = {(r["recipe"], r["variant"], r["seed"]) for r in rows if sitting(r) == here}
    RESULTS.mkdir(parents=True, exist_ok=True)
    for seed in map(int, args.seeds.split(",")):
        for recipe in args.recipes.split(","):
            for variant in args.variants.split(","):
                if (recipe, variant, seed) in done or ONLY_FOR.get(variant, recipe) != recipe:
                    continue
                while PAUSE.exists():  # lets other benchmarks use a quiet machine between runs
                    time.sleep(5)
                out = RUNS_DIR / f"{recipe}_{variant}_s{seed}"
                shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
                wall, rss, load = measured(command(recipe, variant, seed, out))
                metrics = json.loads((out / "metrics.json").read_text())
                row = {
                    "cpu": cpu,
                    **({"session": args.session} if args.session else {}),
                    "recipe": recipe,
                    "variant": variant,
                    "seed": seed,
                    "wall_s": round(wall, 1),
                    "peak_rss_gib": round(rss, 2),
                    "fit_s": metrics["timing"]["fit_s"],
                    "test_s": metrics["timing"]["test_s"],
                    "test_f1": round(metrics["test"]["micro"]["f1"], 4),
                    "dev_f1_best": metrics.get("val_f1_best"),
                    "load_avg": load,
                    "precision": metrics.get("precision", "32-true" if variant == "hf_default" else None),
                    **({"isa_limits": limits} if limits else {}),
                }
                with log_file.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(row, flush=True)
    summarize(log_file)


def measured(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak resident memory (GiB) and the 5-minute load average at its end (2.0
    on this 2-core machine means the run had it to itself) of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss / 2**20, round(os.getloadavg()[1], 2)  # ru_maxrss is in KiB on Linux


def sitting(row: dict) -> str:
    """The CPU model, any instruction-set limits it ran under, and the session label where the run has one."""
    limits = " ".join(f"{k}={v}" for k, v in sorted(row.get("isa_limits", {}).items()))
    return row["cpu"] + (f" ({limits})" if limits else "") + (f" [{row['session']}]" if row.get("session") else "")


def summarize(log_file: Path) -> None:
    """Per CPU model and session: mean and std over seeds per (recipe, variant), and the ratios the
    issue's targets name."""
    rows = [json.loads(line) for line in log_file.read_text().splitlines()]
    machines = {}
    for name in sorted({sitting(r) for r in rows}):
        cells = summarize_cells([r for r in rows if sitting(r) == name])
        print(f"## {name}\n{markdown(cells)}")
        machines[name] = {"cells": cells, "ratios": ratios(cells)}
    write_result(
        "time_to_quality",
        {
            "command": "python -m benchmarks.time_to_quality",
            "model": "minilm",
            "gold_budget": 1000,
            "teacher": "real GPT-3.5 labels (NoiseBench)",
            "by_cpu": machines,
        },
    )


def summarize_cells(rows: list[dict]) -> dict[str, dict]:
    """Mean and std over seeds of each (recipe, variant) among ``rows``."""
    cells: dict[str, dict] = {}
    for key in sorted({(r["recipe"], r["variant"]) for r in rows}):
        found = [r for r in rows if (r["recipe"], r["variant"]) == key]
        stats = {}
        for field in ("wall_s", "fit_s", "test_f1", "dev_f1_best", "peak_rss_gib"):
            values = [r[field] for r in found if r.get(field) is not None]
            if not values:
                continue
            stats[field] = {
                "mean": round(statistics.mean(values), 4),
                "std": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            }
        cells[f"{key[0]}/{key[1]}"] = {"seeds": sorted(r["seed"] for r in found), **stats}
    return cells


def ratios(cells: dict[str, dict]) -> dict[str, float]:
    """Wall-time ratios and F1 differences of the fast variants against the others."""
    found = {}
    for recipe in RECIPES:
        for ours in ("fast", "fast_final"):
            fast = cells.get(f"{recipe}/{ours}")
            for other in ("fp32_random", "hf_default"):
                ref = cells.get(f"{recipe}/{other}")
                if fast and ref:
                    found[f"{recipe}: {other} wall / {ours} wall"] = round(
                        ref["wall_s"]["mean"] / fast["wall_s"]["mean"], 2
                    )
                    found[f"{recipe}: {ours} F1 - {other} F1 (points)"] = round(
                        100 * (fast["test_f1"]["mean"] - ref["test_f1"]["mean"]), 2
                    )
    return found


def markdown(cells: dict[str, dict]) -> str:
    """The summary as a Markdown table: mean ± std over seeds per (recipe, variant)."""

    def cell(stat: dict | None, digits: int) -> str:
        if not stat:
            return "–"
        return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if stat["std"] is not None else "")

    lines = [
        "| recipe / variant | seeds | wall s | fit s | test F1 | dev F1 (best) | peak RSS GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in cells.items():
        lines.append(
            f"| {name} | {len(c['seeds'])} | {cell(c.get('wall_s'), 0)} | {cell(c.get('fit_s'), 0)} "
            f"| {cell(c.get('test_f1'), 4)} | {cell(c.get('dev_f1_best'), 4)} | {cell(c.get('peak_rss_gib'), 2)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
