"""Per-entity confidence from an answer's token logprobs.

An entity's confidence is the probability the model gave to the *entry* it wrote for it: the
product of the probabilities of the answer's tokens from the first character of the mention it was
read from (where the parser found it, :attr:`~nerdistill.teacher.parser.Mention.span`) to the end of
its entry (the closing ``}`` of a JSON object, else the end of the line), so the text and the type,
and nothing before the entity. Copied and formatting tokens are near-certain and barely move it; the
tokens that decide *which* span and *which* type carry the doubt. An entity whose mention is not
written verbatim in the answer gets the probability of the whole final answer
(:func:`~nerdistill.teacher.parser.answer_start` on), a lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from nerdistill.teacher.cache import Logprobs
from nerdistill.teacher.parser import Entity, answer_start

EntityKey = tuple[int, int, str]


def char_spans(text: str, logprobs: Logprobs) -> list[tuple[int, int, float]] | None:
    """Each token's ``[start, end)`` in characters of ``text`` with its logprob; None if the tokens' bytes do
    not make up ``text``."""
    char_at: list[int] = []  # the character each UTF-8 byte of `text` belongs to
    for i, ch in enumerate(text):
        char_at.extend([i] * len(ch.encode("utf-8")))
    if sum(n for n, _ in logprobs) != len(char_at):
        return None
    spans, byte = [], 0
    for n, logprob in logprobs:
        start = char_at[byte] if byte < len(char_at) else len(text)
        byte += n
        end = char_at[byte - 1] + 1 if n else start
        spans.append((start, end, logprob))
    return spans


def entry(text: str, start: int, end: int) -> tuple[int, int]:
    """The characters of the entry whose text is ``text[start:end]``: from its start to the ``}`` closing its
    JSON object, else to the end of its line."""
    close, opener, newline = text.find("}", end), text.find("{", end), text.find("\n", end)
    if "{" in text[:start] and close != -1 and (opener == -1 or close < opener):
        return start, close + 1  # a JSON object: up to its closing brace
    return start, newline if newline != -1 else len(text)


def probability(spans: Sequence[tuple[int, int, float]], start: int, end: int) -> float:
    """exp of the summed logprobs of the tokens overlapping ``[start, end)``, in [0, 1]."""
    total = sum(lp for a, b, lp in spans if a < end and start < b)
    return min(1.0, math.exp(max(total, -700.0)))


def entity_confidences(
    text: str, logprobs: Logprobs | None, entities: Sequence[Entity]
) -> dict[EntityKey, float] | None:
    """``(start, end, type) -> confidence`` for ``entities`` parsed from the answer ``text``; None without
    usable logprobs."""
    spans = char_spans(text, logprobs) if logprobs else None
    if spans is None:
        return None
    whole = probability(spans, answer_start(text), len(text))
    out: dict[EntityKey, float] = {}
    for e in entities:
        written = e.mention.span if e.mention is not None else None
        out[(e.start, e.end, e.type)] = probability(spans, *entry(text, *written)) if written is not None else whole
    return out
