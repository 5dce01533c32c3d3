"""What a run trains and evaluates on: its files, each read once (:func:`read_sources`), and the blend
(:func:`blend`): the pools its schedule draws from, the schedule resolved on their pass-weighted
sizes, and the sentences drawn over the run, which the run plan cuts into optimiser steps."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet
from nerdistill.data.pools import Overlap, Pools, read_files, select_pools
from nerdistill.data.sources import read_source
from nerdistill.student.schedules import Schedule

log = logging.getLogger(__name__)

POOLS = ("original", "distilled")
DRAW_UNITS = ("sentences", "tokens")


@dataclass(frozen=True)
class Sources:
    """The sentences of a run's files, each file read once: the gold (``data.original``) and the
    distilled (``data.distilled``) sources, ``None`` where not read, and the dev and test splits."""

    original: list[Sentence] | None
    distilled: list[Sentence] | None
    validation: list[Sentence]
    test: list[Sentence]

    def pools(
        self,
        gold_budget: int | None = None,
        distilled_budget: int | None = None,
        gold_overlap: Overlap = "any",
        budget_seed: int = 0,
    ) -> Pools:
        """The pools drawn from the sources (:func:`~nerdistill.data.pools.select_pools`); a budget of a
        source not read is moot."""
        return select_pools(
            self.original or [],
            self.distilled or [],
            gold_budget if self.original is not None else None,
            distilled_budget if self.distilled is not None else None,
            gold_overlap,
            budget_seed,
        )


def read_sources(
    original: Sequence[str | Path],
    distilled: Sequence[str | Path],
    validation: str,
    test: str,
    labels: LabelSet,
    schedule: Schedule,
    gold_overlap: Overlap = "any",
    every_pool: bool = False,
) -> Sources:
    """Read and validate each file once, the distilled source first. A source ``schedule`` never
    draws from is not read (gold-only training on your own label set does not read the default
    distilled file), unless ``every_pool`` (relabelling reads both) or ``gold_overlap`` needs the
    distilled source to choose the gold sentences."""
    if not every_pool:
        if not schedule.uses_distilled and gold_overlap == "any" and distilled:
            log.info("schedule %s draws no distilled data: data.distilled is not read", schedule)
            distilled = []
        if not schedule.uses_original and original:
            log.info("schedule %s draws no gold data: data.original is not read", schedule)
            original = []
    distilled_sentences = read_files(distilled, labels) if distilled else None
    original_sentences = read_files(original, labels) if original else None
    return Sources(original_sentences, distilled_sentences, read_source(validation, labels), read_source(test, labels))


@dataclass(frozen=True)
class Blend:
    """The pools a run draws from (a pool its schedule never draws is empty), the schedule
    resolved on their sizes, each pool's passes and the sentences drawn in all."""

    pools: Pools
    schedule: Schedule
    passes: dict[str, float]
    examples: float


def check_passes(passes: Mapping[str, float] | None) -> dict[str, float]:
    """``data.passes`` (default one pass over each pool), checked."""
    out = dict(passes or {"original": 1, "distilled": 1})
    if set(out) != set(POOLS) or min(out.values()) <= 0:
        raise ValueError(f"data.passes needs positive 'original' and 'distilled' entries, got {out}")
    return out


def check_draws(draws: Mapping[str, Any] | None) -> dict[str, Any]:
    """``data.draws`` with its defaults (no pool's draws fixed, unit sentences), checked."""
    out = {"original": None, "distilled": None, "unit": "sentences"} | dict(draws or {})
    if set(out) != {*POOLS, "unit"}:
        raise ValueError(f"data.draws takes 'original', 'distilled' and 'unit', got {sorted(out)}")
    if out["unit"] not in DRAW_UNITS:
        raise ValueError(f"data.draws.unit={out['unit']!r}: expected one of {list(DRAW_UNITS)}")
    for name in POOLS:
        value = out[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ValueError(f"data.draws.{name}={value!r}: expected a positive number or null")
    return out


def blend(
    pools: Pools, schedule: Schedule, passes: Mapping[str, float] | None = None, draws: Mapping[str, Any] | None = None
) -> Blend:
    """``pools`` blended by ``schedule``: each pool drawn ``passes[pool]`` times over (``draws``,
    where set for a pool, fixes its draws instead, whatever its size: that many sentences, or with
    ``draws["unit"]: tokens`` sentences worth that many tokens, i.e. ``draws / size`` passes with the
    size counted in the unit). Pool-dependent schedule defaults (sequential's switch, simple_mix's
    share) see the pools' sizes weighted by their passes, so sequential and simple_mix realise the
    passes exactly. A schedule that needs an empty pool is an error."""
    passes, draws = check_passes(passes), check_draws(draws)
    sizes = {"original": pools.original, "distilled": pools.distilled}
    pool_passes = {name: _passes(name, sentences, passes[name], draws) for name, sentences in sizes.items()}
    resolved = schedule.resolve(
        len(pools.original), len(pools.distilled), pool_passes["original"], pool_passes["distilled"]
    )
    if resolved.uses_distilled and not pools.distilled:
        raise ValueError("the schedule needs distilled data but data.distilled yields no sentences")
    if resolved.uses_original and not pools.original:
        raise ValueError("the schedule needs gold data but data.original yields no sentences (check data.gold_budget)")
    drawn = Pools(pools.original if resolved.uses_original else [], pools.distilled if resolved.uses_distilled else [])
    log.info("pools: %d gold, %d distilled sentences; schedule %s", len(drawn.original), len(drawn.distilled), resolved)
    examples = _drawn("original", len(drawn.original), pool_passes, draws) + _drawn(
        "distilled", len(drawn.distilled), pool_passes, draws
    )
    return Blend(drawn, resolved, pool_passes, examples)


def _passes(name: str, sentences: list[Sentence], passes: float, draws: Mapping[str, Any]) -> float:
    """A pool's passes: ``data.passes``, or with ``data.draws`` set for it, its draws over its size in the
    draws' unit."""
    if draws[name] is None or not sentences:
        return passes
    unit = draws["unit"]
    size = len(sentences) if unit == "sentences" else sum(len(s.tokens) for s in sentences)
    log.info(
        "data.draws.%s=%s %s over a pool of %d %s: %.4g passes (instead of data.passes.%s=%s)",
        name,
        draws[name],
        unit,
        size,
        unit,
        draws[name] / size,
        name,
        passes,
    )
    return draws[name] / size


def _drawn(name: str, n: int, pool_passes: Mapping[str, float], draws: Mapping[str, Any]) -> float:
    """Sentences drawn from a pool of ``n``: its passes times its size (``data.draws`` in sentences: exactly
    the draws)."""
    if n and draws[name] is not None and draws["unit"] == "sentences":
        return float(draws[name])
    return pool_passes[name] * n
