"""LLM response text -> IOB2 tags on the sentence's own tokens (kept apart from the prompts).

Steps: drop a reasoning model's ``<think>`` block, take the final answer (after the last
``Answer:``-style marker, else the last JSON value or fenced block), read ``(entity, type)``
mentions from JSON or from lines, each with where it is written in the response, normalise types,
then align each mention to a token span (see :func:`align`). This module is the one reader of answer
markers and thinking: :func:`answer_start` tells the confidence where an answer begins.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from nerdistill.data.labels import LabelSet, as_label_set

SYNONYMS = {
    "PER": ("PER", "PERS", "PERSON", "PEOPLE", "PERSON NAME"),
    "ORG": ("ORG", "ORGANIZATION", "ORGANISATION", "COMPANY", "INSTITUTION"),
    "LOC": ("LOC", "LOCATION", "PLACE", "GPE", "GEO", "GEOPOLITICAL ENTITY"),
    "MISC": ("MISC", "MISCELLANEOUS", "OTHER", "MIS"),
}
COUNT_KEYS = ("mentions", "hallucinated", "unknown_type", "ambiguous", "overlap", "rejected", "unparseable")
TEXT_KEYS = ("text", "entity", "name", "span", "mention", "word", "value", "entity_text")
TYPE_KEYS = ("type", "label", "entity_type", "category", "tag", "entity_label", "class")
HEADER_WORDS = {"entity", "entities", "type", "label", "span", "text", "is entity", "reason", "explanation", "category"}
ANSWER_MARKERS = re.compile(
    r"^[ \t>#*_]*(final answer|answer|final output|final entities)\b[^\n:]*?[*_]*:[*_]*[ \t]*", re.I | re.M
)
NONE_PHRASE = re.compile(
    r"\bno\s+(?:named\s+)?entit(?:y|ies)\b|^\W*(?:none|n/?a|nothing)\W*$|there are no\b.*\bentit", re.I | re.M
)
FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.S)
BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)]|\(\d+\))\s+")
PAREN = re.compile(r"([^,;()]+?)\s*\(([^(),]+)\)")
QUOTES = "\"'`“”‘’*_ \t"
FLAGS = {"true": True, "yes": True, "false": False, "no": False}  # a PromptNER line's "is an entity" field
THINK = re.compile(r"<(/?)think(?:ing)?>", re.I)
BRACKETS = re.compile(r"[\[\s]*")  # a run of opening brackets
# the type in a PromptNER reason: a label in parentheses, "as it is a place (LOC)", else a type named
# with its article, "an organisation" (not after "not"/"n't"); either may come twice ("a location (LOC)
# or ... an organisation (ORG)"): the later one counts where one of SETTLES comes between them
REASON_LABEL = re.compile(r"\(\s*([A-Za-z][\w\- ]{0,30}?)\s*\)")
REASON_NAME = re.compile(r"((?:\bnot|n't)\s+)?\ban?\s+(person|organi[sz]ation|location|place)\b", re.I)
SETTLES = re.compile(r"\b(?:but|however|rather|instead|so|therefore|thus|hence|actually|here)\b", re.I)
WORD = re.compile(r"[A-Za-z][\w\-]{0,39}")  # a field or parenthesis that can be a type's name
# an unknown type's name is counted cut to this length (a type field may hold a whole sentence)
MAX_TYPE_NAME = 40
# a line longer than this is prose or a repetition loop, never one mention line: skipped, which keeps
# the parse linear in the answer's length (the line patterns below cost up to the square of a line)
MAX_LINE = 2000
# only a response's last this many characters are read: its final answer is at its end, and a parse
# stays bounded whatever a model in a repetition loop writes
MAX_RESPONSE = 100_000
# JSON is looked for in the answer's last this many characters (one sentence's answer is far shorter)
MAX_JSON = 10_000
# a mention's place, unless a JSON string is just its text: the first whole word among its first this
# many occurrences after the mention before it; none looked for after this many not found (bounds)
MENTION_TRIES = 10
MAX_MISSES = 20
JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')  # group 1: the string as written, escapes and all


@dataclass(frozen=True)
class Mention:
    """A mention as the response wrote it: its ``text`` and ``type``, and ``span``, the ``[start, end)``
    characters of ``text`` in the raw response (the whole completion, thinking included:
    ``response[start:end] == text``), or None where ``text`` is not written there verbatim (a JSON
    escape, ``**`` inside it)."""

    text: str
    type: str
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class Entity:
    """An aligned entity: tokens ``[start, end)`` of the sentence with its type, and the ``mention`` it
    was read from (for a further occurrence tagged by ``all_occurrences``, the mention whose text it
    repeats; None for an entity made elsewhere, such as a vote's)."""

    text: str
    type: str
    start: int
    end: int
    mention: Mention | None = None


@dataclass(frozen=True)
class Parsed:
    """What one response said about one sentence.

    ``status``: ``ok`` (entities found), ``empty`` (an explicit or empty "no entities" answer)
    or ``unparseable``. ``counts``: mentions read, and those ``hallucinated`` (not in the
    sentence), with an ``unknown_type``, typed from a reason that names two types without
    settling on one (``ambiguous``; the first is taken), dropped as an ``overlap``, ``rejected``
    (PromptNER ``False`` lines), and ``unparseable`` (0 or 1). ``unknown_types``: the unknown
    types by name (upper-cased as :meth:`TypeMap.key` writes it, cut to ``MAX_TYPE_NAME``
    characters), each with its count. ``entities``: the aligned entities, in sentence order, each
    with the :class:`Mention` it was read from.
    """

    tags: list[str]
    counts: dict[str, int]
    status: str
    entities: list[Entity] = field(default_factory=list)
    unknown_types: dict[str, int] = field(default_factory=dict)


class TypeMap:
    """Maps what a model writes as a type (``Person``, ``B-PER``, ``organisation``) to a configured type."""

    def __init__(self, labels: LabelSet, extra: Mapping[str, Sequence[str]] | None = None) -> None:
        self.lookup: dict[str, str] = {}
        for kind in labels.types:
            for name in (kind, *SYNONYMS.get(kind, ()), *((extra or {}).get(kind, ()))):
                self.lookup[self.key(name)] = kind

    @staticmethod
    def key(name: str) -> str:
        name = re.sub(r"^[BIES]-", "", name.strip().strip(QUOTES + ".:,;[]()")).upper()
        return " ".join(re.sub(r"[_\-]+", " ", name).split())

    def __call__(self, name: str) -> str | None:
        return self.lookup.get(self.key(name))


@lru_cache(maxsize=32)
def type_map(types: tuple[str, ...], synonyms: tuple[tuple[str, tuple[str, ...]], ...]) -> TypeMap:
    """The :class:`TypeMap` for these types and extra synonyms, built once rather than per response."""
    return TypeMap(LabelSet(types), dict(synonyms))


def outside_thinking(text: str) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges of ``text`` outside a reasoning model's ``<think>...</think>``
    blocks, in order (at least one, maybe empty). Text before a ``</think>`` that has no opening (it
    sat in the chat template or was cut off) is thinking too, and so is all after a ``<think>`` that
    never closes: a model stopped while thinking has given no answer."""
    kept: list[tuple[int, int]] = []
    pos, inside = 0, False
    for tag in THINK.finditer(text):
        if tag.group(1):  # </think>
            if not inside:
                kept = []
            pos, inside = tag.end(), False
        elif not inside:
            kept.append((pos, tag.start()))
            inside = True
    if not inside:
        kept.append((pos, len(text)))
    return kept


def without_thinking(text: str) -> str:
    """``text`` without a reasoning model's thinking (see :func:`outside_thinking`)."""
    return "".join(text[start:end] for start, end in outside_thinking(text))


def final_answer(text: str) -> str:
    """The part of ``text`` after the last answer marker (the whole text if there is none)."""
    markers = list(ANSWER_MARKERS.finditer(text))
    return text[markers[-1].end() :] if markers else text


@dataclass(frozen=True)
class FinalAnswer:
    """A response's final answer (:func:`locate_answer`): its ``text``, the ``[start, end)`` ranges of the
    response it is made of, in order (one, unless thinking was cut out of it), and the index in ``text``
    at which each range begins."""

    text: str
    ranges: tuple[tuple[int, int], ...]
    offsets: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int] | None:
        """Where ``text[start:end]`` is in the response; None if it is not one piece there (thinking was cut
        out of it)."""
        i = bisect_right(self.offsets, start) - 1
        begin = self.ranges[i][0] + start - self.offsets[i]
        return (begin, begin + end - start) if begin + end - start <= self.ranges[i][1] else None


