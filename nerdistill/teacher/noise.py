"""The simulated teacher's noise model: corrupt entity spans so that F1 lands on a target.

Each oracle entity is independently *missed*, given a *wrong type*, or given a *boundary*
error (one token more or less), and *spurious* entities are added on tokens outside any
entity. With shares ``a, b, c, d`` of one intensity ``λ`` (per oracle entity), the expected
counts are TP = E(1 - sλ), predicted = E(1 - aλ + dλ), s = a + b + c, so

    F1 = 2(1 - sλ) / (2 - aλ + dλ)   =>   λ = 2(1 - F1) / (2s - F1(a - d)),

which :func:`intensity` solves; F1 is measured against the oracle (gold: against gold).
Separately, *hallucinated* entities (strings not in the sentence) are added per sentence;
the parser drops and counts them, so they do not move F1.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Span = tuple[int, int, str]
DEFAULT_MIX = {"missed": 0.35, "type": 0.3, "boundary": 0.2, "spurious": 0.15}
HALLUCINATIONS = (
    "John Smith",
    "United Nations",
    "Springfield",
    "Acme Corp",
    "Olympic Games",
    "Maria Garcia",
    "New Zealand",
)


def intensity(target_f1: float, mix: Mapping[str, float]) -> float:
    """λ for a target F1 (1.0: no noise)."""
    if not 0.0 <= target_f1 <= 1.0:
        raise ValueError(f"target F1 must be in [0, 1], got {target_f1}")
    a, b, c, d = (float(mix[k]) for k in ("missed", "type", "boundary", "spurious"))
    s = a + b + c
    if s <= 0:
        raise ValueError(f"noise mix needs a positive missed/type/boundary share, got {dict(mix)}")
    return 2 * (1 - target_f1) / (2 * s - target_f1 * (a - d))


@dataclass(frozen=True)
class NoiseModel:
    """Per-entity corruption rates for ``target_f1``; :meth:`corrupt` applies them."""

    target_f1: float
    types: tuple[str, ...]
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    hallucination_rate: float = 0.0

    @property
    def rates(self) -> dict[str, float]:
        lam = intensity(self.target_f1, self.mix)
        return {k: lam * float(v) for k, v in self.mix.items()}

    def corrupt(
        self,
        tokens: Sequence[str],
        spans: Sequence[Span],
        rng: random.Random,
        shared: random.Random | None = None,
        correlation: float = 0.0,
    ) -> tuple[list[Span], list[str]]:
        """``(spans, hallucinated strings)``.

        Within a sentence the fates are drawn by systematic sampling (evenly spaced uniforms
        with one random offset, shuffled over the entities), which keeps each error's rate
        exact in expectation but makes the counts far less variable than independent draws.
        With probability ``correlation`` the sentence's draws come from ``shared`` (a
        per-sentence stream) instead of ``rng`` (per request), so repeated samples of one
        sentence make the same errors part of the time, as a real model's do.
        """
        rates = self.rates
        source = shared if shared is not None and rng.random() < correlation else rng
        taken = [False] * len(tokens)
        for start, end, _ in spans:
            taken[start:end] = [True] * (end - start)
        offset = source.random()
        draws = [(k + offset) / len(spans) for k in range(len(spans))]
        source.shuffle(draws)
        out: list[Span] = []
        for (start, end, kind), u in zip(spans, draws):
            if u < rates["missed"]:
                continue
            if u < rates["missed"] + rates["type"]:
                out.append((start, end, self._other_type(kind, source)))
            elif u < rates["missed"] + rates["type"] + rates["boundary"]:
                out.append(self._boundary(start, end, kind, tokens, taken, source))
            else:
                out.append((start, end, kind))
        for _ in range(int(rates["spurious"] * len(spans) + source.random())):
            span = self._spurious(tokens, taken, source)
            if span:
                out.append(span)
        hallucinated = [h for h in HALLUCINATIONS if h not in " ".join(tokens)]
        extra = [rng.choice(hallucinated)] if hallucinated and rng.random() < self.hallucination_rate else []
        return sorted(out), extra

    def _other_type(self, kind: str, rng: random.Random) -> str:
        others = [t for t in self.types if t != kind]
        return rng.choice(others) if others else kind

    def _boundary(
        self, start: int, end: int, kind: str, tokens: Sequence[str], taken: list[bool], rng: random.Random
    ) -> Span:
        options = []
        if end - start > 1:
            options += [(start + 1, end), (start, end - 1)]
        if start > 0 and not taken[start - 1] and tokens[start - 1][:1].isalnum():
            options.append((start - 1, end))
        if end < len(tokens) and not taken[end] and tokens[end][:1].isalnum():
            options.append((start, end + 1))
        if not options:
            return (start, end, self._other_type(kind, rng))
        new_start, new_end = rng.choice(options)
        taken[new_start:new_end] = [True] * (new_end - new_start)
        return (new_start, new_end, kind)

    def _spurious(self, tokens: Sequence[str], taken: list[bool], rng: random.Random) -> Span | None:
        free = [i for i, t in enumerate(tokens) if not taken[i]]
        if not free:
            return None
        words = [i for i in free if tokens[i][:1].isalnum()]
        capitalised = [i for i in words if tokens[i][:1].isupper()]
        i = rng.choice(capitalised or words or free)
        taken[i] = True
        return (i, i + 1, rng.choice(self.types))
