"""Who labelled a distilled file: the annotate job's ``report.json`` beside it, where there is one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nerdistill.data.hf import is_hf


def annotate_report(source: str | Path) -> dict[str, Any] | None:
    """The ``python -m nerdistill.annotate`` report in the folder of ``source`` (its
    ``distilled.conll``, ``distilled.jsonl`` or ``distilled_weighted.jsonl``), or ``None``."""
    if is_hf(source):
        return None
    path = Path(source).parent / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    from nerdistill.teacher.report import SCHEMA  # the report's owner; only read when a report is there

    return report if isinstance(report, dict) and report.get("schema") == SCHEMA else None


def teacher_summary(source: str | Path) -> dict[str, Any] | None:
    """``{"model", "name", "prompt", "simulated", "f1", "sentences"}`` of the teacher that wrote ``source``
    (``f1``: micro F1 against the gold of its input, where it had gold), or ``None`` if unknown."""
    report = annotate_report(source)
    if report is None:
        return None
    teacher, prompt, quality = report.get("teacher") or {}, report.get("prompt") or {}, report.get("quality") or {}
    return {
        "model": teacher.get("model"),
        "name": teacher.get("name"),
        "prompt": f"{prompt.get('id')}@{prompt.get('version')}" if prompt else None,
        "simulated": bool(report.get("simulated")),
        "f1": (quality.get("micro") or {}).get("f1"),
        "sentences": (report.get("sentences") or {}).get("annotated"),
    }


def teacher_version(source: str | Path) -> str:
    """A short name for the labels of ``source``: the teacher's model and prompt (SIMULATED if so), else the
    file name."""
    summary = teacher_summary(source)
    if summary is None:
        return f"labels:{Path(str(source)).name}" if not is_hf(source) else f"labels:{source}"
    return f"{summary['model']} {summary['prompt']}" + (" SIMULATED" if summary["simulated"] else "")