def locate_answer(text: str) -> FinalAnswer:
    """The final answer of a response: of its last ``MAX_RESPONSE`` characters, what :func:`without_thinking`
    keeps, after the last answer marker (:func:`final_answer`); with where it is in ``text``."""
    shift = max(0, len(text) - MAX_RESPONSE)
    kept = [(shift + start, shift + end) for start, end in outside_thinking(text[shift:])]
    joined = "".join(text[start:end] for start, end in kept)
    answer = final_answer(joined)
    skip = len(joined) - len(answer)  # the characters before the answer
    ranges: list[tuple[int, int]] = []
    offsets: list[int] = []
    length = 0
    for i, (start, end) in enumerate(kept):
        begin = start + min(skip, end - start)
        skip -= begin - start
        if begin < end or i == len(kept) - 1:
            ranges.append((begin, end))
            offsets.append(length)
            length += end - begin
    return FinalAnswer(answer, tuple(ranges), tuple(offsets))


def answer_start(text: str) -> int:
    """Where a response's final answer begins (all after it is answer, short of a ``<think>`` that never
    closes): after its last answer marker and its last thinking, and in a JSON answer at the last
    ``"entities"`` key after them (a structured answer's ``reasoning`` field is not the answer)."""
    start, end = locate_answer(text).ranges[-1]
    return max(start, text.rfind('"entities"', start, end))


