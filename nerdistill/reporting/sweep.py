"""Read a Hydra sweep's runs and group them by everything but the seed.

A run is a directory with ``.hydra/config.yaml`` (written by ``python -m nerdistill.train``);
it counts once its ``metrics.json`` exists. Runs are grouped by the task overrides that differ
across runs, ``seed`` excepted: that label names each group in tables and plots.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

NOISEBENCH = "real GPT-3.5 labels (NoiseBench)"
GOLD_ONLY = "none (gold only)"
GOLD_BUDGET_KEY = "data.gold_budget"
# settings that pick the distilled data: "none" for a run that used none
DISTILLED_KEYS = ("teacher_labels", "data.distilled")
R = TypeVar("R")


@dataclass(frozen=True)
class Run:
    """One finished training run."""

    path: Path
    config: DictConfig  # as Hydra saved it: unresolved
    overrides: dict[str, str]  # task overrides, key -> value as typed
    metrics: dict
    cwd: Path  # where the run was started: relative data paths are relative to it
    choices: dict[str, str] = field(default_factory=dict)  # config groups chosen (.hydra/hydra.yaml)

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    def setting(self, key: str) -> str | None:
        """``key`` as the run set it: its override, else the config group it chose, else its config
        value; ``none`` for a key that picks the distilled data (:data:`DISTILLED_KEYS`) in a run that used none."""
        if key in DISTILLED_KEYS and not self.distilled_files():
            return "none"
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return str(self.choices[key])
        value = self.get(key)
        return None if value is None else str(value)

    def get(self, key: str, default: Any = None) -> Any:
        """A config value, resolved; ``default`` when missing or unresolvable outside Hydra."""
        try:
            value = OmegaConf.select(self.config, key, default=default)
            return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
        except OmegaConfBaseException:
            return default

    @property
    def gold_sentences(self) -> int | None:
        """Gold sentences in the run's pool (metrics.json; the configured budget if it used no gold)."""
        used = self.metrics.get("pools", {}).get("original")
        return used or self.get(GOLD_BUDGET_KEY)

    def distilled_files(self) -> list[Path]:
        """The distilled pool's files, absolute (empty when the schedule used no distilled data)."""
        if not self.metrics.get("pools", {}).get("distilled", 1):
            return []
        files = self.get("data.distilled", []) or []
        return [p if p.is_absolute() else self.cwd / p for p in map(Path, files)]

    def val_curve(self) -> list[tuple[int, float]]:
        """``(step, val/f1)`` at every validation round, from the CSV logger's metrics.csv."""
        rows = _read_csv(self.path / "csv" / "metrics.csv")
        return [(int(r["step"]), float(r["val/f1"])) for r in rows if r.get("val/f1")]

    def share_curve(self) -> list[tuple[float, float]]:
        """``(progress, scheduled distilled share)`` per step, from distilled_share.csv."""
        rows = _read_csv(self.path / "distilled_share.csv")
        return [(float(r["progress"]), float(r["scheduled_share"])) for r in rows]


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str
    overrides: dict[str, str] | None = None  # when readable: keeps group labels stable while a sweep runs


@dataclass(frozen=True)
class Group:
    """Runs that differ only in their seed."""

    label: str
    overrides: dict[str, str]  # the varying overrides that make up the label
    runs: tuple[Run, ...]

    @property
    def seeds(self) -> list[int]:
        return sorted(run.seed for run in self.runs)

    def stat(self, metric: Callable[[dict], float | None]) -> tuple[float, float | None]:
        """Mean and sample standard deviation over the runs (std ``None`` for a single run)."""
        return mean_std([metric(run.metrics) for run in self.runs])

    @property
    def teacher(self) -> str:
        """Which teacher produced this group's distilled data."""
        files = sorted({f for run in self.runs for f in run.distilled_files()})
        return " + ".join(dict.fromkeys(describe_teacher(f) for f in files)) if files else GOLD_ONLY

    @property
    def schedule(self) -> str:
        """The resolved schedule, as the runs' metrics.json records it."""
        return str(self.runs[0].metrics.get("schedule", "?"))


