"""Which gold sentences a prompt shows as worked examples: the same few for every sentence, or each
sentence's nearest neighbours in the gold pool.

Both follow one small protocol: :meth:`fit` sees the sentences a job will annotate (all at once, so
their embeddings come in batches), :meth:`for_sentence` gives a sentence's examples, and
:meth:`summary` says what was done for the report. A sentence is never its own example (matched by
its tokens).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import spans
from nerdistill.embeddings import SentenceEncoder


class Examples(Protocol):
    def fit(self, sentences: Sequence[Sentence]) -> None: ...

    def for_sentence(self, sentence: Sentence) -> list[Sentence]: ...

    def summary(self) -> dict: ...


class FixedExamples:
    """The same ``k`` examples for every sentence: a seeded draw of mid-length sentences with
    entities, not all-caps headlines; each pick the one (of the first 200 in a seeded shuffle) that
    adds the most types not yet shown. ``k + 1`` are kept, so a sentence that is one of them gets the next."""

    def __init__(self, pool: Sequence[Sentence], k: int, seed: int = 0) -> None:
        self.k, self.seed, self.pool_size = k, seed, len(pool)
        candidates = [
            s
            for s in pool
            if 8 <= len(s.tokens) <= 30 and spans(s.tags) and not all(t.isupper() or not t.isalpha() for t in s.tokens)
        ]
        random.Random(seed).shuffle(candidates)
        window = candidates[:200]
        self.chosen: list[Sentence] = []
        covered: set[str] = set()
        while window and len(self.chosen) < k + 1:
            best = max(window, key=lambda s: len({kind for _, _, kind in spans(s.tags)} - covered))
            window.remove(best)
            self.chosen.append(best)
            covered |= {kind for _, _, kind in spans(best.tags)}

    def fit(self, sentences: Sequence[Sentence]) -> None:
        """Nothing to do: the examples do not depend on the sentences."""

    def for_sentence(self, sentence: Sentence) -> list[Sentence]:
        return [s for s in self.chosen if s.tokens != sentence.tokens][: self.k]

    def summary(self) -> dict:
        return {
            "strategy": "random",
            "k": self.k,
            "pool": self.pool_size,
            "seed": self.seed,
            "examples": [s.id for s in self.chosen[: self.k]],
        }


class NearestExamples:
    """Each sentence's ``k`` most similar gold sentences by sentence embedding (cosine), the most
    similar last, next to the sentence. Left out, and counted: the sentence itself (same tokens) and,
    unless ``same_document``, sentences of its own document (neighbours from one article leak its
    entities); repeats of one text in the pool count once."""

    def __init__(self, pool: Sequence[Sentence], k: int, encoder: SentenceEncoder, same_document: bool = False) -> None:
        if len(pool) < k:
            raise ValueError(f"prompt.examples=knn: the gold pool has {len(pool)} sentences, fewer than prompt.k={k}")
        first: dict[tuple[str, ...], Sentence] = {}
        for sentence in pool:
            first.setdefault(sentence.tokens, sentence)
        unique = list(first.values())
        self.pool, self.k, self.encoder, self.same_document = unique, k, encoder, same_document
        self.vectors = encoder.encode([s.tokens for s in unique])
        self.chosen: dict[tuple[tuple[str, ...], str | None], list[tuple[Sentence, float]]] = {}
        self.excluded: Counter = Counter()

    def fit(self, sentences: Sequence[Sentence]) -> None:
        """Choose the examples of every sentence not yet seen, their embeddings computed in one go."""
        new = list({self._key(s): s for s in sentences if self._key(s) not in self.chosen}.values())
        if not new:
            return
        similarity = self.encoder.encode([s.tokens for s in new]) @ self.vectors.T
        for sentence, row in zip(new, similarity):
            self.chosen[self._key(sentence)] = self._nearest(sentence, row)

    def _key(self, sentence: Sentence) -> tuple[tuple[str, ...], str | None]:
        return sentence.tokens, None if self.same_document else sentence.document

    def _nearest(self, sentence: Sentence, similarity: np.ndarray) -> list[tuple[Sentence, float]]:
        picked: list[tuple[Sentence, float]] = []
        for index in np.argsort(-similarity, kind="stable"):
            candidate = self.pool[index]
            if candidate.tokens == sentence.tokens:
                self.excluded["self"] += 1
            elif not self.same_document and sentence.document is not None and candidate.document == sentence.document:
                self.excluded["same_document"] += 1
            else:
                picked.append((candidate, float(similarity[index])))
                if len(picked) == self.k:
                    break
        return picked[::-1]

    def for_sentence(self, sentence: Sentence) -> list[Sentence]:
        if self._key(sentence) not in self.chosen:
            self.fit([sentence])
        return [s for s, _ in self.chosen[self._key(sentence)]]

    def summary(self) -> dict:
        similarities = [sim for picked in self.chosen.values() for _, sim in picked]
        return {
            "strategy": "knn",
            "k": self.k,
            "pool": len(self.pool),
            "encoder": self.encoder.name_or_path,
            "same_document": self.same_document,
            "sentences": len(self.chosen),
            "excluded": {"self": self.excluded["self"], "same_document": self.excluded["same_document"]},
            "mean_similarity": round(float(np.mean(similarities)), 4) if similarities else None,
        }
