"""Noise-aware distillation: a model trained on the gold data relabels and weights the distilled pool.

Per token, with the teacher's (LLM's) tag ``t`` and the model's most likely tag ``m`` at probability
``p`` (``threshold`` may differ per entity type; it is the type of ``m``, or of ``t`` where ``m`` is
``O``):

- ``complete``: where the teacher says ``O`` and the model confidently names an entity
  (``p >= threshold``), take the model's tag (the teacher's low recall, as in NEEDLE);
- ``correct``: where the teacher names an entity and the model confidently says otherwise, take the
  model's tag;
- ``agree``: tokens whose tag (after the above) differs from the model's get weight 0: unlabelled,
  left out of the loss;
- ``confidence``: every other token's loss weight is the model's probability of its tag;
- ``soft`` (a number ``b`` in [0, 1]): each token is trained towards ``b`` x its tag (one-hot) +
  ``(1 - b)`` x the model's distribution ("soft bootstrapping"; 0 is distillation of the model);
- ``trust``: entity types whose teacher F1, measured on the gold sentences the teacher also
  annotated (never on dev or test), falls below ``trust`` are unlabelled where the teacher names them
  and the model does not agree;
- ``text_only``: the teacher's tags are replaced by ``O`` first, so only its text is used (with
  ``complete``: self-training from the gold model on the same sentences, the control that shows what
  the labels add beyond the text).

Tags are repaired to valid IOB2 after token-level changes (an ``I-X`` that starts an entity becomes
``B-X``). Each relabelled sentence keeps the teacher's tags, the model's tags and every change with
its reason as provenance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet, spans, to_iob2
from nerdistill.metrics import ner_metrics


@dataclass(frozen=True)
class Relabel:
    """What to do with the teacher's tags given the model's probabilities (see the module docstring)."""

    complete: bool = False
    correct: bool = False
    agree: bool = False
    confidence: bool = False
    threshold: float | Mapping[str, float] = 0.9
    min_weight: float = 0.0
    trust: float | None = None
    text_only: bool = False
    soft: float | None = None

    def __post_init__(self) -> None:
        thresholds = self.threshold.values() if isinstance(self.threshold, Mapping) else [self.threshold]
        if not all(0.0 <= float(t) <= 1.0 for t in thresholds):
            raise ValueError(
                f"denoise.threshold must be in [0, 1] (or a map of type -> value in [0, 1]), got {self.threshold}"
            )
        if not 0.0 <= self.min_weight <= 1.0:
            raise ValueError(f"denoise.min_weight must be in [0, 1], got {self.min_weight}")
        if self.soft is not None and not 0.0 <= self.soft <= 1.0:
            raise ValueError(f"denoise.soft must be in [0, 1] or null, got {self.soft}")
        if self.trust is not None and not 0.0 <= self.trust <= 1.0:
            raise ValueError(f"denoise.trust must be in [0, 1] or null, got {self.trust}")

    def threshold_for(self, kind: str) -> float:
        if isinstance(self.threshold, Mapping):
            return float(self.threshold.get(kind, self.threshold.get("default", 0.9)))
        return float(self.threshold)

    @property
    def changes_tags(self) -> bool:
        return self.complete or self.correct or self.text_only

    @property
    def weighs(self) -> bool:
        return self.agree or self.confidence or self.trust is not None


@dataclass
class RelabelStats:
    """Counts over a relabelled pool: tokens changed by reason and type, tokens unlabelled, mean weight."""

    sentences: int = 0
    tokens: int = 0
    changed: Counter = field(default_factory=Counter)
    unlabelled: Counter = field(default_factory=Counter)
    weight_sum: float = 0.0

    def as_dict(self) -> dict:
        return {
            "sentences": self.sentences,
            "tokens": self.tokens,
            "changed": dict(sorted(self.changed.items())),
            "unlabelled": dict(sorted(self.unlabelled.items())),
            "mean_weight": round(self.weight_sum / max(1, self.tokens), 4),
        }


def _type(tag: str) -> str:
    return tag[2:] if tag != "O" else "O"


def relabel_sentence(
    sentence: Sentence,
    model_tags: Sequence[str],
    probabilities: np.ndarray,
    tags: Sequence[str],
    rule: Relabel,
    untrusted: frozenset[str] = frozenset(),
    stats: RelabelStats | None = None,
) -> Sentence:
    """``sentence`` (the teacher's tags) relabelled by ``rule`` given the model's ``model_tags`` and
    its ``(words, len(tags))`` ``probabilities`` over ``tags`` (the label set's tags, in id order)."""
    index = {tag: i for i, tag in enumerate(tags)}
    teacher = ["O"] * len(sentence.tokens) if rule.text_only else list(sentence.tags)
    final, reasons = list(teacher), {}
    for i, (t, m) in enumerate(zip(teacher, model_tags)):
        if m == t:
            continue
        p = float(probabilities[i, index[m]])
        if t == "O" and rule.complete and p >= rule.threshold_for(_type(m)):
            final[i], reasons[i] = m, "complete"
        elif t != "O" and rule.correct and p >= rule.threshold_for(_type(m) if m != "O" else _type(t)):
            final[i], reasons[i] = m, "correct"
    final = to_iob2(final)
    weights = [1.0] * len(final)
    unlabelled = {}
    for i, tag in enumerate(final):
        if tag != "O" and _type(tag) in untrusted and i not in reasons and tag != model_tags[i]:
            weights[i], unlabelled[i] = 0.0, f"untrusted {_type(tag)}"
        elif rule.agree and tag != model_tags[i]:
            weights[i], unlabelled[i] = 0.0, "disagree"
        elif rule.confidence:
            weights[i] = max(rule.min_weight, float(probabilities[i, index[tag]]))
    if stats is not None:
        stats.sentences += 1
        stats.tokens += len(final)
        stats.weight_sum += sum(weights)
        for i, why in reasons.items():
            stats.changed[f"{why}: {_type(teacher[i])}->{_type(final[i])}"] += 1
        for why in unlabelled.values():
            stats.unlabelled[why] += 1
    provenance = dict(sentence.provenance or {}) | {
        "teacher_tags": list(sentence.tags),
        "model_tags": list(model_tags),
        "changes": [
            {
                "token": i,
                "from": teacher[i],
                "to": final[i],
                "why": why,
                "p": round(float(probabilities[i, index[model_tags[i]]]), 4),
            }
            for i, why in sorted(reasons.items())
        ],
        "unlabelled": [{"token": i, "why": why} for i, why in sorted(unlabelled.items())],
    }
    targets = None
    if rule.soft is not None:
        hard = np.eye(len(tags), dtype=np.float64)[[index[tag] for tag in final]]
        targets = tuple(
            tuple(float(p) for p in row)
            for row in rule.soft * hard + (1 - rule.soft) * probabilities.astype(np.float64)
        )
    return replace(
        sentence,
        tags=tuple(final),
        weights=tuple(weights) if rule.weighs else None,
        targets=targets,
        provenance=provenance,
    )


def teacher_quality_by_type(
    gold: Sequence[Sentence], teacher: Sequence[Sentence], labels: LabelSet
) -> tuple[dict[str, float], int]:
    """Per entity type, the teacher's F1 on the gold sentences it also annotated (matched by their
    tokens), and how many sentences that is."""
    by_text = {s.text_key: s for s in teacher}
    pairs = [(g.tags, by_text[g.text_key].tags) for g in gold if g.text_key in by_text]
    if not pairs:
        return {}, 0
    metrics = ner_metrics([p[0] for p in pairs], [p[1] for p in pairs])
    return {kind: metrics["per_type"].get(kind, {"f1": 0.0})["f1"] for kind in labels.types}, len(pairs)


def untrusted_types(
    gold: Sequence[Sentence], teacher: Sequence[Sentence], labels: LabelSet, trust: float | None, min_overlap: int = 50
) -> tuple[frozenset[str], dict]:
    """The types whose teacher F1 on overlapping gold sentences is below ``trust``, and the evidence."""
    if trust is None:
        return frozenset(), {}
    quality, overlap = teacher_quality_by_type(gold, teacher, labels)
    if overlap < min_overlap:
        raise ValueError(
            f"denoise.trust needs gold sentences the teacher also annotated to measure it on: {overlap} found, "
            f"{min_overlap} needed (data.gold_overlap=same draws the gold budget from the teacher's sentences)"
        )
    return frozenset(k for k, f1 in quality.items() if f1 < trust), {
        "overlap_sentences": overlap,
        "teacher_f1_by_type": quality,
    }


def pool_quality(pool: Sequence[Sentence], reference: Sequence[Sentence]) -> dict | None:
    """Micro F1 of a pool's tags (weight-0 tokens as they are) against reference tags for the same
    sentences (matched by tokens); ``None`` where no sentence matches. A diagnostic only."""
    by_text = {s.text_key: s for s in reference}
    pairs = [(by_text[s.text_key].tags, s.tags) for s in pool if s.text_key in by_text]
    if not pairs:
        return None
    metrics = ner_metrics([p[0] for p in pairs], [p[1] for p in pairs])
    return {
        "sentences": len(pairs),
        "micro_f1": round(metrics["micro"]["f1"], 4),
        "f1_by_type": {k: round(v["f1"], 4) for k, v in metrics["per_type"].items()},
    }


def count_entities(sentences: Sequence[Sentence]) -> int:
    return sum(len(spans(s.tags)) for s in sentences)
