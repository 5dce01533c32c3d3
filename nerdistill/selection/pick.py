"""The budgeted pick: rank sentences by score, optionally spread the ranking over clusters, and
take from its top until the budget (in sentences or tokens) is spent; and how many picks a loop
makes to its total."""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

UNITS = ("sentences", "tokens")


def rank(scores: Sequence[float], seed: int) -> np.ndarray:
    """Indices from the highest score to the lowest; NaN scores last; ties in a seeded random order."""
    scores = np.asarray(scores, dtype=np.float64)
    tiebreak = np.random.default_rng(seed).permutation(len(scores))
    keyed = np.where(np.isnan(scores), -np.inf, scores)
    return np.lexsort((tiebreak, np.isnan(scores), -keyed))


def spread(order: Sequence[int], clusters: Sequence[int]) -> np.ndarray:
    """``order`` (a ranking) interleaved over ``clusters`` so that every prefix holds each cluster
    about in proportion to its size in the pool: the next pick comes from the cluster with the
    smallest share of its members taken so far (ties: the one whose next sentence ranks higher),
    and within a cluster picks follow the ranking. One table format or topic cannot fill the top."""
    clusters = np.asarray(clusters)
    queues: dict[int, list[int]] = {}
    for position, index in enumerate(order):
        queues.setdefault(int(clusters[index]), []).append(position)
    sizes = {c: len(q) for c, q in queues.items()}
    heads = {c: 0 for c in queues}
    heap = [(0.0, q[0], c) for c, q in queues.items()]
    heapq.heapify(heap)
    out = []
    while heap:
        _, position, c = heapq.heappop(heap)
        out.append(order[position])
        heads[c] += 1
        if heads[c] < sizes[c]:
            heapq.heappush(heap, (heads[c] / sizes[c], queues[c][heads[c]], c))
    return np.asarray(out, dtype=np.int64)


def take(order: Sequence[int], lengths: Sequence[int], unit: str, size: int) -> list[int]:
    """The head of ``order`` that the budget buys: ``size`` sentences, or sentences in order while
    their tokens (``lengths``) stay within ``size`` (the first that would overshoot ends the pick,
    so a token budget is under-spent by less than one sentence). A budget beyond the pool warns
    and takes all of it."""
    if unit not in UNITS:
        raise ValueError(f"budget.unit={unit!r}: expected one of {list(UNITS)}")
    order = [int(i) for i in order]
    total = len(order) if unit == "sentences" else int(sum(lengths[i] for i in order))
    if size >= total:
        if size > total:
            log.warning("budget.size=%d %s is more than the pool's %d: all of it is chosen", size, unit, total)
        return order
    if unit == "sentences":
        return order[:size]
    chosen, spent = [], 0
    for index in order:
        if spent + lengths[index] > size:
            break
        chosen.append(index)
        spent += lengths[index]
    return chosen


def planned_selections(seed_cost: int, size: int, total: int) -> int:
    """The selections a loop makes: ``size`` each from the seed set's cost to ``total``, the last given the
    rest (a token budget is under-spent by less than a sentence a round: the last round makes it up, and
    no round of its own buys the few tokens left over)."""
    return max(1, math.ceil((total - seed_cost) / size))
