"""Entity types, the IOB2 tag set built from them, and IOB1 -> IOB2 conversion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

DEFAULT_TYPES = ("PER", "ORG", "LOC", "MISC")


@dataclass(frozen=True)
class LabelSet:
    """The configured entity types and their IOB2 tags (``O`` first, then ``B-``/``I-`` per type)."""

    types: tuple[str, ...] = DEFAULT_TYPES
    tags: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        types = tuple(str(t) for t in self.types)
        if not types:
            raise ValueError("labels: at least one entity type is required")
        # tags split at their first '-' (B-creative-work is B + creative-work), so a type may hold
        # one inside, as WNUT-17's do, but not start or end with one, nor be a tag itself
        bad = [
            t
            for t in types
            if not t or t == "O" or t != t.strip() or t.startswith("-") or t.endswith("-") or t[:2] in ("B-", "I-")
        ]
        if bad or len(set(types)) != len(types):
            raise ValueError(
                "labels: entity types must be unique, non-empty, not a tag (B-X, I-X) and not start or end "
                f"with '-': {list(types)}" + (f" ({bad})" if bad else " (duplicates)")
            )
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "tags", ("O",) + tuple(f"{p}-{t}" for t in types for p in ("B", "I")))

    @cached_property
    def label2id(self) -> dict[str, int]:
        return {tag: i for i, tag in enumerate(self.tags)}

    @cached_property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.tags))

    def __contains__(self, tag: str) -> bool:
        return tag in self.label2id


def as_label_set(labels: LabelSet | Sequence[str] | None) -> LabelSet:
    """Accept a LabelSet, a list of types (as Hydra passes them) or None for the default types."""
    if labels is None:
        return LabelSet()
    if isinstance(labels, LabelSet):
        return labels
    return LabelSet(tuple(labels))


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Convert IOB1 (or already IOB2) tags to IOB2: an ``I-X`` that starts an entity becomes ``B-X``."""
    out: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entity spans ``(start, end_exclusive, type)`` of an IOB2 sequence."""
    result: list[tuple[int, int, str]] = []
    start, kind = -1, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        if start >= 0 and not (tag.startswith("I-") and tag[2:] == kind):
            result.append((start, i, kind))
            start = -1
        if tag.startswith("B-") or (tag.startswith("I-") and start < 0):
            start, kind = i, tag[2:]
    return result
