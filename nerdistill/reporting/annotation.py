"""An annotate sweep side by side: one column per job (e.g. per prompt), from each job's ``report.json``.

``python -m nerdistill.report multirun/phase1_annotation/<time>`` uses it for folders whose runs
are ``python -m nerdistill.annotate`` jobs (``report.json``, no ``metrics.json``) and writes
``report.md`` and ``comparison.csv``: quality against gold, parse failures and re-asks, calls,
tokens, cost and time, and which teacher produced the labels.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerdistill.files import atomic_path, write_text
from nerdistill.reporting.sweep import Skipped, load_runs, read_overrides, short_keys, varying_keys
from nerdistill.teacher.report import SCHEMA

SIMULATED_NOTE = (
    "**SIMULATED TEACHER**: these labels come from nerdistill's simulated teacher (oracle labels plus noise aimed at "
    "the target F1 in the teacher row), not from an LLM: a gap between prompts is the simulator's configured targets, "
    "not a measured prompt effect."
)


@dataclass(frozen=True)
class AnnotationRun:
    """One finished ``python -m nerdistill.annotate`` job."""

    path: Path
    overrides: dict[str, str]
    report: dict


def load_annotation_run(path: Path) -> AnnotationRun | Skipped:
    """Read one annotate job directory; a :class:`Skipped` says why it cannot be reported."""
    overrides = read_overrides(path)
    try:
        report = json.loads((path / "report.json").read_text())
    except FileNotFoundError:
        return Skipped(path, "no report.json: the annotate job failed or is still running", overrides)
    except (OSError, ValueError) as error:
        return Skipped(path, f"unreadable report.json ({type(error).__name__}: {error})", overrides)
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        return Skipped(path, f"report.json is not an annotate report ({SCHEMA})", overrides)
    return AnnotationRun(path, overrides, report)


def teacher(report: dict) -> str:
    """Who produced the labels: the simulated teacher and its target F1, or the model and endpoint."""
    if report["simulated"]:
        simulator = report.get("simulator") or {}
        # older reports: the fixed target only
        target = simulator.get("target_f1", (simulator.get("settings") or {}).get("target_f1"))
        return "SIMULATED" + (f" (target F1 {target:.2f})" if target is not None else "")
    return f"{report['teacher']['model']} ({report['teacher']['endpoint']})"


def _quality(average: str, key: str) -> Callable[[dict], float | None]:
    return lambda r: r["quality"][average][key] if r["quality"] else None


def _type_f1(entity: str) -> Callable[[dict], float | None]:
    return lambda r: r["quality"]["per_type"].get(entity, {}).get("f1") if r["quality"] else None


def _tokens(kind: str) -> Callable[[dict], int]:
    return lambda r: r["tokens"]["made"][kind] + r["tokens"]["cached"][kind]


@dataclass(frozen=True)
class Row:
    name: str
    value: Callable[[dict], Any]
    fmt: str = "{}"  # for numbers; None is shown as "–"


def _local(key: str) -> Callable[[dict], Any]:
    """A figure of the local model server's (``teacher=local``), None for other teachers."""
    return lambda r: ((r.get("local_server") or {}).get("stats") or {}).get(key)


def _examples(report: dict) -> str | None:
    """How the few-shot examples were chosen: ``knn k=3 of 992`` (reports made before examples were recorded: None)."""
    examples = report.get("examples")
    return f"{examples['strategy']} k={examples['k']} of {examples['pool']:,}" if examples else None


def _verification(report: dict) -> str | None:
    verification = report.get("verification")
    return f"{verification['asked']:,} / {verification['dropped']:,}" if verification else None


