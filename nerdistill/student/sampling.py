"""Batch sampler that realises a blending schedule over two pools, step by step.

The run plan (:mod:`nerdistill.student.plan`) gives the pools' sizes, the schedule and the steps.
Indices ``[0, n_original)`` are gold examples and ``[n_original, n_original + n_distilled)``
distilled ones. For global step ``t`` of ``total_steps`` the global batch (``batch_size`` per
rank times ``world_size``) holds ``round(G * C(t + 1)) - round(G * C(t))`` distilled examples,
where ``C(t) = sum_{k < t} schedule(k / total_steps)``: error diffusion, so the realised share
never drifts more than half an example from the schedule's running total.

Each pool is an endless stream of seeded permutations: every example is drawn once before any
repeats. Plans depend only on ``(seed, epoch)``, so every rank computes the same global batches
and keeps its shard ``batch[rank::world_size]``. With ``sort_window > 0`` examples drawn within
a window of steps are grouped by length (each pool sorted and cut into the steps' exact counts,
an example drawn twice swapped out of a batch that already holds it, and chunks with the same
composition shuffled among their steps): batches hold sentences of similar length and no
example twice, while every step keeps the composition the schedule asks for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from nerdistill.student.plan import RunPlan


def distilled_counts(plan: RunPlan) -> np.ndarray:
    """Distilled examples in the global batch of every batch of the run, by error diffusion. With
    gradient accumulation the ``plan.accumulate`` batches of one optimiser step share its share, so
    a phase switch lands on an optimiser step."""
    shares = np.array([plan.share(t // plan.accumulate) for t in range(plan.total_steps * plan.accumulate)])
    global_batch = plan.batch_size * plan.world_size
    cumulative = np.rint(np.concatenate([[0.0], np.cumsum(shares)]) * global_batch).astype(np.int64)
    return np.clip(np.diff(cumulative), 0, global_batch)


class _PoolStream:
    """Random-access view of an endless stream of seeded permutations of ``range(size)``."""

    def __init__(self, size: int, seed: int, pool: int) -> None:
        self.size, self.seed, self.pool = size, seed, pool
        self._cache: dict[int, np.ndarray] = {}

    def _permutation(self, k: int) -> np.ndarray:
        if k not in self._cache:
            self._cache = {k: np.random.default_rng([self.seed, self.pool, k]).permutation(self.size)}
        return self._cache[k]

    def take(self, start: int, count: int) -> np.ndarray:
        """Stream positions ``[start, start + count)``."""
        out = np.empty(count, dtype=np.int64)
        filled = 0
        while filled < count:
            k, offset = divmod(start + filled, self.size)
            chunk = self._permutation(k)[offset : offset + count - filled]
            out[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        return out


class ScheduledBatchSampler(Sampler[list[int]]):
    """Yields this rank's batches (lists of dataset indices) for one epoch of the run ``plan``.

    Steps here are batches, ``plan.batches_per_epoch`` of them per epoch; with gradient
    accumulation ``plan.accumulate`` batches make one optimiser step (see :func:`distilled_counts`).
    Used as a DataLoader ``sampler`` with ``batch_size=None``; Lightning calls :meth:`set_epoch`.
    """

    def __init__(
        self, plan: RunPlan, seed: int = 0, lengths: Sequence[int] | None = None, sort_window: int = 0, rank: int = 0
    ) -> None:
        if not 0 <= rank < plan.world_size:
            raise ValueError(f"rank {rank} is outside world_size {plan.world_size}")
        self.n_original, self.n_distilled = plan.n_original, plan.n_distilled
        self.world_size, self.rank = plan.world_size, rank
        self.steps_per_epoch, self.total_steps = plan.batches_per_epoch, plan.total_steps * plan.accumulate
        self.seed, self.sort_window = seed, sort_window
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.global_batch = plan.batch_size * plan.world_size
        self.counts = distilled_counts(plan)
        if self.counts.sum() and not self.n_distilled:
            raise ValueError("the schedule draws distilled examples but the distilled pool is empty")
        if (self.global_batch - self.counts).sum() and not self.n_original:
            raise ValueError("the schedule draws gold examples but the original pool is empty")
        self._drawn_distilled = np.concatenate([[0], np.cumsum(self.counts)])
        self._original_stream = _PoolStream(self.n_original, seed, 0) if self.n_original else None
        self._distilled_stream = _PoolStream(self.n_distilled, seed, 1) if self.n_distilled else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _count(self, step: int) -> int:
        """Distilled examples in the global batch of ``step`` (steps past the plan: last share)."""
        return int(self.counts[min(step, self.total_steps - 1)])

    def _drawn(self, step: int) -> tuple[int, int]:
        """Examples drawn from (original, distilled) before global ``step``."""
        planned = min(step, self.total_steps)
        distilled = int(self._drawn_distilled[planned]) + (step - planned) * self._count(step)
        return step * self.global_batch - distilled, distilled

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """All ranks' batches of ``epoch``, as dataset indices."""
        first = epoch * self.steps_per_epoch
        steps = range(first, first + self.steps_per_epoch)
        window = self.sort_window if self.sort_window > 0 and self.lengths is not None else 1
        batches: list[np.ndarray] = []
        for start in range(0, len(steps), window):
            batches.extend(self._window(list(steps[start : start + window]), epoch))
        return batches

    def _window(self, steps: list[int], epoch: int) -> list[np.ndarray]:
        counts = [self._count(t) for t in steps]
        original_start, distilled_start = self._drawn(steps[0])
        n_distilled = sum(counts)
        n_original = len(steps) * self.global_batch - n_distilled
        distilled = (
            self._distilled_stream.take(distilled_start, n_distilled) + self.n_original
            if n_distilled
            else np.empty(0, np.int64)
        )
        original = self._original_stream.take(original_start, n_original) if n_original else np.empty(0, np.int64)
        if len(steps) == 1:
            return [np.concatenate([distilled, original])]
        cuts_d = np.cumsum([0] + counts)
        cuts_o = np.cumsum([0] + [self.global_batch - c for c in counts])
        distilled = _without_repeats_in_a_batch(distilled[np.argsort(self.lengths[distilled], kind="stable")], cuts_d)
        original = _without_repeats_in_a_batch(original[np.argsort(self.lengths[original], kind="stable")], cuts_o)
        chunks = [
            np.concatenate([distilled[cuts_d[i] : cuts_d[i + 1]], original[cuts_o[i] : cuts_o[i + 1]]])
            for i in range(len(steps))
        ]
        rng = np.random.default_rng([self.seed, 2, epoch, steps[0]])
        shuffled = list(chunks)
        for count in set(counts):
            slots = [i for i, c in enumerate(counts) if c == count]
            for slot, source in zip(slots, rng.permutation(slots)):
                shuffled[slot] = chunks[source]
        return shuffled

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches(self.epoch):
            yield batch[self.rank :: self.world_size].tolist()


