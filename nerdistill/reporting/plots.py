"""Figures for a sweep report. Pure matplotlib ``Figure`` objects (Agg canvas, no pyplot state),
so they save from scripts and display inline in notebooks alike."""

from __future__ import annotations

import re
from collections.abc import Sequence

from matplotlib.figure import Figure

from nerdistill.reporting.sweep import Group, mean_std

MICRO_F1 = "test micro F1"
LINESTYLES = ("-", "--", ":", "-.")  # schedules often overlap (share 0 or 1); styles keep each visible


def short_floats(text: str, digits: int = 3) -> str:
    """``switch=0.4229826029254782`` -> ``switch=0.423``: a schedule's repr fit for a legend."""
    return re.sub(rf"\d+\.\d{{{digits + 1},}}", lambda m: f"{float(m.group()):.{digits}g}", text)


def micro_f1(metrics: dict) -> float:
    return float(metrics["test"]["micro"]["f1"])


def test_f1(groups: Sequence[Group]) -> Figure:
    """Test micro F1 per group: mean with a one-std error bar, each seed as a dot. The figure widens
    with the longest group label, and the x axis spans the scores, so the bars keep their room."""
    longest = max((len(g.label) for g in groups), default=0)
    fig = Figure(figsize=(max(7.0, 4.0 + 0.08 * longest), 1.2 + 0.45 * len(groups)), layout="constrained")
    ax = fig.subplots()
    lows, highs = [], []
    for i, group in enumerate(groups):
        scores = [micro_f1(r.metrics) for r in group.runs]
        mean, std = mean_std(scores)
        ax.barh(i, mean, xerr=std or 0.0, color="C0", alpha=0.6, capsize=4)
        ax.plot(scores, [i] * len(scores), "k.", ms=5)
        lows.append(min(scores))
        highs.append(max(scores) + (std or 0.0))
    ax.set_yticks(range(len(groups)), [g.label for g in groups])
    ax.invert_yaxis()
    ax.set_xlabel(f"{MICRO_F1} (mean ± std over seeds; dots: seeds)")
    ax.set_xlim(max(0.0, min(lows) - 0.05), min(1.0, max(highs) + 0.02))
    return fig


def distilled_share(groups: Sequence[Group]) -> Figure:
    """Each distinct schedule's scheduled distilled share over training progress."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    seen: set[str] = set()
    for group in groups:
        curve = group.runs[0].share_curve()
        if group.schedule in seen or not curve:
            continue
        ax.plot(*zip(*curve), linestyle=LINESTYLES[len(seen) % len(LINESTYLES)], label=short_floats(group.schedule))
        seen.add(group.schedule)
    ax.set(xlabel="training progress (step / total steps)", ylabel="distilled share of each batch", ylim=(-0.03, 1.03))
    if seen:
        ax.legend(fontsize="small")
    return fig


def val_curves(groups: Sequence[Group]) -> Figure:
    """Validation micro F1 at every validation round: mean over seeds, shaded one std."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for i, group in enumerate(groups):
        curves = [dict(run.val_curve()) for run in group.runs]
        steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        if not steps:
            continue
        stats = [mean_std([c[s] for c in curves]) for s in steps]
        means = [m for m, _ in stats]
        stds = [s or 0.0 for _, s in stats]
        ax.plot(steps, means, marker=".", color=f"C{i % 10}", label=group.label)
        ax.fill_between(
            steps,
            [m - s for m, s in zip(means, stds)],
            [m + s for m, s in zip(means, stds)],
            color=f"C{i % 10}",
            alpha=0.2,
        )
    ax.set(xlabel="step", ylabel="validation micro F1")
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


def gold_budget(series: dict[str, list[tuple[int, float, float | None]]]) -> Figure:
    """Test micro F1 against gold sentences (log scale), one line per regimen."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for name, points in series.items():
        xs, means, stds = zip(*points)
        ax.errorbar(xs, means, yerr=[s or 0.0 for s in stds], marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set(xlabel="gold training sentences", ylabel=MICRO_F1)
    ax.legend(fontsize="small")
    return fig
