"""Synthetic sweep folders laid out as ``python -m nerdistill.train -m`` writes them, with known numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

TYPES = ("PER", "ORG", "LOC", "MISC")
SCHEDULES = {
    "original": "nerdistill.student.schedules.Original",
    "sequential": "nerdistill.student.schedules.Sequential",
}


def scores(f1: float) -> dict:
    return {"precision": f1, "recall": f1, "f1": f1, "support": 100}


def write_run(
    path: Path,
    *,
    schedule: str,
    seed: int,
    f1: float,
    gold_budget: int | None = 1000,
    distilled: str = "/data/noisebench_gpt35/train_gpt35.txt",
    extra_overrides: tuple[str, ...] = (),
    metrics: bool = True,
) -> Path:
    """One run dir: micro F1 ``f1``, macro F1 ``f1 - 0.1``, per-type F1 ``f1 + 0.01 * i``."""
    (path / ".hydra").mkdir(parents=True)
    config = {
        "seed": seed,
        "labels": list(TYPES),
        "paths": {"data_dir": "/data", "output_dir": "${hydra:runtime.output_dir}"},
        "data": {"distilled": [distilled], "gold_budget": gold_budget},
        "schedule": {"_target_": SCHEDULES[schedule]},
    }
    overrides = [f"schedule={schedule}", f"seed={seed}", *extra_overrides]
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": str(path.parent)}}}))
    if not metrics:
        return path
    distilled_used = 0 if schedule == "original" else 4887
    result = {
        "val_f1_best": f1 + 0.02,
        "test": {
            "micro": scores(f1),
            "macro": scores(f1 - 0.1),
            "per_type": {t: scores(f1 + 0.01 * i) for i, t in enumerate(TYPES)},
        },
        "best_checkpoint": "",
        "global_step": 10,
        "schedule": f"{schedule.title()}()",
        "pools": {"original": gold_budget or 14041, "distilled": distilled_used},
    }
    (path / "metrics.json").write_text(json.dumps(result))
    share = 0.0 if schedule == "original" else 1.0
    with (path / "distilled_share.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "progress", "scheduled_share", "realised_share"])
        writer.writerows([s, s / 10, share if s < 5 else 0.0, share if s < 5 else 0.0] for s in range(10))
    (path / "csv").mkdir()
    with (path / "csv" / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "step", "train/loss", "val/f1"])
        writer.writerows([[0, 3, 1.0, ""], [0, 4, "", f1 - 0.05], [1, 9, "", f1]])
    return path


def regimen_sweep(root: Path) -> dict[str, list[float]]:
    """original x 3 seeds, sequential x 2 seeds, one crashed job and one broken metrics.json."""
    f1s = {"original": [0.80, 0.82, 0.84], "sequential": [0.85, 0.87]}
    job = 0
    for schedule, values in f1s.items():
        for seed, f1 in enumerate(values, start=1):
            write_run(root / str(job), schedule=schedule, seed=seed, f1=f1)
            job += 1
    write_run(root / str(job), schedule="sequential", seed=3, f1=0.0, metrics=False)
    broken = write_run(root / str(job + 1), schedule="original", seed=4, f1=0.5)
    (broken / "metrics.json").write_text("{not json")
    return f1s


def gold_budget_sweep(root: Path) -> None:
    """original at 100 and 1,000 gold (F1 0.6, 0.8), sequential at 100 gold (F1 0.7), one seed each."""
    runs = [("original", 100, 0.6), ("original", 1000, 0.8), ("sequential", 100, 0.7)]
    for job, (schedule, budget, f1) in enumerate(runs):
        write_run(
            root / str(job),
            schedule=schedule,
            seed=1,
            f1=f1,
            gold_budget=budget,
            extra_overrides=(f"data.gold_budget={budget}",),
        )


def write_annotate_run(
    path: Path, *, prompt: str, f1: float | None, model: str = "gpt-4o", report: bool = True
) -> Path:
    """One ``python -m nerdistill.annotate`` job dir (a real teacher): micro and per-type F1 ``f1``, or no gold
    when None."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"task_name": "phase1_annotation", "prompt": {"id": prompt}})
    )
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"prompt={prompt}", f"teacher.model={model}"]))
    if not report:
        return path
    quality = (
        {"micro": scores(f1), "macro": scores(f1), "per_type": {t: scores(f1) for t in TYPES}}
        if f1 is not None
        else None
    )
    result = {
        "schema": "nerdistill.annotate.report/1",
        "simulated": False,
        "teacher": {"name": "openai", "model": model, "endpoint": "https://api.openai.com/v1", "simulated": False},
        "prompt": {"id": prompt, "version": "1"},
        "input": {"kind": "conll", "path": "/data/conll2003/train.txt", "split": "train", "n": 1000, "seed": 0},
        "sentences": {"total": 1000, "annotated": 997, "failed": 3, "entities": 1500},
        "quality": quality,
        "parse": {"responses": 1040, "status": {"ok": 1000, "unparseable": 40}, "hallucinated": 7, "truncated": 2},
        "calls": {"made": 1040, "cached": 0, "failed": 0, "reasked": 40},
        "tokens": {"made": {"prompt": 400000, "completion": 30000}, "cached": {"prompt": 1000, "completion": 100}},
        "cost": {
            "currency": "USD",
            "price_per_1m_tokens": {"input": 2.5, "output": 10.0},
            "this_run": 1.3,
            "all_responses": 1.3035,
        },
        "time": {"wall_s": 312.5, "annotate_s": 300.0, "annotate_cpu_s": 150.0, "sentences_per_s": 3.33},
        "simulator": None,
    }
    (path / "report.json").write_text(json.dumps(result))
    return path
