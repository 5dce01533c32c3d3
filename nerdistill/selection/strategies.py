"""How informative each sentence of a pool is to label: one score per sentence, higher first.

Every strategy is a pure function of arrays: ``probs`` holds, per sentence, a ``(words, tags)``
array of the student's tag probabilities (:meth:`~nerdistill.student.inference.Tagger.tag_with_probabilities`);
``samples`` a ``(passes, words, tags)`` array of them under dropout
(:meth:`~nerdistill.student.inference.Tagger.sample_probabilities`). With ``p_w`` the top tag
probability of word ``w`` of an ``n``-word sentence:

==================  ==========================================================================
strategy            score (higher: chosen first)
==================  ==========================================================================
random              a seeded uniform draw
least_confidence    ``1 - prod_w p_w``: one minus the probability of the best tag sequence
                    (words independent, as the token classifier predicts them)
expected_errors     ``sum_w (1 - p_w)``: the expected number of wrong tags
mnlp                ``-(1/n) sum_w log p_w``: minus the mean per word of the log-probability of the
                    best tags (Shen et al. 2018's maximum normalised log-probability; the lowest
                    MNLP first)
entropy             ``sum_w H(p(.|w))``: the tag entropy summed over words (total token entropy)
bald                ``sum_w [H(mean_k p_k(.|w)) - mean_k H(p_k(.|w))]``: the mutual information
                    between tags and weights over ``k`` dropout passes (Houlsby et al. 2011)
disagreement        spans in the student's or the LLM's tags but not in both (exact boundaries and
                    type); a sentence without LLM tags scores NaN and is ranked last
==================  ==========================================================================

``per_word`` divides a summed score by the sentence's words: ``expected_errors`` per word is the
mean of ``1 - p_w`` over the sentence. Entropies are in nats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nerdistill.data.labels import spans

TINY = 1e-12  # probabilities are clipped here before a logarithm


@dataclass(frozen=True)
class Strategy:
    """What a strategy needs from the scoring pass: ``probabilities`` (one pass of the student),
    ``samples`` (dropout passes), ``llm`` (the LLM's tags of the pool), or ``nothing`` (random);
    ``sums_words``: its score is a sum over words, which ``per_word`` may divide by the length."""

    name: str
    needs: str
    sums_words: bool


STRATEGIES = {
    s.name: s
    for s in (
        Strategy("random", "nothing", False),
        Strategy("least_confidence", "probabilities", False),
        Strategy("expected_errors", "probabilities", True),
        Strategy("mnlp", "probabilities", False),
        Strategy("entropy", "probabilities", True),
        Strategy("bald", "samples", True),
        Strategy("disagreement", "llm", True),
    )
}


def random_scores(n: int, seed: int) -> np.ndarray:
    """``n`` uniform draws in ``[0, 1)`` from ``seed``."""
    return np.random.default_rng(seed).random(n)


def _top(probs: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(p, dtype=np.float64).max(axis=-1) for p in probs]


def least_confidence(probs: Sequence[np.ndarray]) -> np.ndarray:
    """``1 - prod_w p_w`` per sentence (the product taken as a sum of logarithms)."""
    return np.array([1.0 - np.exp(np.log(np.clip(top, TINY, 1.0)).sum()) for top in _top(probs)])


def expected_errors(probs: Sequence[np.ndarray]) -> np.ndarray:
    """``sum_w (1 - p_w)`` per sentence."""
    return np.array([(1.0 - top).sum() for top in _top(probs)])


def mnlp(probs: Sequence[np.ndarray]) -> np.ndarray:
    """``-(1/n) sum_w log p_w`` per sentence: high where the best tags are improbable per word."""
    return np.array([-np.log(np.clip(top, TINY, 1.0)).mean() for top in _top(probs)])


def word_entropy(probs: np.ndarray) -> np.ndarray:
    """The entropy of each distribution along the last axis, in nats."""
    p = np.asarray(probs, dtype=np.float64)
    return -(p * np.log(np.clip(p, TINY, 1.0))).sum(axis=-1)


def entropy(probs: Sequence[np.ndarray]) -> np.ndarray:
    """``sum_w H(p(.|w))`` per sentence."""
    return np.array([word_entropy(p).sum() for p in probs])


def bald(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Per sentence, the mutual information summed over words: the entropy of the mean of the
    ``k`` passes' distributions minus the mean of their entropies (``>= 0``; ``0`` when every pass
    agrees)."""
    out = []
    for passes in samples:
        passes = np.asarray(passes, dtype=np.float64)
        out.append(max(0.0, float((word_entropy(passes.mean(axis=0)) - word_entropy(passes).mean(axis=0)).sum())))
    return np.array(out)


def disagreement(predicted: Sequence[Sequence[str]], llm: Sequence[Sequence[str] | None]) -> np.ndarray:
    """Per sentence, the number of entity spans found by only one of the student (``predicted``)
    and the LLM (``llm``); NaN where the LLM's tags are ``None`` (it did not label the sentence)."""
    if len(predicted) != len(llm):
        raise ValueError(f"{len(predicted)} predicted tag sequences but {len(llm)} LLM ones")
    return np.array(
        [
            np.nan if theirs is None else float(len(set(spans(ours)) ^ set(spans(theirs))))
            for ours, theirs in zip(predicted, llm)
        ]
    )


def divide_by_words(scores: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """Each sentence's score over its number of words."""
    return np.asarray(scores, dtype=np.float64) / np.maximum(1, np.asarray(lengths, dtype=np.float64))


# the strategies that score from one pass's probabilities, by name
FROM_PROBABILITIES = {
    "least_confidence": least_confidence,
    "expected_errors": expected_errors,
    "mnlp": mnlp,
    "entropy": entropy,
}
