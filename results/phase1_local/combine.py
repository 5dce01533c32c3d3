"""One column from annotate reports of disjoint sentence sets: the fp32 CoT column of docs/teacher.md
is the first 140 of the 200 sentences (cot_first140, 2026-11-29) and the last 60 (fp32_cot_last60,
2026-12-06), whose answer caches are gone. Counts are recovered from each report's precision, recall
and support, summed, and scored again; ``--check`` shows the method gives the 200-sentence bf16 job's
own report from its first 140 and last 60.

    python results/phase1_local/combine.py                 # the fp32 CoT column
    python results/phase1_local/combine.py --check
"""

from __future__ import annotations

import argparse
import json
from functools import reduce
from pathlib import Path

HERE = Path(__file__).parent


def counts(scores: dict) -> tuple[int, int | None, int]:
    """``(true positives, predicted, support)``; predicted is unknown where nothing was right."""
    right = round(scores["recall"] * scores["support"])
    return right, round(right / scores["precision"]) if scores["precision"] else None, scores["support"]


def score(right: int, predicted: int | None, support: int) -> dict:
    precision = right / predicted if predicted else 0.0
    recall = right / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3), "support": support}


def combine_quality(parts: list[dict]) -> dict:
    names = ["micro", *parts[0]["per_type"]]
    pick = [{"micro": q["micro"], **q["per_type"]} for q in parts]
    combined = {}
    for name in names:
        each = [counts(p[name]) for p in pick]
        predicted = [c[1] for c in each]
        total = sum(predicted) if all(p is not None for p in predicted) else None
        combined[name] = score(sum(c[0] for c in each), total, sum(c[2] for c in each))
    return combined


def combine(paths: list[Path]) -> dict:
    reports = [json.loads(p.read_text()) for p in paths]

    def total(*keys: str) -> int:
        """The sum over the reports of the value at ``keys`` (0 where one lacks it)."""
        return sum(reduce(lambda value, key: value.get(key, {}), keys, report) or 0 for report in reports)

    return {
        "parts": [str(p.relative_to(HERE)) for p in paths],
        "quality": combine_quality([r["quality"] for r in reports]),
        "quality_annotated_only": combine_quality([r["quality_annotated_only"] for r in reports]),
        "sentences": {k: total("sentences", k) for k in ("total", "annotated", "failed", "entities")},
        "failed_by_reason": {k: total("sentences", "failed_by_reason", k) for k in ("truncated", "unparseable")},
        "parse": {
            k: total("parse", k)
            for k in ("responses", "unparseable", "truncated", "mentions", "hallucinated", "unknown_type")
        },
        "reasked": total("calls", "reasked"),
        "tokens": {k: total("tokens", "made", k) + total("tokens", "cached", k) for k in ("prompt", "completion")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="combine bf16's first 140 and last 60 and compare with its 200-sentence report",
    )
    args = parser.parse_args()
    if args.check:
        combined = combine(
            [HERE / "bf16" / "cot_first140" / "report.json", HERE / "bf16" / "cot_last60" / "report.json"]
        )
        whole = json.loads((HERE / "bf16" / "cot" / "report.json").read_text())
        expected = combine_quality([whole["quality"]])
        print(json.dumps({"combined": combined["quality"], "whole": expected}, indent=1))
        print("same" if combined["quality"] == expected else "DIFFERENT")
        return
    print(
        json.dumps(combine([HERE / "cot_first140" / "report.json", HERE / "fp32_cot_last60" / "report.json"]), indent=1)
    )


if __name__ == "__main__":
    main()
