"""Property tests of the response parser: whatever a model writes and whatever the sentence's tokens,
it never raises and gives valid IOB2 tags, one per token, in about linear time."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from nerdistill.data.labels import as_label_set
from nerdistill.teacher import parse_response
from nerdistill.teacher.parser import COUNT_KEYS, MAX_TYPE_NAME

CHECKS = settings(max_examples=200, deadline=None, database=None)
LABEL_SETS = [("PER", "ORG", "LOC", "MISC"), ("person", "creative-work"), ("PER",)]
# every code point, lone surrogates (which json.loads can return) included
CHARS = st.characters(exclude_categories=()) | st.characters(categories=["Cs"])
TEXT = st.text(CHARS, max_size=40)
METACHARS = st.text(".^$*+?{}[]()|\\-", min_size=1, max_size=8)
WORDS = st.sampled_from(
    ["EU", "German", "Bre-X", "Minerals", "Ltd", "U.S.", ",", ".", "'s", "(", "|", "True", "None", "", " ", "Answer:"]
)
TOKENS = st.lists(WORDS | TEXT | METACHARS, max_size=30)
KINDS = (
    st.sampled_from(
        [
            "PER",
            "per",
            "Person",
            "ORG",
            "organisation",
            "B-LOC",
            "I-MISC",
            "creative-work",
            "Country",
            "PRODUCT",
            "N/A",
            "",
        ]
    )
    | TEXT
)
REASONS = (
    st.sampled_from(
        [
            "as it is a place or location (LOC).",
            "as it is an organization. (ORG)",
            "a location(LOC) or a sports team which would be an organisation (ORG)",
            "could be a person (PER), but here a place (LOC)",
            "as it is not a person",
            "a food (PRODUCT)",
            "(",
            "",
        ]
    )
    | TEXT
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["entities", "text", "type", "is_entity", "PER", "EU"]) | TEXT, inner, max_size=4
        )
    ),
    max_leaves=8,
)


@st.composite
def answers(draw: st.DrawFn, tokens: list[str]) -> str:
    """Pieces of the answers models write, about the sentence's own tokens, joined in any order."""
    entity = (st.sampled_from(tokens) | st.just(" ".join(tokens[:3]))) if tokens else TEXT
    entity = entity | METACHARS | TEXT
    piece = st.one_of(
        TEXT,
        st.sampled_from(
            [
                "<think>",
                "</think>",
                "<thinking>",
                "Answer:",
                "Final answer: ",
                "\n",
                "```json\n",
                "```",
                "|",
                "(",
                ")",
                "[",
                "{",
                '"',
                "No entities.",
            ]
        ),
        st.builds(lambda e, k: f"{e} | {k}\n", entity, KINDS),
        st.builds(
            lambda e, flag, r: f"1. {e} | {flag} | {r}\n",
            entity,
            st.sampled_from(["True", "False", "yes", "no", "True."]),
            REASONS,
        ),
        st.builds(lambda e, k: f"{e} ({k}), ", entity, KINDS),
        st.builds(lambda k, e: f"{k}: {e}\n", KINDS, entity),
        st.builds(lambda e, k: json.dumps({"entities": [{"text": e, "type": k}]}, ensure_ascii=False), entity, KINDS),
        JSON.map(lambda v: json.dumps(v, ensure_ascii=False)),
        st.builds(
            lambda s, n: s * n,
            st.sampled_from(["[", '{"a": ', "<think>", "</think>", "(", "EU | "]),
            st.integers(0, 3000),
        ),
    )
    return "".join(draw(st.lists(piece, max_size=8)))


def assert_valid(parsed, tokens: list[str], labels: tuple[str, ...], text: str) -> None:
    """IOB2 of the sentence's length over the configured types; counts as documented; each entity's
    mention, where it has a span, written there in ``text``."""
    assert len(parsed.tags) == len(tokens)
    previous = "O"
    for tag in parsed.tags:
        assert tag == "O" or tag in as_label_set(labels).tags, tag
        if tag.startswith("I-"):
            assert previous in (f"B-{tag[2:]}", tag), (previous, tag)
        previous = tag
    assert parsed.status in ("ok", "empty", "unparseable")
    assert set(parsed.counts) == set(COUNT_KEYS) and all(isinstance(v, int) and v >= 0 for v in parsed.counts.values())
    assert sum(parsed.unknown_types.values()) <= parsed.counts["unknown_type"]
    assert all(0 < len(name) <= MAX_TYPE_NAME for name in parsed.unknown_types)
    for entity in parsed.entities:
        if entity.mention.span is not None:
            start, end = entity.mention.span
            assert text[start:end] == entity.mention.text


def moved(parsed, by: int):
    """``parsed`` with its mentions' spans ``by`` characters later."""
    later = {
        e.mention: replace(e.mention, span=(e.mention.span[0] + by, e.mention.span[1] + by))
        for e in parsed.entities
        if e.mention.span is not None
    }
    return replace(parsed, entities=[replace(e, mention=later.get(e.mention, e.mention)) for e in parsed.entities])


@CHECKS
@given(st.data())
def test_any_answer_gives_valid_iob2(data):
    tokens = data.draw(TOKENS)
    labels = data.draw(st.sampled_from(LABEL_SETS))
    text = data.draw(answers(tokens))
    assert_valid(parse_response(text, tokens, labels), tokens, labels, text)


@CHECKS
@given(TEXT, TOKENS)
def test_any_text_gives_valid_iob2(text, tokens):
    assert_valid(parse_response(text, tokens), tokens, LABEL_SETS[0], text)


@settings(CHECKS, max_examples=100)
@given(st.data())
def test_a_think_block_changes_nothing(data):
    tokens = data.draw(TOKENS)
    # no think tags of their own
    answer, thought = (re.sub("(?i)think", "thin k", data.draw(answers(tokens))) for _ in range(2))
    thinking = f"<think>{thought}</think>\n"
    # the same mentions, as far on
    assert parse_response(thinking + answer, tokens) == moved(parse_response(answer, tokens), len(thinking))


@settings(max_examples=20, deadline=None, database=None)
@given(st.data(), st.sampled_from([10_000, 100_000, 1_000_000]) | st.integers(1, 1_000_000))
def test_answers_up_to_a_megabyte_give_valid_tags(data, size):
    """A repetition loop of any piece, up to 1 MB, then an answer: valid tags. How the parse time
    grows with the answer's length is measured by ``benchmarks/parse_scaling.py``, not here."""
    tokens = data.draw(TOKENS)
    piece = data.draw(answers(tokens)) or "x"
    text = piece * (size // len(piece) + 1) + data.draw(answers(tokens))
    assert_valid(parse_response(text, tokens), tokens, LABEL_SETS[0], text)
