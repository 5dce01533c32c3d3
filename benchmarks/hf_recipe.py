"""The tuned 1,000-gold recipe trained with the Hugging Face Trainer defaults (fp32, random batches),
then scored on the CoNLL test split; writes ``metrics.json`` like ``python -m nerdistill.train``.

    python -m benchmarks.hf_recipe --seed 1 --out benchmarks/runs/hf_s1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import compose_train
from benchmarks.hf_baseline import hf_evaluate, hf_train
from nerdistill.student.models import resolve_name_or_path
from nerdistill.train import build, read_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gold-budget", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=20)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # the same gold sentences nerdistill's runs draw (data.budget_seed), tokenised the same way
    cfg = compose_train(["schedule=original", f"data.gold_budget={args.gold_budget}", f"seed={args.seed}"], args.out)
    datamodule = build(cfg, read_data(cfg), logger=False, enable_checkpointing=False).datamodule
    datamodule.setup()
    started = time.perf_counter()
    model, _ = hf_train(
        resolve_name_or_path(cfg.model.name_or_path),
        datamodule.tokenizer,
        datamodule.labels,
        datamodule.datasets["train"].items,
        args.out / "hf",
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
    )
    fitted = time.perf_counter()
    test = hf_evaluate(model, datamodule.tokenizer, datamodule.labels, datamodule.datasets["test"].items)
    metrics = {
        "test": test,
        "timing": {"fit_s": round(fitted - started, 1), "test_s": round(time.perf_counter() - fitted, 1)},
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"test micro F1 {test['micro']['f1']:.4f}; fit {metrics['timing']['fit_s']} s")


if __name__ == "__main__":
    main()
