"""Build the gold ("original") and distilled training pools: read files, apply budgets and overlap."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet
from nerdistill.data.sources import read_source

Overlap = Literal["any", "same", "disjoint"]


@dataclass(frozen=True)
class Pools:
    original: list[Sentence]
    distilled: list[Sentence]


def read_files(paths: Sequence[str | Path], labels: LabelSet) -> list[Sentence]:
    """Read and concatenate sources: CoNLL files, ``.jsonl`` files of sentences with per-token loss
    weights (what relabelling writes, :mod:`nerdistill.data.weighted`) or ``hf:`` datasets
    (:mod:`nerdistill.data.hf`); ids carry each source's name."""
    sentences: list[Sentence] = []
    for path in paths:
        sentences.extend(read_source(path, labels))
    return sentences


def take_budget(sentences: list[Sentence], budget: int | None, seed: int, key: str) -> list[Sentence]:
    """A seeded random subset of ``budget`` sentences (all of them, in order, for ``None``).

    Budgets are nested: for one seed, a smaller budget's subset is the start of any larger one's,
    so a gold-budget curve adds sentences instead of drawing new ones. (The draws are those of
    ``random.Random(seed).sample`` for budgets up to about a tenth of the pool, continued the same
    way beyond.)
    """
    if budget is None:
        return sentences
    if budget < 0:
        raise ValueError(f"{key} must be >= 0 or null, got {budget}")
    if budget > len(sentences):
        raise ValueError(f"{key}={budget} is larger than its pool of {len(sentences)} sentences")
    rng, chosen = random.Random(seed), dict[int, None]()
    while len(chosen) < budget:
        chosen.setdefault(rng.randrange(len(sentences)))
    return [sentences[i] for i in chosen]


def build_pools(
    original: Sequence[str | Path],
    distilled: Sequence[str | Path],
    labels: LabelSet,
    gold_budget: int | None = None,
    distilled_budget: int | None = None,
    gold_overlap: Overlap = "any",
    seed: int = 0,
) -> Pools:
    """Read both pools (the distilled one first) and apply budgets: :func:`select_pools` of the files' sentences."""
    check_overlap(gold_overlap)
    distilled_sentences = read_files(distilled, labels)
    return select_pools(
        read_files(original, labels), distilled_sentences, gold_budget, distilled_budget, gold_overlap, seed
    )


def select_pools(
    gold: list[Sentence],
    distilled: list[Sentence],
    gold_budget: int | None = None,
    distilled_budget: int | None = None,
    gold_overlap: Overlap = "any",
    seed: int = 0,
) -> Pools:
    """The pools drawn from the sentences read: budgets and overlap.

    ``gold_overlap`` decides which gold sentences the gold budget may draw from: ``any`` (all),
    ``same`` (only sentences whose tokens are in the distilled pool: gold for the very
    sentences the teacher annotated, as in the paper) or ``disjoint`` (only sentences the
    teacher did not annotate). Sentences are matched by their tokens.
    """
    check_overlap(gold_overlap)
    distilled_pool = take_budget(distilled, distilled_budget, seed, "data.distilled_budget")
    gold_pool = gold
    if gold_overlap != "any":
        teacher_keys = {s.text_key for s in distilled_pool}
        keep = gold_overlap == "same"
        gold_pool = [s for s in gold_pool if (s.text_key in teacher_keys) == keep]
    return Pools(take_budget(gold_pool, gold_budget, seed + 1, "data.gold_budget"), distilled_pool)


def check_overlap(gold_overlap: str) -> None:
    if gold_overlap not in ("any", "same", "disjoint"):
        raise ValueError(f"data.gold_overlap must be 'any', 'same' or 'disjoint', got {gold_overlap!r}")
