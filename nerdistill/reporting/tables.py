"""``python -m nerdistill.report <sweep dir> [<sweep dir> ...] [--out DIR]``: tables and plots for a sweep.

Reads every run under the folders (recursively), groups runs by everything but the seed and
writes into ``--out`` (default ``<first sweep dir>/report``):

- ``report.md``: mean ± sample std over seeds of test micro/macro F1, precision, recall and
  per-type F1, the teacher behind the distilled data, skipped runs, and the gold-budget table
  (gold sentences saved against gold-only) when ``data.gold_budget`` varies;
- ``summary.csv`` (one row per group), ``runs.csv`` (one row per run), ``gold_budget.csv``;
- ``test_f1.png``, ``distilled_share.png``, ``val_f1.png`` and ``gold_budget.png``.

A folder of ``python -m nerdistill.annotate`` jobs instead (``report.json``, no ``metrics.json``)
gets its jobs side by side (:mod:`nerdistill.reporting.annotation`); a folder of
``python -m nerdistill.select_loop`` runs, F1 against the human budget
(:mod:`nerdistill.reporting.selection`).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from nerdistill.files import atomic_path, write_text
from nerdistill.reporting import plots
from nerdistill.reporting.annotation import AnnotationReport, build_annotation_report
from nerdistill.reporting.selection import SelectionReport, load_loops
from nerdistill.reporting.sweep import GOLD_BUDGET_KEY, Group, Run, Skipped, group_runs, load_runs, short_keys

Metric = Callable[[dict], "float | None"]


def _test(average: str, key: str) -> Metric:
    return lambda m: m["test"][average][key]


def _per_type(entity: str, key: str) -> Metric:
    return lambda m: m["test"]["per_type"].get(entity, {}).get(key)


def own_seconds(metrics: dict) -> float | None:
    """A run's wall time from start to metrics.json, without a gold model it trained for
    relabelling (that model is shared by every option of its seed; ``denoise.gold_model_seconds``)."""
    timing = metrics.get("timing", {})
    total = timing.get("total_s")
    if total is None:
        return timing["fit_s"] + timing.get("test_s", 0.0) if "fit_s" in timing else None
    denoise = metrics.get("denoise") or {}
    return total - (denoise.get("gold_model_seconds") or 0.0) if denoise.get("gold_model_trained_here") else total


@dataclass(frozen=True)
class GoldPoint:
    """One regimen at one gold budget, against gold-only training."""

    series: str
    gold: int
    f1: float
    f1_std: float | None
    gold_equivalent: float | None  # gold sentences gold-only training needs for the same F1

    @property
    def saved(self) -> float | None:
        return None if self.gold_equivalent is None else self.gold_equivalent - self.gold


@dataclass
class Report:
    """A sweep's runs, grouped, with what the tables and plots need."""

    roots: list[Path]
    runs: list[Run]
    skipped: list[Skipped]
    group_by: Sequence[str] = ()
    groups: list[Group] = field(init=False)
    types: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.groups = group_runs(
            self.runs, [s.overrides for s in self.skipped if s.overrides is not None], self.group_by
        )
        found = {t for run in self.runs for t in run.metrics["test"].get("per_type", {})}
        order = [str(t) for t in (self.runs[0].get("labels") or [])] if self.runs else []
        self.types = [t for t in order if t in found] + sorted(found - set(order))

    def metrics(self) -> dict[str, Metric]:
        """Reported metrics by column name."""
        columns: dict[str, Metric] = {}
        for average in ("micro", "macro"):
            for key in ("f1", "precision", "recall"):
                columns[f"{average}_{key}"] = _test(average, key)
        for entity in self.types:
            for key in ("f1", "precision", "recall"):
                columns[f"{entity}_{key}"] = _per_type(entity, key)
        columns["val_f1_best"] = lambda m: m.get("val_f1_best")
        columns["global_step"] = lambda m: m.get("global_step")
        columns["wall_s"] = own_seconds
        return columns

    # gold budget ---------------------------------------------------------------------------

    def gold_series(self) -> dict[str, list[tuple[int, float, float | None]]]:
        """When the gold budget varies: ``series -> [(gold sentences, mean F1, std)]``, by gold."""
        if len({run.gold_sentences for run in self.runs} - {None, 0}) < 2:
            return {}
        series: dict[str, list[tuple[int, float, float | None]]] = {}
        for name, group in zip(self._series_names(), self.groups):
            gold = group.runs[0].gold_sentences
            if gold:
                series.setdefault(name, []).append((int(gold), *group.stat(plots.micro_f1)))
        return {name: sorted(points) for name, points in series.items()}

    def _series_names(self) -> list[str]:
        """Each group's label without the gold budget: the gold-budget curve it belongs to."""
        rest = [k for g in self.groups for k in g.overrides if k != GOLD_BUDGET_KEY]
        short = short_keys(list(dict.fromkeys(rest)))
        return [
            ", ".join(f"{short[k]}={v}" for k, v in g.overrides.items() if k != GOLD_BUDGET_KEY) or "all runs"
            for g in self.groups
        ]

    def gold_only_series(self) -> str | None:
        """The series trained on gold only (schedule ``original``), the curve to save gold against."""
        for name, group in zip(self._series_names(), self.groups):
            if str(group.runs[0].get("schedule._target_", "")).endswith(".Original"):
                return name
        return None

    def gold_points(self) -> list[GoldPoint]:
        """Every regimen's F1 per gold budget and the gold sentences it saves over gold-only."""
        series = self.gold_series()
        baseline = series.get(self.gold_only_series() or "", [])
        return [
            GoldPoint(name, gold, f1, std, gold_equivalent(baseline, f1) if baseline else None)
            for name, points in series.items()
            for gold, f1, std in points
        ]

    # output --------------------------------------------------------------------------------

    def figures(self) -> dict[str, Figure]:
        """The report's plots by file stem."""
        figures = {
            "test_f1": plots.test_f1(self.groups),
            "distilled_share": plots.distilled_share(self.groups),
            "val_f1": plots.val_curves(self.groups),
        }
        series = self.gold_series()
        if series:
            figures["gold_budget"] = plots.gold_budget(series)
        return figures

    def markdown(self, images: Sequence[str] = ()) -> str:
        """The report as Markdown; ``images`` are plot files to link at the end."""
        lines = [f"# Sweep report: {', '.join(str(r) for r in self.roots)}", ""]
        lines += [
            f"{len(self.runs)} runs in {len(self.groups)} groups; mean ± sample std over seeds; "
            "test scores are entity-level strict IOB2.",
            "",
        ]
        lines += self.table() + [""] + self._teacher_lines()
        points = self.gold_points()
        if points:
            lines += [
                "",
                "## Gold budget",
                "",
                "Gold-equivalent: gold sentences gold-only training needs for the same test micro F1 "
                "(log-linear interpolation).",
                "",
            ]
            lines += ["| series | gold | test micro F1 | gold-equivalent | gold saved |", "|---|---|---|---|---|"]
            for p in points:
                lines.append(
                    f"| {p.series} | {p.gold} | {fmt(p.f1, p.f1_std)} "
                    f"| {_count(p.gold_equivalent)} | {_count(p.saved)} |"
                )
        if self.skipped:
            lines += ["", "## Skipped", ""] + [f"- `{s.path}`: {s.reason}" for s in self.skipped]
        if images:
            lines += ["", "## Plots", ""] + [f"![{Path(i).stem}]({i})" for i in images]
        return "\n".join(lines) + "\n"

    def table(self) -> list[str]:
        """The results table's Markdown lines: one row per group."""
        metrics = self.metrics()
        head = [
            "group",
            "seeds",
            "micro F1",
            "macro F1",
            "micro P",
            "micro R",
            *(f"{t} F1" for t in self.types),
            "best val F1",
            "steps",
            "wall s",
        ]
        keys = [
            "micro_f1",
            "macro_f1",
            "micro_precision",
            "micro_recall",
            *(f"{t}_f1" for t in self.types),
            "val_f1_best",
        ]
        best = max(g.stat(metrics["micro_f1"])[0] for g in self.groups) if self.groups else math.nan
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for group in self.groups:
            cells = [fmt(*group.stat(metrics[k])) for k in keys]
            if group.stat(metrics["micro_f1"])[0] == best and len(self.groups) > 1:
                cells[0] = f"**{cells[0]}**"
            steps, wall = group.stat(metrics["global_step"])[0], group.stat(metrics["wall_s"])[0]
            rows.append(
                f"| {group.label} | {len(group.runs)} ({', '.join(map(str, group.seeds))}) | "
                + " | ".join(cells)
                + f" | {_count(steps)} | {_count(wall)} |"
            )
        return rows

    def _teacher_lines(self) -> list[str]:
        teachers: dict[str, list[str]] = {}
        for group in self.groups:
            teachers.setdefault(group.teacher, []).append(group.label)
        lines = ["## Distilled data", ""]
        return lines + [f"- {teacher}: {'; '.join(labels)}" for teacher, labels in teachers.items()]

    def write(self, out: Path) -> list[Path]:
        """Write report.md, the CSV tables and the PNG plots into ``out``; returns the files."""
        out.mkdir(parents=True, exist_ok=True)
        written = [self._write_summary(out / "summary.csv"), self._write_runs(out / "runs.csv")]
        points = self.gold_points()
        if points:
            written.append(
                _write_csv(
                    out / "gold_budget.csv",
                    ["series", "gold", "f1_mean", "f1_std", "gold_equivalent", "gold_saved"],
                    ([p.series, p.gold, p.f1, p.f1_std, p.gold_equivalent, p.saved] for p in points),
                )
            )
        images = []
        for name, figure in self.figures().items():
            with atomic_path(out / f"{name}.png") as partial:
                figure.savefig(partial, dpi=120)
            images.append(f"{name}.png")
            written.append(out / f"{name}.png")
        write_text(out / "report.md", self.markdown(images))
        return [out / "report.md", *written]

    def _write_summary(self, path: Path) -> Path:
        metrics = self.metrics()
        header = ["group", "n_seeds", "seeds", "teacher", "schedule"] + [
            f"{k}_{s}" for k in metrics for s in ("mean", "std")
        ]
        rows = []
        for g in self.groups:
            stats = [v for k in metrics for v in g.stat(metrics[k])]
            rows.append([g.label, len(g.runs), " ".join(map(str, g.seeds)), g.teacher, g.schedule, *stats])
        return _write_csv(path, header, rows)

    def _write_runs(self, path: Path) -> Path:
        metrics = self.metrics()
        label = {id(run): g.label for g in self.groups for run in g.runs}
        rows = (
            [str(run.path), label[id(run)], run.seed, *(metrics[k](run.metrics) for k in metrics)] for run in self.runs
        )
        return _write_csv(path, ["run", "group", "seed", *metrics], rows)