def mean_std(values: Sequence[float | None]) -> tuple[float, float | None]:
    """Mean and sample std of the values that exist (``nan`` mean when none do)."""
    present = [v for v in values if v is not None]
    if not present:
        return math.nan, None
    return statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else None


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _parse_overrides(lines: Iterable[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def read_overrides(path: Path) -> dict[str, str]:
    """A run directory's task overrides (``.hydra/overrides.yaml``), key -> value as typed."""
    overrides_file = path / ".hydra" / "overrides.yaml"
    return _parse_overrides(OmegaConf.load(overrides_file)) if overrides_file.exists() else {}


def load_run(path: Path) -> Run | Skipped:
    """Read one run directory; a :class:`Skipped` says why it cannot be reported."""
    overrides = read_overrides(path)
    metrics_file = path / "metrics.json"
    if not metrics_file.exists():
        return Skipped(path, "no metrics.json: the job crashed or is still running", overrides)
    try:
        metrics = json.loads(metrics_file.read_text())
        micro_f1 = float(metrics["test"]["micro"]["f1"])
    except (ValueError, KeyError, TypeError) as error:
        return Skipped(path, f"unreadable metrics.json ({type(error).__name__}: {error})", overrides)
    if math.isnan(micro_f1):
        return Skipped(path, "metrics.json has no test F1", overrides)
    config = OmegaConf.load(path / ".hydra" / "config.yaml")
    hydra_file = path / ".hydra" / "hydra.yaml"
    hydra = OmegaConf.load(hydra_file) if hydra_file.exists() else OmegaConf.create()
    cwd = Path(OmegaConf.select(hydra, "hydra.runtime.cwd", default=".")) if hydra_file.exists() else Path.cwd()
    choices = OmegaConf.select(hydra, "hydra.runtime.choices", default=None) or {}
    if OmegaConf.select(config, "paths") is not None:
        config.paths.output_dir = str(path)  # was ${hydra:runtime.output_dir}, unresolvable here
    return Run(path, config, overrides, metrics, cwd, {str(k): str(v) for k, v in choices.items()})


def _job_order(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in path.parts)


def load_runs(
    roots: Sequence[str | Path], load: Callable[[Path], R | Skipped] = load_run
) -> tuple[list[R], list[Skipped]]:
    """Every run under ``roots`` (searched recursively), in sweep order, read by ``load``, and those skipped."""
    runs: list[R] = []
    skipped: list[Skipped] = []
    for root in map(Path, roots):
        if not root.is_dir():
            skipped.append(Skipped(root, "not a directory"))
            continue
        dirs = sorted({c.parent.parent for c in root.rglob(".hydra/config.yaml")}, key=_job_order)
        if not dirs:
            skipped.append(Skipped(root, "no runs (no */.hydra/config.yaml) under it"))
        for path in dirs:
            loaded = load(path)
            (skipped if isinstance(loaded, Skipped) else runs).append(loaded)
    return runs, skipped


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """``model.module.lr_schedule`` -> ``lr_schedule`` where the last part is unambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def varying_keys(everyone: Sequence[dict[str, str]]) -> list[str]:
    """Override keys whose value differs across runs, ``seed`` excepted, in first-seen order."""
    keys: list[str] = []
    for overrides in everyone:
        keys += [k for k in overrides if k not in keys and k != "seed"]
    return [k for k in keys if len({o.get(k) for o in everyone}) > 1]


def group_runs(runs: Sequence[Run], others: Sequence[dict[str, str]] = (), by: Sequence[str] = ()) -> list[Group]:
    """Group runs by the overrides that differ across them, ``seed`` excepted, in sweep order.

    ``others``: overrides of runs not reported (unfinished), which count for what differs.
    ``by``: group by these keys instead, as each run set them (:meth:`Run.setting`), so runs
    launched with different overrides (a baseline from another sweep) fall into one group;
    ``key=value`` gives the value for runs that do not set the key.
    """
    if by:
        defaults = dict(k.partition("=")[::2] for k in by)
        keys = list(defaults)
        keyed: dict[tuple, list[Run]] = {}
        for run in runs:
            keyed.setdefault(tuple(run.setting(k) or defaults[k] or None for k in keys), []).append(run)
        short = short_keys(keys)
        return [
            Group(", ".join(f"{short[k]}={v}" for k, v in zip(keys, values)), dict(zip(keys, values)), tuple(members))
            for values, members in keyed.items()
        ]
    everyone = [run.overrides for run in runs] + list(others)
    varying = varying_keys(everyone)
    short = short_keys(varying)
    grouped: dict[tuple, list[Run]] = {}
    for run in runs:
        grouped.setdefault(tuple(run.overrides.get(k) for k in varying), []).append(run)
    groups = []
    for values, members in grouped.items():
        label = ", ".join(f"{short[k]}={v}" for k, v in zip(varying, values) if v is not None) or "all runs"
        groups.append(Group(label, {k: v for k, v in zip(varying, values) if v is not None}, tuple(members)))
    return groups


def describe_teacher(path: Path) -> str:
    """Who labelled a distilled file: NoiseBench's GPT-3.5, or what the annotate job that wrote it
    recorded in ``report.json`` beside it; ``unknown teacher`` otherwise."""
    if "noisebench_gpt35" in path.parts:
        return NOISEBENCH
    try:
        report = json.loads((path.parent / "report.json").read_text())
        return _describe_annotate_report(report)
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return f"unknown teacher ({path})"


def _describe_annotate_report(report: dict) -> str:
    """One line from ``python -m nerdistill.annotate``'s report.json."""
    quality = report.get("quality") or {}
    measured = f"measured F1 {quality['micro']['f1']:.3f}" if quality.get("micro") else "no gold to measure"
    prompt = report.get("prompt") or {}
    prompt_name = f"prompt {prompt.get('id')}" if prompt.get("id") else ""
    if not report.get("simulated"):
        teacher = report.get("teacher") or {}
        return f"LLM teacher {teacher.get('model', '?')} ({', '.join(b for b in (prompt_name, measured) if b)})"
    settings = (report.get("simulator") or {}).get("settings") or {}
    if any("noisebench_gpt35" in str(f) for f in settings.get("oracle") or []):
        return f"real GPT-3.5 labels (NoiseBench) replayed by the simulated teacher ({measured})"
    target = settings.get("target_f1")
    aim = f"target F1 {target:.2f}" if target is not None else f"target F1 by prompt style, {prompt_name}"
    return f"SIMULATED teacher ({aim}, {measured})"
