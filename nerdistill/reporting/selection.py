"""Active-learning loops side by side: F1 against the human budget, in sentences and in tokens.

``python -m nerdistill.report <folders>`` uses it for folders holding ``python -m nerdistill.select_loop``
runs (a ``report.json`` with ``rounds``) and writes ``report.md``, ``rounds.csv`` (one row per loop,
round and student) and ``budget.png``: per strategy, cost unit, number of rounds and round, the gold
set's sentences and tokens, each student's dev and test F1 (mean ± sample std over seeds) and both
against the random loop of the same seed at the same budget (mean ± std of the paired differences;
choose on dev), in the loop's own unit and, where a random loop spent it, in the other; and what a
round costs in time: the selection's pass over the pool (ms per sentence
and pass, from the selection's own report) and each student's training.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

from nerdistill.files import atomic_path, write_text
from nerdistill.reporting.sweep import mean_std
from nerdistill.selection.pick import planned_selections

STUDENTS = ("original", "sequential")
SPLITS = {"dev": "val_f1_best", "test": "test_f1"}
STYLES = {"original": ("-", "o"), "sequential": ("--", "s")}  # line, marker
OTHER_UNIT = {"sentences": "tokens", "tokens": "sentences"}


def series_colour(index: int) -> tuple[float, ...]:
    """A colour per series, 20 before any repeats: tab20's darker shades of its ten hues first, then the lighter."""
    return colormaps["tab20"]((2 * index + (index // 10) % 2) % 20)


@dataclass(frozen=True)
class Loop:
    """One ``select_loop`` run: its strategy (with ``per word`` and clusters where set), unit, seed, rounds,
    the budget a round chooses (``size``) up to ``total``, both in ``unit``, and its ``loop.name``."""

    path: Path
    strategy: str
    unit: str
    seed: int
    rounds: tuple[dict, ...]
    note: str
    size: int
    total: int
    name: str | None = None

    @property
    def selections(self) -> int:
        """The selections the loop makes from its seed set to ``total`` (the rounds it plans, less round 0)."""
        return planned_selections(self.rounds[0]["gold"][self.unit], self.size, self.total) if self.rounds else 1

    @property
    def series(self) -> str:
        """The report's name for the loops of one design over seeds: ``loop.name``, else strategy, unit and
        the number of selections beyond one."""
        if self.name:
            return self.name
        rounds = f", {self.selections} rounds" if self.selections > 1 else ""
        return f"{self.strategy} ({self.unit}{rounds})"

    def allowed(self, r: int) -> int | None:
        """What round ``r``'s gold set could cost in ``unit``: the seed set, then ``size`` a round, at most
        ``total`` (a token budget is under-spent by less than a sentence)."""
        if r >= len(self.rounds):
            return None
        return min(self.rounds[0]["gold"][self.unit] + r * self.size, self.total)

    def budget(self, r: int, unit: str) -> int | None:
        """Round ``r``'s budget in ``unit``: what it was allowed in the loop's own unit, what it cost in another."""
        if r >= len(self.rounds):
            return None
        return self.allowed(r) if unit == self.unit else self.rounds[r]["gold"][unit]

    def selection_timings(self) -> list[dict]:
        """The ``timing`` of each round's selection report (``round_<r>/selection/report.json``) that is kept."""
        timings = []
        for r in range(len(self.rounds)):
            try:
                timings.append(
                    json.loads((self.path / f"round_{r}" / "selection" / "report.json").read_text())["timing"]
                )
            except (OSError, ValueError, KeyError):
                continue
        return timings

    def f1(self, r: int, student: str, split: str) -> float | None:
        """``split``: ``val_f1_best`` (dev) or ``test_f1``; None where the round or student is missing."""
        if r >= len(self.rounds):
            return None
        return (self.rounds[r]["students"].get(student) or {}).get(split)


def strategy_label(settings: dict) -> str:
    clusters = settings.get("clusters")
    return (
        settings["strategy"]
        + (" per word" if settings.get("per_word") else "")
        + (f", {clusters} clusters" if clusters else "")
    )


def load_loops(roots: Sequence[str | Path]) -> list[Loop]:
    """Every finished or unfinished loop under ``roots`` (searched recursively), by path."""
    loops = []
    for root in map(Path, roots):
        for path in sorted(root.rglob("report.json")):
            try:
                report = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(report, dict) or "rounds" not in report or "settings" not in report:
                continue  # a selection's or an annotate job's report
            settings = report["settings"]
            loops.append(
                Loop(
                    path.parent,
                    strategy_label(settings),
                    settings["budget"]["unit"],
                    int(settings["seed"]),
                    tuple(report["rounds"]),
                    report.get("note", ""),
                    int(settings["budget"]["size"]),
                    int(settings["total"]),
                    settings.get("name"),
                )
            )
    return loops


def spread(values: Sequence[float | None], form: str) -> str:
    """``mean (min-max)`` of the values given, ``–`` for none."""
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    mean = form.format(sum(present) / len(present))
    low, high = form.format(min(present)), form.format(max(present))
    return mean if low == high else f"{mean} ({low}-{high})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table's lines."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def fmt(values: Sequence[float | None], signed: bool = False) -> str:
    mean, std = mean_std(values)
    if mean != mean:  # nan: nothing measured
        return "–"
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if std is None else f"{text} ± {std:.4f}"


def curve(loops: Sequence[Loop], student: str) -> list[tuple[tuple[float, float], float, float]]:
    """Per round of ``loops`` (one series): the gold set's mean (sentences, tokens), and the mean and std
    over seeds of ``student``'s test F1, for the rounds where it was trained."""
    points = []
    for r in range(max(len(lp.rounds) for lp in loops)):
        present = [lp for lp in loops if r < len(lp.rounds)]
        mean, std = mean_std([lp.f1(r, student, "test_f1") for lp in present])
        if mean == mean:
            gold = [lp.rounds[r]["gold"] for lp in present]
            size = (mean_std([g["sentences"] for g in gold])[0], mean_std([g["tokens"] for g in gold])[0])
            points.append((size, mean, std or 0.0))
    return points


@dataclass(frozen=True)
class SelectionReport:
    loops: list[Loop]

    def series(self) -> dict[str, list[Loop]]:
        """Loops by strategy and unit, random first, in first-seen order otherwise."""
        grouped: dict[str, list[Loop]] = {}
        for loop in sorted(self.loops, key=lambda lp: (not lp.strategy.startswith("random"), str(lp.path))):
            grouped.setdefault(loop.series, []).append(loop)
        return grouped

    def partner(self, loop: Loop, r: int, unit: str) -> tuple[Loop, int] | None:
        """The random loop of the same seed, and its round, whose gold set cost what round ``r`` of ``loop``
        did in ``unit`` (``Loop.budget``: what a loop was allowed in its own unit, what it spent in the
        other); None for a random loop or where no random round cost the same."""
        if loop.strategy == "random":
            return None
        budget = loop.budget(r, unit)
        for random in self.loops:
            if random.strategy == "random" and random.seed == loop.seed:
                same = next((q for q in range(len(random.rounds)) if random.budget(q, unit) == budget), None)
                if same is not None:
                    return random, same
        return None

    def rows(self) -> list[list[str]]:
        rows = []
        for name, loops in self.series().items():
            for r in range(max(len(lp.rounds) for lp in loops)):
                present = [lp for lp in loops if r < len(lp.rounds)]
                gold = [lp.rounds[r]["gold"] for lp in present]
                row = [
                    name,
                    str(r),
                    ", ".join(str(lp.seed) for lp in present),
                    f"{mean_std([g['sentences'] for g in gold])[0]:,.0f}",
                    f"{mean_std([g['tokens'] for g in gold])[0]:,.0f}",
                ]
                for student in STUDENTS:
                    row += [fmt([lp.f1(r, student, split) for lp in present]) for split in SPLITS.values()]
                    row += [
                        fmt(self.against_random(present, r, student, split, own_unit=True), signed=True)
                        for split in SPLITS.values()
                    ]
                rows.append(row)
        return rows

    def cross_unit_rows(self) -> list[list[str]]:
        """Rounds after the seed set that have a random partner at equal cost in the unit their loop did not
        budget in (a loop in sentences against random at its tokens, and the reverse)."""
        rows = []
        for name, loops in self.series().items():
            for r in range(1, max(len(lp.rounds) for lp in loops)):
                present = [lp for lp in loops if r < len(lp.rounds)]
                paired = [lp for lp in present if self.partner(lp, r, OTHER_UNIT[lp.unit]) is not None]
                if not paired:
                    continue
                unit = OTHER_UNIT[paired[0].unit]
                row = [
                    name,
                    str(r),
                    ", ".join(str(lp.seed) for lp in paired),
                    f"{mean_std([lp.rounds[r]['gold'][unit] for lp in paired])[0]:,.0f} {unit}",
                ]
                for student in STUDENTS:
                    row += [
                        fmt(self.against_random(paired, r, student, split, own_unit=False), signed=True)
                        for split in SPLITS.values()
                    ]
                rows.append(row)
        return rows

    def against_random(self, loops: Sequence[Loop], r: int, student: str, split: str, own_unit: bool) -> list[float]:
        """F1 on ``split`` at round ``r`` minus that of the random round of the same seed that cost the same
        (``partner``) in each loop's own unit or in the other, where both exist."""
        differences = []
        for loop in loops:
            found = self.partner(loop, r, loop.unit if own_unit else OTHER_UNIT[loop.unit])
            mine = loop.f1(r, student, split)
            theirs = found[0].f1(found[1], student, split) if found is not None else None
            if mine is not None and theirs is not None:
                differences.append(mine - theirs)
        return differences

    def markdown(self) -> str:
        header = ["strategy (unit)", "round", "seeds", "gold sentences", "gold tokens"]
        for student in STUDENTS:
            header += [f"{student} {split}" for split in SPLITS] + [f"{student} {split} - random" for split in SPLITS]
        notes = sorted({lp.note for lp in self.loops if lp.note})
        lines = [
            "# Active learning: F1 against the human budget",
            "",
            *notes,
            "",
            "Mean ± sample std over seeds. `- random`: the paired difference with the random loop of the same "
            "seed at the round whose gold set cost what this round was allowed to spend in this loop's unit; "
            "compare costs in the gold columns.",
            "",
            *table(header, self.rows()),
            "",
            *self.cross_unit_markdown(),
            "![F1 against the human budget](budget.png)",
            "",
            *self.timing_markdown(),
        ]
        return "\n".join(lines)

    def cross_unit_markdown(self) -> list[str]:
        """The table of ``cross_unit_rows``, or nothing where no loop has such a partner."""
        rows = self.cross_unit_rows()
        if not rows:
            return []
        header = ["strategy (unit)", "round", "seeds", "cost in the other unit"]
        header += [f"{student} {split} - random" for student in STUDENTS for split in SPLITS]
        return [
            "The same rounds against random at equal cost in the other unit: the paired difference with the "
            "random loop of the same seed whose gold set was allowed what this round spent in the unit its loop "
            "did not budget in (a loop in sentences against random at its tokens, and the reverse).",
            "",
            *table(header, rows),
            "",
        ]

    def timing_markdown(self) -> list[str]:
        """Per strategy and unit, over its loops' rounds: the selection's seconds and model passes, its ms per
        candidate sentence and pass (as its report gives them), and each student's training seconds (mean,
        min-max)."""
        header = ["strategy (unit)", "selections", "selection s", "model passes", "ms per sentence and pass"]
        header += [f"{student} s" for student in STUDENTS]
        rows = []
        for name, loops in self.series().items():
            timings = [t for lp in loops for t in lp.selection_timings()]
            seconds = {
                student: [
                    record["students"][student]["seconds"]
                    for lp in loops
                    for record in lp.rounds
                    if "seconds" in (record["students"].get(student) or {})
                ]
                for student in STUDENTS
            }
            rows.append(
                [
                    name,
                    str(len(timings)),
                    spread([t.get("score_s") for t in timings], "{:.0f}"),
                    spread([t.get("model_passes") for t in timings], "{:.0f}"),
                    spread([t.get("ms_per_sentence_and_pass") for t in timings], "{:.2f}"),
                    *(spread(seconds[student], "{:.0f}") for student in STUDENTS),
                ]
            )
        return [
            "Time per round (wall seconds on the machine that ran the loop; mean, min-max): the selection scores "
            "the pool with the round's student (`selection s`: the model's passes and the scores), then each "
            "student trains and is tested.",
            "",
            *table(header, rows),
            "",
        ]

    def figure(self) -> Figure:
        """Test F1 against the gold set's sentences and tokens: a line per strategy and unit (every random loop
        on one black line, by budget; each other series its own colour), solid with dots for the gold-only
        student, dashed with squares for the sequential one; error bars one std over seeds; the legend below
        both panels."""
        fig = Figure(figsize=(12, 6), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        series = self.series()
        randoms = [loops for loops in series.values() if loops[0].strategy == "random"]
        lines = ([("random", "black", randoms)] if randoms else []) + [
            (name, series_colour(i), [loops])
            for i, (name, loops) in enumerate((n, lp) for n, lp in series.items() if lp[0].strategy != "random")
        ]
        for name, colour, groups in lines:
            for student in STUDENTS:
                # a budget that several groups share (random's seed set) is drawn once; each panel in its order
                points = list({p[0]: p for loops in groups for p in curve(loops, student)}.values())
                for ax, k in zip(axes, (0, 1)):
                    if points:
                        points.sort(key=lambda p: p[0][k])
                        ax.errorbar(
                            [p[0][k] for p in points],
                            [p[1] for p in points],
                            yerr=[p[2] for p in points],
                            color=colour,
                            linestyle=STYLES[student][0],
                            marker=STYLES[student][1],
                            capsize=3,
                            label=f"{name}, {student}",
                        )
        axes[0].set(xlabel="gold sentences (the human budget)", ylabel="test micro F1")
        axes[1].set(xlabel="gold tokens (the human budget)")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize="small")
        return fig

    def write(self, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "report.md", self.markdown())
        with atomic_path(out / "rounds.csv") as partial, partial.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["loop", "strategy", "unit", "seed", "round", "sentences", "tokens", "student", "dev", "test"]
            )
            for loop in self.loops:
                for r, record in enumerate(loop.rounds):
                    for student in STUDENTS:
                        if student in record["students"]:
                            writer.writerow(
                                [
                                    loop.path,
                                    loop.strategy,
                                    loop.unit,
                                    loop.seed,
                                    r,
                                    record["gold"]["sentences"],
                                    record["gold"]["tokens"],
                                    student,
                                    loop.f1(r, student, "val_f1_best"),
                                    loop.f1(r, student, "test_f1"),
                                ]
                            )
        with atomic_path(out / "budget.png") as partial:
            self.figure().savefig(partial, format="png", dpi=120)
        return [out / "report.md", out / "rounds.csv", out / "budget.png"]