def _write_csv(path: Path, header: list[str], rows) -> Path:
    with atomic_path(path) as partial, partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    return path


def fmt(mean: float, std: float | None) -> str:
    """``0.812 ± 0.004`` (std omitted for a single run)."""
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _count(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{round(value):,}"


def gold_equivalent(baseline: Sequence[tuple[int, float, float | None]], f1: float) -> float | None:
    """Gold sentences at which the gold-only curve reaches ``f1``: interpolated linearly in log(gold)
    between the first two budgets that bracket it; ``None`` outside the curve's range."""
    for (g0, f0, _), (g1, f_1, _) in zip(baseline, baseline[1:]):
        if min(f0, f_1) <= f1 <= max(f0, f_1) and f0 != f_1:
            t = (f1 - f0) / (f_1 - f0)
            return math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0)))
    return next((float(g) for g, f, _ in baseline if f == f1), None)


def build_report(roots: Sequence[str | Path], group_by: Sequence[str] = ()) -> Report:
    """Load and group every run under ``roots`` (by ``group_by``'s keys where given)."""
    runs, skipped = load_runs(roots)
    return Report([Path(r) for r in roots], runs, skipped, group_by)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nerdistill.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sweeps",
        nargs="+",
        type=Path,
        help=(
            "sweep folders (multirun/<name>/...); several are reported together; annotate sweeps and "
            "select_loop runs side by side"
        ),
    )
    parser.add_argument("--out", type=Path, help="output folder (default: <first sweep>/report)")
    parser.add_argument(
        "--group-by",
        default="",
        help=(
            "comma-separated keys (overrides, config groups or config values) to group by, instead of the "
            "overrides that differ; key=value: the value for runs without the key (e.g. schedule,denoise=none)"
        ),
    )
    args = parser.parse_args(argv)
    loops = load_loops(args.sweeps)  # their students are train runs too: reported per loop, not as a sweep
    if loops:
        selection = SelectionReport(loops)
        files = selection.write(args.out or args.sweeps[0] / "report")
        print(selection.markdown())
        print(f"{len(loops)} loops; wrote {', '.join(f.name for f in files)} to {files[0].parent}")
        return 0
    report = build_report(args.sweeps, [k for k in args.group_by.split(",") if k])
    if not report.runs:
        annotation = build_annotation_report(args.sweeps)
        if annotation.runs:
            return write_annotation_report(annotation, args.out or args.sweeps[0] / "report")
    for skip in report.skipped:
        print(f"skipped {skip.path}: {skip.reason}", file=sys.stderr)
    if not report.runs:
        print(f"no finished runs under {', '.join(map(str, args.sweeps))}; nothing to report", file=sys.stderr)
        return 1
    out = args.out or args.sweeps[0] / "report"
    files = report.write(out)
    print("\n".join(report.table()))
    print(
        f"\n{len(report.runs)} runs in {len(report.groups)} groups ({len(report.skipped)} skipped); "
        f"wrote {', '.join(f.name for f in files)} to {out}"
    )
    return 0


def write_annotation_report(report: AnnotationReport, out: Path) -> int:
    """An annotate sweep (runs with report.json, none with metrics.json): its jobs side by side."""
    for skip in report.skipped:
        print(f"skipped {skip.path}: {skip.reason}", file=sys.stderr)
    files = report.write(out)
    print("\n".join(report.table()))
    print(
        f"\n{len(report.runs)} annotate jobs ({len(report.skipped)} skipped); "
        f"wrote {', '.join(f.name for f in files)} to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
