"""Per-entity confidence from an answer's token logprobs.

An entity's confidence is the probability the model gave to the *entry* it wrote for it: the
product of the probabilities of the answer's tokens from the first character of the entity's text
to the end of its entry (the closing ``}`` of a JSON object, else the end of the line), so the text
and the type, and nothing before the entity. Copied and formatting tokens are near-certain and
barely move it; the tokens that decide *which* span and *which* type carry the doubt. An entity
that cannot be found in the answer gets the probability of the whole final answer, a lower bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from nerdistill.teacher.cache import Logprobs
from nerdistill.teacher.parser import ANSWER_MARKERS, Entity

EntityKey = tuple[int, int, str]


def char_spans(text: str, logprobs: Logprobs) -> list[tuple[int, int, float]] | None:
    """Each token's ``[start, end)`` in characters of ``text`` with its logprob; None if the tokens' bytes do not make up ``text``."""
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


def answer_start(text: str) -> int:
    """Where the final answer begins: after the last ``Answer:`` marker or ``</think>``, or at a JSON ``"entities"`` key after them."""
    think = text.lower().rfind("</think>")
    starts = [m.end() for m in ANSWER_MARKERS.finditer(text)] + [think + len("</think>") if think >= 0 else 0]
    return max(*starts, text.rfind('"entities"'))


def entry(text: str, entity_text: str, begin: int) -> tuple[int, int] | None:
    """The characters of the first entry for ``entity_text`` at or after ``begin`` (spaces between its tokens optional, any case)."""
    words = entity_text.split()
    if not words:
        return None
    match = re.compile(r"(?<!\w)" + r"\s*".join(map(re.escape, words)) + r"(?!\w)", re.IGNORECASE).search(text, begin)
    if match is None:
        return None
    close, opener, newline = text.find("}", match.end()), text.find("{", match.end()), text.find("\n", match.end())
    if "{" in text[: match.start()] and close != -1 and (opener == -1 or close < opener):
        return match.start(), close + 1  # a JSON object: up to its closing brace
    return match.start(), newline if newline != -1 else len(text)


def probability(spans: Sequence[tuple[int, int, float]], start: int, end: int) -> float:
    """exp of the summed logprobs of the tokens overlapping ``[start, end)``, in [0, 1]."""
    total = sum(lp for a, b, lp in spans if a < end and start < b)
    return min(1.0, math.exp(max(total, -700.0)))


def entity_confidences(text: str, logprobs: Logprobs | None, entities: Sequence[Entity]) -> dict[EntityKey, float] | None:
    """``(start, end, type) -> confidence`` for ``entities`` of one answer; None without usable logprobs."""
    spans = char_spans(text, logprobs) if logprobs else None
    if spans is None:
        return None
    begin = answer_start(text)
    whole = probability(spans, begin, len(text))
    out: dict[EntityKey, float] = {}
    cursor = begin
    for e in sorted(entities, key=lambda e: e.start):
        found = entry(text, e.text, cursor) or entry(text, e.text, begin)
        if found is None:
            out[(e.start, e.end, e.type)] = whole
            continue
        out[(e.start, e.end, e.type)] = probability(spans, *found)
        cursor = max(cursor, found[1])
    return out