def json_values(text: str) -> list[tuple[int, int, object]]:
    """The top-level JSON objects and arrays in ``text``'s last ``MAX_JSON`` characters, in order, each as
    ``(start, end, value)`` with ``text[start:end]`` its JSON.

    Each ``{`` or ``[`` that does not start a valid value is retried from the next one, and a
    value cut off at the end is read to the end each time: the cost grows with the square of the
    text searched, so the search is bounded. A ``[`` nested deeper than Python's stack is not
    retried from each ``[`` of its run (``[[[[``, 1.7 s for 10,000 before)."""
    decoder = json.JSONDecoder()
    shift = max(0, len(text) - MAX_JSON)
    text = text[shift:]
    found: list[tuple[int, int, object]] = []
    pos = 0
    while True:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            return found
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        except RecursionError:  # nested deeper than Python's stack
            pos = BRACKETS.match(text, start + 1).end()
            continue
        if isinstance(value, (dict, list)):
            found.append((shift + start, shift + end, value))
        pos = end


def mentions_from_json(value: object, types: TypeMap, counts: Counter) -> list[tuple[str, str]] | None:
    """``(text, type)`` pairs from the JSON shapes models use; None if the shape is not one of them."""
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if all(types(k) for k in value) and value and all(isinstance(v, (list, str)) for v in value.values()):
            return [(str(t), k) for k, v in value.items() for t in (v if isinstance(v, list) else [v])]  # {"PER": [..]}
        if value and all(isinstance(v, str) and types(v) for v in value.values()):
            return [(k, v) for k, v in value.items()]  # {"EU": "ORG"}
        if len(lists) == 1:
            return mentions_from_json(lists[0], types, counts)
        if any(k in value for k in TEXT_KEYS):
            return mentions_from_json([value], types, counts)
        return [] if not value else None
    if not isinstance(value, list):
        return None
    out: list[tuple[str, str]] = []
    for item in value:
        if isinstance(item, dict):
            if item.get("is_entity") is False or str(item.get("is_entity", "")).lower() == "false":
                counts["rejected"] += 1
                continue
            text = next((item[k] for k in TEXT_KEYS if k in item), None)
            kind = next((item[k] for k in TYPE_KEYS if k in item), None)
            if text is None or kind is None:
                return None
            out.append((str(text), str(kind)))
        elif isinstance(item, list) and len(item) >= 2:
            out.append((str(item[0]), str(item[1])))
        elif isinstance(item, str):
            out.extend(mentions_from_line(item, types, counts))
        else:
            return None
    return out


