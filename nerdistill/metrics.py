"""Entity-level NER metrics (seqeval, strict IOB2): micro, macro and per type."""

from __future__ import annotations

from collections.abc import Sequence

from seqeval.metrics import classification_report
from seqeval.scheme import IOB2


def ner_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """``{"micro": {precision, recall, f1, support}, "macro": {...}, "per_type": {TYPE: {...}}}``.

    Strict mode: an entity counts only with exact boundaries and type. Types absent from both
    gold and predictions are left out of ``per_type`` and of the macro average.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sequences but {len(predicted)} predicted ones")
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted tags")
    gold_lists = [list(g) for g in gold]
    predicted_lists = [list(p) for p in predicted]
    has_entities = any(t != "O" for seq in gold_lists + predicted_lists for t in seq)
    if not has_entities:
        empty = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        return {"micro": dict(empty), "macro": dict(empty), "per_type": {}}
    report = classification_report(
        gold_lists, predicted_lists, mode="strict", scheme=IOB2, output_dict=True, zero_division=0
    )

    def row(values: dict) -> dict:
        return {
            "precision": float(values["precision"]),
            "recall": float(values["recall"]),
            "f1": float(values["f1-score"]),
            "support": int(values["support"]),
        }

    per_type = {name: row(values) for name, values in report.items() if not name.endswith(" avg")}
    return {"micro": row(report["micro avg"]), "macro": row(report["macro avg"]), "per_type": per_type}


def flatten(metrics: dict, prefix: str) -> dict[str, float]:
    """``{"<prefix>/f1": ..., "<prefix>/PER_f1": ...}`` for loggers."""
    flat = {f"{prefix}/{k}": v for k, v in metrics["micro"].items() if k != "support"}
    flat.update({f"{prefix}/macro_{k}": v for k, v in metrics["macro"].items() if k != "support"})
    for name, values in metrics["per_type"].items():
        flat.update({f"{prefix}/{name}_{k}": v for k, v in values.items() if k != "support"})
    return flat