def _without_repeats_in_a_batch(ordered: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """``ordered`` (one pool's draws, sorted by length, cut into batches at ``cuts``) with every
    second copy of an example swapped out of its batch, for the nearest item of a neighbouring
    batch that holds neither: a window longer than its pool draws examples twice, and sorting
    puts the copies side by side. Batches keep their lengths and sizes."""
    ordered = ordered.copy()
    batches = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
    for k, (start, stop) in enumerate(batches):
        seen: set[int] = set()
        for p in range(start, stop):
            if ordered[p] in seen:
                q = _swap_partner(ordered, batches, k, int(ordered[p]))
                if q is not None:
                    ordered[p], ordered[q] = ordered[q], ordered[p]
            seen.add(int(ordered[p]))
    return ordered


def _swap_partner(ordered: np.ndarray, batches: list[tuple[int, int]], k: int, repeated: int) -> int | None:
    """Position nearest to batch ``k`` (next batches first, then earlier ones) of an item that is
    not in batch ``k``, in a batch that does not hold ``repeated``."""
    here = set(ordered[batches[k][0] : batches[k][1]].tolist())
    for distance in range(1, len(batches)):
        for j, positions in (
            (k + distance, lambda a, b: range(a, b)),
            (k - distance, lambda a, b: range(b - 1, a - 1, -1)),
        ):
            if not 0 <= j < len(batches) or repeated in ordered[batches[j][0] : batches[j][1]]:
                continue
            for q in positions(*batches[j]):
                if int(ordered[q]) not in here:
                    return q
    return None