def reason_type(fields: Sequence[str], types: TypeMap, counts: Counter) -> str:
    """The type in a PromptNER line's fields after the entity and its ``True``: a field that is a
    type (``ORG``), else the type in the free-text reason (``as it is a place (LOC)``, see
    ``REASON_LABEL``). Without a known type: an invented one's name (``(PRODUCT)``, ``FOOD``) or ""."""
    if named := next((f for f in fields if types(f)), None):
        return named
    reason = " | ".join(fields)
    labels = [(m.start(), m.end(), m.group(1)) for m in REASON_LABEL.finditer(reason)]
    found = [(start, end, kind) for start, end, name in labels if (kind := types(name))]
    if not found:
        found = [
            (m.start(), m.end(), kind)
            for m in REASON_NAME.finditer(reason)
            if not m.group(1) and (kind := types(m.group(2)))
        ]
    if not found:
        return next((n for *_, n in reversed(labels) if WORD.fullmatch(n)), None) or next(
            (f for f in fields if WORD.fullmatch(f)), ""
        )
    first = found[0]
    other = next((c for c in reversed(found) if c[2] != first[2]), None)
    if other is None:
        return first[2]
    if SETTLES.search(reason, first[1], other[0]):
        return other[2]
    counts["ambiguous"] += 1
    return first[2]


def mentions_from_line(line: str, types: TypeMap, counts: Counter) -> list[tuple[str, str]]:
    """Mentions in one line: ``e | T``, ``e | True | T | why`` (or ``e | True | why (T)``, ``e | why |
    True``), ``e (T)``, ``T: e1, e2``, ``e: T``."""
    line = BULLET.sub("", line.strip()).replace("**", "").strip()
    if not line or len(line) > MAX_LINE:
        return []
    if "|" in line:
        fields = [f.strip().strip(QUOTES) for f in line.strip().strip("|").split("|")]
        if len(fields) < 2 or not fields[0] or set("".join(fields)) <= set("-: ") or fields[0].lower() in HEADER_WORDS:
            return []
        flag = next((i for i, f in enumerate(fields[1:], 1) if f.lower().rstrip(".") in FLAGS), None)
        if len(fields) >= 3 and flag is not None:
            if not FLAGS[fields[flag].lower().rstrip(".")]:
                counts["rejected"] += 1
                return []
            return [(fields[0], reason_type([f for i, f in enumerate(fields) if i not in (0, flag)], types, counts))]
        if types(fields[0]) and not types(fields[1]):
            return [(fields[1], fields[0])]  # TYPE | entity
        return [(fields[0], fields[1])]
    paren = PAREN.findall(line) if line.rstrip(" .,;").endswith(")") else None
    if paren:
        return [(text.strip().strip(QUOTES + ":-"), kind) for text, kind in paren]
    for sep in (":", " - ", " – ", "->", "=>", "\t"):
        if sep in line:
            left, right = (part.strip().strip(QUOTES) for part in line.split(sep, 1))
            if types(left) and right:
                names = [
                    t.strip().strip(QUOTES)
                    for t in right.split(",")
                    if t.strip().strip(QUOTES) and not NONE_PHRASE.search(t)
                ]
                if not names:  # "PER: none"
                    counts["none"] += 1
                return [(name, left) for name in names]
            if types(right) and left:
                return [(left, right)]
    return []


def _word(char: str) -> bool:
    """Whether ``char`` is a word character (as ``\\w`` has it)."""
    return char.isalnum() or char == "_"


def locate(text: str, mention: str, start: int, end: int) -> int | None:
    """Where ``mention`` is written in ``text[start:end]``: of its first ``MENTION_TRIES`` occurrences there,
    the first not inside a longer word, else its first occurrence; None if it is not there."""
    first = at = text.find(mention, start, end) if mention else -1
    for _ in range(MENTION_TRIES):
        if at < 0:
            break
        after = at + len(mention)
        if not (at > 0 and _word(text[at - 1])) and not (after < end and _word(text[after])):
            return at
        at = text.find(mention, at + 1, end)
    return first if first >= 0 else None