def rows(types: Sequence[str], local: bool = False) -> list[Row]:
    """The table's rows: what each job's report.json says, in the order shown; with ``local``, the
    local model server's mean latency per call too."""
    return [
        Row("teacher", teacher),
        Row("prompt", lambda r: f"{r['prompt']['id']}@{r['prompt']['version']}"),
        Row("examples", _examples),
        Row("structured output", lambda r: (r.get("structured_output") or {}).get("used")),
        Row("input", lambda r: " ".join(f"{k}={v}" for k, v in r["input"].items() if k != "path")),
        Row("sentences", lambda r: r["sentences"]["total"], "{:,}"),
        Row("failed sentences", lambda r: r["sentences"]["failed"], "{:,}"),
        Row("entities", lambda r: r["sentences"]["entities"], "{:,}"),
        Row("micro P", _quality("micro", "precision"), "{:.3f}"),
        Row("micro R", _quality("micro", "recall"), "{:.3f}"),
        Row("micro F1", _quality("micro", "f1"), "{:.3f}"),
        Row("macro F1", _quality("macro", "f1"), "{:.3f}"),
        *(Row(f"{t} F1", _type_f1(t), "{:.3f}") for t in types),
        Row("unparseable responses", lambda r: r["parse"]["status"].get("unparseable", 0), "{:,}"),
        Row("truncated responses", lambda r: r["parse"]["truncated"], "{:,}"),
        Row("hallucinated mentions", lambda r: r["parse"]["hallucinated"], "{:,}"),
        Row("invented types", lambda r: r["parse"].get("unknown_type"), "{:,}"),
        Row("verification: asked / dropped", _verification),
        Row(
            "verification: dropped right / wrong",
            lambda r: (
                f"{r['verification']['dropped_right']} / {r['verification']['dropped_wrong']}"
                if "dropped_right" in (r.get("verification") or {})
                else None
            ),
        ),
        Row("re-asks", lambda r: r["calls"]["reasked"], "{:,}"),
        Row("calls made", lambda r: r["calls"]["made"], "{:,}"),
        Row("calls from cache", lambda r: r["calls"]["cached"], "{:,}"),
        Row("calls failed", lambda r: r["calls"]["failed"], "{:,}"),
        Row("prompt tokens", _tokens("prompt"), "{:,}"),
        Row("completion tokens", _tokens("completion"), "{:,}"),
        Row("cost USD (all responses)", lambda r: r["cost"]["all_responses"], "{:.4f}"),
        Row("cost USD (this run)", lambda r: r["cost"]["this_run"], "{:.4f}"),
        *(
            [
                Row("mean latency per call s", _local("mean_latency_s"), "{:.2f}"),
                Row("mean CPU s per call", _local("mean_cpu_s"), "{:.2f}"),
            ]
            if local
            else []
        ),
        Row("wall s", lambda r: r["time"]["wall_s"], "{:.1f}"),
        Row("CPU s annotating", lambda r: r["time"].get("annotate_cpu_s"), "{:.1f}"),
        Row("sentences/s", lambda r: r["time"]["sentences_per_s"], "{:.1f}"),
    ]


@dataclass
class AnnotationReport:
    """An annotate sweep's jobs as columns of one table."""

    roots: list[Path]
    runs: list[AnnotationRun]
    skipped: list[Skipped]

    @property
    def labels(self) -> list[str]:
        """A column name per run: the overrides that differ across runs (the prompt, in phase 1)."""
        varying = varying_keys([run.overrides for run in self.runs])
        short = short_keys(varying)
        return [
            ", ".join(f"{short[k]}={run.overrides[k]}" for k in varying if k in run.overrides) or run.path.name
            for run in self.runs
        ]

    def rows(self) -> list[Row]:
        types = list(dict.fromkeys(t for run in self.runs for t in (run.report["quality"] or {}).get("per_type", {})))
        return rows(types, local=any(run.report.get("local_server") for run in self.runs))

    def table(self) -> list[str]:
        """The side-by-side Markdown table's lines."""
        lines = ["| | " + " | ".join(self.labels) + " |", "|---|" + "---|" * len(self.runs)]
        for row in self.rows():
            cells = [_format(row.value(run.report), row.fmt) for run in self.runs]
            lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
        return lines

    def markdown(self) -> str:
        lines = [f"# Annotation sweep report: {', '.join(str(r) for r in self.roots)}", ""]
        if any(run.report["simulated"] for run in self.runs):
            lines += [SIMULATED_NOTE, ""]
        lines += [
            "Quality is entity-level strict IOB2 against gold over all input sentences "
            "(a failed sentence counts as no entities); "
            "tokens and cost count every response, cached ones included; calls and wall time are this run's.",
            "",
            *self.table(),
        ]
        if self.skipped:
            lines += ["", "## Skipped", ""] + [f"- `{s.path}`: {s.reason}" for s in self.skipped]
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> list[Path]:
        """Write ``report.md`` and ``comparison.csv`` (the same table, raw values) into ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "report.md", self.markdown())
        with atomic_path(out / "comparison.csv") as partial, partial.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["metric", *self.labels])
            for row in self.rows():
                writer.writerow([row.name, *("" if (v := row.value(run.report)) is None else v for run in self.runs)])
        return [out / "report.md", out / "comparison.csv"]


def _format(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def build_annotation_report(roots: Sequence[str | Path]) -> AnnotationReport:
    """Load every annotate job under ``roots``."""
    runs, skipped = load_runs(roots, load_annotation_run)
    return AnnotationReport([Path(r) for r in roots], runs, skipped)