def json_strings(text: str, start: int, end: int) -> dict[str, list[int]]:
    """Where each string of the JSON value ``text[start:end]`` begins (after its quote), by its text as written."""
    found: dict[str, list[int]] = {}
    for string in JSON_STRING.finditer(text, start, end):
        found.setdefault(string.group(1), []).append(string.start(1))
    return found


def place(
    pairs: Sequence[tuple[str, str]],
    body: str,
    start: int,
    end: int,
    is_json: bool,
    where: Callable[[int, int], tuple[int, int] | None],
) -> list[Mention]:
    """Mentions ``pairs`` read from ``body[start:end]`` (a JSON value or a line), in the order written: each
    is placed after the one before, at the next JSON string that is just its text (a JSON value), else by
    :func:`locate`, and ``where`` maps its place in ``body`` to the response. After ``MAX_MISSES`` mentions
    not found (each a search to the end) the rest are not looked for: the cost stays linear."""
    strings = json_strings(body, start, end) if is_json else {}
    mentions: list[Mention] = []
    cursor, misses = start, 0
    for text, kind in pairs:
        starts = strings.get(text, [])
        i = bisect_left(starts, cursor)
        if i < len(starts):
            at: int | None = starts[i]
        else:
            at = locate(body, text, cursor, end) if misses < MAX_MISSES else None
        if at is None:
            misses += 1
            mentions.append(Mention(text, kind))
            continue
        cursor = at + len(text)
        mentions.append(Mention(text, kind, where(at, cursor)))
    return mentions


def read_mentions(text: str, types: TypeMap, counts: Counter) -> tuple[list[Mention], str]:
    """``(mentions, status)`` from a whole response, each mention with where it is in ``text``."""
    answer = locate_answer(text)
    body = answer.text.strip()
    base = len(answer.text) - len(answer.text.lstrip())  # where `body` begins in the answer
    if fences := list(FENCE.finditer(body)):
        inner = fences[-1].group(1)
        body, base = inner.strip(), base + fences[-1].start(1) + len(inner) - len(inner.lstrip())

    def where(start: int, end: int) -> tuple[int, int] | None:
        return answer.span(base + start, base + end)

    if body.startswith(("{", "[")):
        try:  # an answer that opens as JSON must decode from its start (else it is broken or cut off)
            value, end = json.JSONDecoder().raw_decode(body)
        except (json.JSONDecodeError, RecursionError):
            return [], "unparseable"
        values = [(0, end, value)]
    else:
        values = json_values(body)
    # the last value in a shape models answer in: prose after it may hold "[1]"
    for start, end, value in reversed(values):
        found: Counter = Counter()
        pairs = mentions_from_json(value, types, found)
        if pairs is not None:
            counts.update(found)
            return place(pairs, body, start, end, True, where), "ok" if pairs else "empty"
    mentions: list[Mention] = []
    start = 0
    for line, with_break in zip(body.splitlines(), body.splitlines(keepends=True)):
        mentions += place(mentions_from_line(line, types, counts), body, start, start + len(line), False, where)
        start += len(with_break)
    if mentions:
        return mentions, "ok"
    if counts["rejected"] or counts["none"] or (body and NONE_PHRASE.search(body)):
        return [], "empty"
    return [], "unparseable"


def _find(tokens: Sequence[str], target: str, free: list[bool], fold: bool) -> tuple[int, int] | None:
    """Leftmost free token span whose concatenation (spaces ignored) equals ``target``."""
    if fold:
        target = target.casefold()
    for start in range(len(tokens)):
        joined = ""
        for end in range(start, len(tokens)):
            joined += tokens[end].casefold() if fold else tokens[end]
            if len(joined) >= len(target):
                if joined == target and all(free[start : end + 1]):
                    return start, end + 1
                break
    return None


def _trim(tokens: Sequence[str], start: int, end: int) -> tuple[int, int]:
    """Drop punctuation-only tokens from the ends of a span (``U.S. ,`` -> ``U.S.``)."""
    while end - start > 1 and not any(ch.isalnum() for ch in tokens[end - 1]):
        end -= 1
    while end - start > 1 and not any(ch.isalnum() for ch in tokens[start]):
        start += 1
    return start, end


def _clean(text: str) -> str:
    return "".join(text.strip().strip(QUOTES).split())


def align(
    tokens: Sequence[str], mentions: Sequence[tuple[Mention, str]], all_occurrences: bool = True
) -> tuple[list[Entity], Counter]:
    """Map mentions, each with the configured type it was given, to non-overlapping token spans.

    Longest mention first, each claims the leftmost free occurrence (exact, then
    case-insensitive; spaces ignored, so ``Germany's`` matches ``Germany 's``; a trailing
    ``.,;:`` is dropped if that is what it takes; punctuation-only tokens at a span's ends are
    trimmed). A mention that occurs only inside spans
    already claimed is an ``overlap``; one that does not occur is ``hallucinated``. With
    ``all_occurrences``, free exact occurrences of a mentioned string left over are tagged too.
    """
    counts: Counter = Counter()
    free = [True] * len(tokens)
    entities: list[Entity] = []
    order = sorted(range(len(mentions)), key=lambda i: (-len(_clean(mentions[i][0].text)), i))
    for i in order:
        mention, kind = mentions[i]
        target = _clean(mention.text)
        candidates = [target, target.rstrip(".,;:")] if target.rstrip(".,;:") != target else [target]
        span = next((s for c in candidates if c for fold in (False, True) if (s := _find(tokens, c, free, fold))), None)
        if span is None:
            everywhere = [True] * len(tokens)
            occurs = any(c and _find(tokens, c, everywhere, True) for c in candidates)
            counts["overlap" if occurs else "hallucinated"] += 1
            continue
        span = _trim(tokens, *span)
        entities.append(Entity(" ".join(tokens[span[0] : span[1]]), kind, *span, mention))
        free[span[0] : span[1]] = [False] * (span[1] - span[0])
    if all_occurrences:
        for entity in list(entities):
            while span := _find(tokens, "".join(tokens[entity.start : entity.end]), free, False):
                entities.append(Entity(entity.text, entity.type, *span, entity.mention))
                free[span[0] : span[1]] = [False] * (span[1] - span[0])
    return sorted(entities, key=lambda e: e.start), counts


def to_tags(n_tokens: int, entities: Sequence[Entity]) -> list[str]:
    tags = ["O"] * n_tokens
    for entity in entities:
        tags[entity.start] = f"B-{entity.type}"
        for j in range(entity.start + 1, entity.end):
            tags[j] = f"I-{entity.type}"
    return tags


def parse_response(
    text: str | None,
    tokens: Sequence[str],
    labels: LabelSet | Sequence[str] | None = None,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    all_occurrences: bool = True,
) -> Parsed:
    """IOB2 tags (one per token) for ``tokens`` from a model's ``text``, with the counts of what
    could not be used and the entities, each with the mention it was read from. Never raises on model output."""
    types = type_map(
        as_label_set(labels).types, tuple((kind, tuple(names)) for kind, names in (synonyms or {}).items())
    )
    counts: Counter = Counter()
    unknown: Counter = Counter()
    mentions, status = read_mentions(text or "", types, counts)
    typed: list[tuple[Mention, str]] = []
    for mention in mentions:
        mapped = types(mention.type)
        if mapped is None:
            counts["unknown_type"] += 1
            if name := types.key(mention.type)[:MAX_TYPE_NAME]:
                unknown[name] += 1
        elif _clean(mention.text):
            typed.append((mention, mapped))
    entities, align_counts = align(tokens, typed, all_occurrences)
    counts.update(align_counts)
    counts["mentions"] = len(mentions)
    counts["unparseable"] = int(status == "unparseable")
    return Parsed(to_tags(len(tokens), entities), {k: counts[k] for k in COUNT_KEYS}, status, entities, dict(unknown))


VERDICT = re.compile(r"\b(yes|no)\b", re.I)


def parse_verdict(text: str) -> str | None:
    """A self-verification answer: ``"yes"`` or ``"no"``, from ``{"answer": ...}`` JSON or the first
    yes or no in the final answer (a reasoning model's thinking dropped); None if it says neither."""
    answer = final_answer(without_thinking(text[:MAX_RESPONSE]))
    for *_, value in reversed(json_values(answer)):
        if isinstance(value, dict) and isinstance(value.get("answer"), str):
            answer = value["answer"]
            break
    found = VERDICT.search(answer)
    return found.group(1).lower() if found else None
