"""The response parser on hand-written answers in every accepted shape, and adversarial ones."""

import pytest

from nerdistill.teacher import parse_response
from nerdistill.teacher.parser import MAX_RESPONSE, answer_start, final_answer
from nerdistill.teacher.prompts import format_answer

TOKENS = "EU rejects German call to boycott British lamb .".split()
GOLD = ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]


@pytest.mark.parametrize(
    "text",
    [
        '{"entities": [{"text": "EU", "type": "ORG"}, {"text": "German", "type": "MISC"}, '
        '{"text": "British", "type": "MISC"}]}',
        '```json\n[{"entity": "EU", "label": "ORGANIZATION"}, {"entity": "German", "label": "MISCELLANEOUS"}, '
        '{"entity": "British", "label": "MISC"}]\n```',
        '{"ORG": ["EU"], "MISC": ["German", "British"], "PER": [], "LOC": []}',
        '{"EU": "ORG", "German": "MISC", "British": "MISC"}',
        '[["EU", "ORG"], ["German", "MISC"], ["British", "MISC"]]',
        "EU | ORG\nGerman | MISC\nBritish | MISC",
        "EU (ORG)\nGerman (MISC)\nBritish (MISC)",
        "EU (ORG), German (MISC), British (MISC).",
        "1. EU | ORG\n2. German | MISC\n3. British | MISC",
        "- **EU**: ORG\n- **German**: MISC\n- **British**: MISC",
        "ORG: EU\nMISC: German, British\nPER: none",
        "| Entity | Type |\n|---|---|\n| EU | ORG |\n| German | MISC |\n| British | MISC |",
        "1. EU | True | ORG | a political union of states\n2. rejects | False | N/A | a verb\n"
        "3. German | True | MISC | nationality adjective\n"
        "4. British | True | MISC | nationality adjective\n5. lamb | False | N/A | a common noun",
        "Here are the entities:\n\n```\nEU | ORG\nGerman | MISC\nBritish | MISC\n```\nLet me know if you need more.",
    ],
)
def test_every_accepted_format_gives_the_gold_tags(text):
    parsed = parse_response(text, TOKENS)
    assert parsed.tags == GOLD
    assert parsed.status == "ok"
    assert parsed.counts["hallucinated"] == parsed.counts["unknown_type"] == parsed.counts["unparseable"] == 0
    for entity in parsed.entities:  # each with the mention it was read from, where the answer wrote it
        start, end = entity.mention.span
        assert text[start:end] == entity.mention.text == entity.text


def test_promptner_false_lines_are_rejected_not_errors():
    parsed = parse_response("EU | True | ORG | union\nlamb | False | N/A | food", TOKENS)
    assert parsed.tags[0] == "B-ORG" and parsed.tags[7] == "O"
    assert parsed.counts["rejected"] == 1 and parsed.counts["unknown_type"] == 0


def test_final_answer_after_reasoning_wins_over_candidates_in_the_reasoning():
    text = (
        "Step 1 - Context: a trade dispute.\nStep 2 - Candidate entities: EU, German, British, lamb.\n"
        "Step 3 - EU (ORG): a union. German (LOC)? no, an adjective: MISC. lamb: not an entity.\n"
        'Answer:\n{"entities": [{"text": "EU", "type": "ORG"}, {"text": "German", "type": "MISC"}, '
        '{"text": "British", "type": "MISC"}]}'
    )
    assert parse_response(text, TOKENS).tags == GOLD
    assert final_answer("x\n**Final Answer:** EU | ORG").strip() == "EU | ORG"


def test_last_json_is_taken_when_there_is_no_marker():
    text = (
        'Draft: {"entities": [{"text": "lamb", "type": "MISC"}]}\n'
        'Corrected: {"entities": [{"text": "EU", "type": "ORG"}]}'
    )
    assert parse_response(text, TOKENS).tags == ["B-ORG"] + ["O"] * 8


def test_multi_token_entity_and_type_synonyms():
    tokens = "Peter Blackburn visited New York for the United Nations".split()
    parsed = parse_response("Peter Blackburn | PERSON\nNew York | Location\nUnited Nations | organisation", tokens)
    assert parsed.tags == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "B-ORG", "I-ORG"]


def test_repeated_entity_each_mention_claims_the_next_occurrence():
    tokens = "Germany beat Italy and Germany lost to Italy .".split()
    parsed = parse_response("Germany | LOC\nItaly | LOC\nGermany | LOC\nItaly | LOC", tokens)
    assert parsed.tags == ["B-LOC", "O", "B-LOC", "O", "B-LOC", "O", "O", "B-LOC", "O"]
    assert parsed.counts["overlap"] == 0


def test_entity_named_once_tags_all_occurrences_unless_switched_off():
    tokens = "Germany beat Italy and Germany lost .".split()
    assert parse_response("Germany | LOC", tokens).tags == ["B-LOC", "O", "O", "O", "B-LOC", "O", "O"]
    assert parse_response("Germany | LOC", tokens, all_occurrences=False).tags == ["B-LOC"] + ["O"] * 6


def test_same_string_two_types_left_to_right():
    tokens = "Washington said Washington will act".split()
    parsed = parse_response("Washington | PER\nWashington | LOC", tokens)
    assert parsed.tags == ["B-PER", "O", "B-LOC", "O", "O"]


def test_absent_entity_is_counted_as_hallucinated():
    parsed = parse_response('{"entities": [{"text": "EU", "type": "ORG"}, {"text": "France", "type": "LOC"}]}', TOKENS)
    assert parsed.tags == ["B-ORG"] + ["O"] * 8
    assert parsed.counts["hallucinated"] == 1 and parsed.counts["mentions"] == 2 and parsed.status == "ok"


def test_wrong_case_falls_back_to_case_insensitive_but_prefers_exact():
    tokens = "the us and the US".split()
    assert parse_response("US | LOC", tokens, all_occurrences=False).tags == ["O", "O", "O", "O", "B-LOC"]
    assert parse_response("eu | ORG", TOKENS).tags[0] == "B-ORG"


def test_spacing_and_trailing_punctuation_are_forgiven():
    tokens = "Germany 's lamb ban hit the U.S. ,".split()
    parsed = parse_response("Germany's | LOC\nU.S., | LOC", tokens)
    assert parsed.tags == ["B-LOC", "I-LOC", "O", "O", "O", "O", "B-LOC", "O"]


def test_overlapping_spans_longest_first():
    tokens = "New York Times reporters in New York".split()
    parsed = parse_response("York | LOC\nNew York Times | ORG\nNew York | LOC", tokens, all_occurrences=False)
    assert parsed.tags == ["B-ORG", "I-ORG", "I-ORG", "O", "O", "B-LOC", "I-LOC"]
    assert parsed.counts["overlap"] == 1  # "York" only occurs inside spans already claimed


def test_unknown_type_is_counted_and_dropped():
    parsed = parse_response("EU | ORG\nlamb | FOOD", TOKENS)
    assert parsed.tags == ["B-ORG"] + ["O"] * 8
    assert parsed.counts["unknown_type"] == 1


@pytest.mark.parametrize(
    "text",
    ['{"entities": []}', "[]", "No entities.", "There are no named entities in this sentence.", "None", "ORG: none"],
)
def test_no_entity_answers_are_empty_not_failures(text):
    parsed = parse_response(text, TOKENS)
    assert parsed.tags == ["O"] * 9
    assert parsed.status == "empty" and parsed.counts["unparseable"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        None,
        "I'm sorry, but I can't help with that request.",
        "The sentence is about a trade dispute between Europe and Britain over meat.",
        '{"entities": [{"text": "EU", "type": "ORG"}, {"text": "Ger',
        '```json\n{"entities": [{"text": "EU" "type": "ORG"}]}\n```',
    ],
)
def test_empty_prose_and_broken_answers_are_unparseable_and_never_raise(text):
    parsed = parse_response(text, TOKENS)
    assert parsed.tags == ["O"] * 9
    assert parsed.status == "unparseable" and parsed.counts["unparseable"] == 1


def test_configured_types_and_extra_synonyms():
    tokens = "Alice met Bob".split()
    parsed = parse_response("Alice | HUMAN\nBob | PERSON", tokens, labels=["PER", "ORG"], synonyms={"PER": ["HUMAN"]})
    assert parsed.tags == ["B-PER", "O", "B-PER"]
    assert parse_response("Alice | LOC", tokens, labels=["PER", "ORG"]).counts["unknown_type"] == 1


def test_tags_always_match_token_count():
    for text in ("EU | ORG", "x" * 500, "lamb . | MISC", "| | |", '{"a": 1}'):
        assert len(parse_response(text, TOKENS).tags) == len(TOKENS)


@pytest.mark.parametrize(
    "text", ["[" * 100_000, '{"a": ' * 50_000, "Sure: " + "[" * 100_000, '{"ORG": ' + "[" * 100_000 + '"EU"']
)
def test_json_nested_deeper_than_the_stack_is_unparseable_not_a_crash(text):
    parsed = parse_response(text, TOKENS)
    assert parsed.status == "unparseable" and parsed.tags == ["O"] * 9


@pytest.mark.parametrize(
    "loop",
    [
        "<think>hmm EU maybe ORG</think> ",  # one endless line without parentheses
        'Sure: {"PER": ["a", ',  # JSON openings that never close
        "EU is an organisation and ",
    ],
)
def test_a_runaway_answer_still_gives_its_final_answer(loop):
    """A small model in a repetition loop writes 100 KB; its final answer line still counts."""
    text = loop * (100_000 // len(loop)) + "\nAnswer:\nEU | ORG\nGerman | MISC\nBritish | MISC"
    assert parse_response(text, TOKENS).tags == GOLD


def test_json_is_searched_in_the_answers_tail_only():
    from nerdistill.teacher.parser import MAX_JSON, json_values

    value = '{"ORG": ["EU"]}'
    # where it is in the whole text
    assert json_values("x" * (MAX_JSON + 100) + value) == [(MAX_JSON + 100, MAX_JSON + 115, {"ORG": ["EU"]})]
    assert json_values(value + "x" * MAX_JSON) == []
    assert json_values("Sure: " + "[" * 5000 + " " + value)[0][2] == {"ORG": ["EU"]}  # after brackets nested too deep


def test_only_the_responses_tail_is_read():
    from nerdistill.teacher.parser import MAX_RESPONSE

    answer = "EU | ORG\nGerman | MISC\nBritish | MISC"
    assert parse_response("Paris | LOC\n" * (MAX_RESPONSE // 12 + 1) + answer, TOKENS).tags == GOLD
    assert parse_response(answer + "\n" + "x" * MAX_RESPONSE, TOKENS).status == "unparseable"


def test_hyphenated_types_in_any_spelling():
    tokens = "Alice read War and Peace".split()
    for kind in ("creative-work", "Creative Work", "B-creative-work", "creative_work"):
        parsed = parse_response(f"Alice | person\nWar and Peace | {kind}", tokens, labels=["person", "creative-work"])
        assert parsed.tags == ["B-person", "O", "B-creative-work", "I-creative-work", "I-creative-work"]


@pytest.mark.parametrize(
    "text",
    [
        "<think>\nIs lamb an entity?\nlamb | MISC\nNo, a common noun.\n</think>\n\n"
        "EU | ORG\nGerman | MISC\nBritish | MISC",
        "<think>\nFirst guess:\nAnswer: EU | LOC\nNo, EU is an organisation.\n</think>\n\n"
        "EU | ORG\nGerman | MISC\nBritish | MISC",
        # the opening tag was in the chat template: only the closing one is in the response
        "Okay, the user wants entities. Is lamb one?\nlamb | MISC\n</think>\n\nEU | ORG\nGerman | MISC\nBritish | MISC",
    ],
)
def test_a_reasoning_models_think_block_is_skipped(text):
    parsed = parse_response(text, TOKENS)
    assert parsed.tags == GOLD
    assert all(e.mention.span[0] > text.index("</think>") for e in parsed.entities)


def test_a_think_block_that_never_closes_has_no_answer():
    """A model stopped while thinking (max_tokens) gave no answer: unparseable, so the job re-asks."""
    parsed = parse_response("<think>\nEU | ORG\nGerman | MISC\nlamb | MISC maybe, or", TOKENS)
    assert parsed.status == "unparseable" and parsed.tags == ["O"] * 9


def test_without_thinking():
    from nerdistill.teacher.parser import without_thinking

    assert without_thinking("a<think>b</think>c<think>d</think>e") == "ace"
    assert without_thinking("b</think>c") == "c"
    assert without_thinking("answer <THINKING>more thoughts") == "answer "
    assert without_thinking("no tags at all") == "no tags at all"


@pytest.mark.parametrize(
    "text",
    [
        "1. EU | True | as it is a political union, an organization. (ORG)\n2. rejects | False | as it is a verb\n"
        "3. German | True | as it is a nationality (MISC).\n4. British | True | as it is a nationality (MISC)\n"
        "5. lamb | False | as it is a common noun",
        # the reason before the flag
        "1. EU | as it is an organisation (ORG) | True\n2. German | as it is a nationality (MISC) | True\n"
        "3. British | as it is a nationality (MISC) | True.\n4. lamb | as it is a common noun | False",
        # reasoning before the list
        "Let me check each candidate: EU, German, British and lamb.\n1. EU | True | an organisation (ORG)\n"
        "2. German | True | a nationality (MISC)\n3. British | True | a nationality (MISC)",
    ],
)
def test_promptner_type_in_the_reason(text):
    parsed = parse_response(text, TOKENS)
    assert parsed.tags == GOLD
    assert parsed.counts["unknown_type"] == parsed.counts["ambiguous"] == 0


def test_promptner_lines_as_gpt_writes_them():
    tokens = "Bre-X Minerals Ltd opened an office in Canada .".split()
    text = (
        "1. Canada | True | as it is a place or location (LOC).\n"
        "2. Bre-X Minerals Ltd | True | as it is an organization. (ORG)\n"
        "3. office | False | as it is a common noun."
    )
    parsed = parse_response(text, tokens)
    assert parsed.tags == ["B-ORG", "I-ORG", "I-ORG", "O", "O", "O", "O", "B-LOC", "O"]
    assert parsed.counts["rejected"] == 1


def test_promptner_type_named_in_the_reason_but_not_after_not():
    tokens = "Peter Blackburn of the United Nations in Washington".split()
    text = (
        "1. Peter Blackburn | True | as it is a person's name\n"
        "2. United Nations | True | as it is an organization\n"
        "3. Washington | True | as it is not a person here but a place"
    )
    assert parse_response(text, tokens).tags == ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "O", "B-LOC"]


@pytest.mark.parametrize(
    ("reason", "tag", "ambiguous"),
    [
        ("as it is a location(LOC) or a sports team which would be an organisation (ORG)", "B-LOC", 1),
        ("could be a location (LOC), but here it is a sports team, so an organisation (ORG)", "B-ORG", 0),
        ("as it is a club (ORG), an organisation", "B-ORG", 0),  # the same type twice is not ambiguous
    ],
)
def test_promptner_reason_with_two_types(reason, tag, ambiguous):
    parsed = parse_response(f"1. Celtic | True | {reason}", "Celtic beat Rangers".split())
    assert parsed.tags == [tag, "O", "O"]
    assert parsed.counts["ambiguous"] == ambiguous


@pytest.mark.parametrize(
    "text",
    [
        # worked before: prose around the JSON, a fence, a remark after it
        'Here is the JSON:\n\n```json\n{"ORG": ["EU"], "MISC": ["German", "British"]}\n```\n\n'
        'Note: "lamb" is a common noun, not an entity.',
        'Sure! Here is the JSON: {"ORG": ["EU"], "MISC": ["German", "British"]} Let me know if you need anything else.',
        # new: the remark after the JSON holds a JSON value in no answer shape
        'Here is the JSON:\n{"ORG": ["EU"], "MISC": ["German", "British"]}\n'
        "The types follow the CoNLL-2003 guidelines [1].",
        'Here is the JSON:\n{"ORG": ["EU"], "MISC": ["German", "British"]}\nConfidence: {"EU": 0.9, "German": 0.8}',
    ],
)
def test_prose_around_json(text):
    parsed = parse_response(text, TOKENS)
    assert parsed.tags == GOLD and parsed.status == "ok"


def test_promptner_reason_without_a_known_type_is_an_unknown_type():
    parsed = parse_response(
        "1. EU | True | as it is an organisation (ORG)\n2. lamb | True | as it is a food (PRODUCT)\n"
        "3. German | True | FOOD | why not",
        TOKENS,
    )
    assert parsed.tags == ["B-ORG"] + ["O"] * 8
    assert parsed.counts["unknown_type"] == 2 and parsed.unknown_types == {"PRODUCT": 1, "FOOD": 1}


@pytest.mark.parametrize("kind", ["PER", "Per", "per", "PERSON", "Person", "person", "B-PER", "I-person"])
def test_type_spellings_map_to_the_configured_label(kind):
    assert parse_response(f"Alice | {kind}", ["Alice"]).tags == ["B-PER"]


def test_invented_types_are_counted_by_name_and_dropped():
    text = "EU | ORG\nGerman | Country\nBritish | country\nlamb | PRODUCT\nboycott | ACTION"
    parsed = parse_response(text, TOKENS)
    assert parsed.tags == ["B-ORG"] + ["O"] * 8
    assert parsed.counts["unknown_type"] == 4
    assert parsed.unknown_types == {"COUNTRY": 2, "PRODUCT": 1, "ACTION": 1}
    assert parse_response('{"entities": [{"text": "EU", "type": "' + "x" * 500 + '"}]}', TOKENS).unknown_types == {
        "X" * 40: 1
    }


def test_each_mention_is_where_the_answer_wrote_it_not_where_its_text_first_occurs():
    """Mention spans are characters of the whole response: in the final answer (after the thinking and
    the marker), on the line or in the JSON string the mention was read from."""
    tokens = "York and New York Times".split()
    text = (
        "<think>York? New York Times?</think>\nStep 1: York and New York Times.\n"
        "Answer:\nNew York Times | ORG\nYork | LOC"
    )
    spans = {e.text: e.mention.span for e in parse_response(text, tokens).entities}
    assert spans == {
        "New York Times": (text.index("New York Times | ORG"), text.index(" | ORG")),
        "York": (text.index("York | LOC"), text.index(" | LOC")),
    }
    text = (
        '[{"text": "Apple", "type": "ORG", "reason": "Apple Inc is a firm"}, '
        '{"text": "Apple Inc", "type": "ORG"}, {"text": ",", "type": "MISC"}]'
    )
    spans = {e.text: e.mention.span for e in parse_response(text, "Apple , Apple Inc".split()).entities}
    # the JSON strings, not a word of the reason or the list's commas
    at = {name: text.index(f'"{name}"') + 1 for name in ("Apple", "Apple Inc", ",")}
    assert spans == {name: (start, start + len(name)) for name, start in at.items()}


def test_a_mention_found_twice_and_spans_of_a_long_response():
    parsed = parse_response("Germany | LOC", "Germany beat Italy and Germany lost .".split())
    # the further occurrence repeats the mention
    assert [(e.start, e.mention.span) for e in parsed.entities] == [(0, (0, 7)), (4, (0, 7))]
    text = "x" * MAX_RESPONSE + "\nEU | ORG"  # only the tail is read; spans are still offsets into the whole text
    assert parse_response(text, TOKENS).entities[0].mention.span == (MAX_RESPONSE + 1, MAX_RESPONSE + 3)
    escaped = parse_response('{"entities": [{"text": "Z\\u00fcrich", "type": "LOC"}]}', ["Zürich"]).entities[0]
    assert escaped.text == escaped.mention.text == "Zürich" and escaped.mention.span is None  # not written verbatim


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("EU | ORG", 0),
        ("Step 1: EU.\nAnswer:\nEU | ORG", len("Step 1: EU.\nAnswer:")),
        ("<think>Answer: EU | LOC</think>\nEU | ORG", len("<think>Answer: EU | LOC</think>")),
        ("<thinking>EU?</THINKING>EU | ORG", len("<thinking>EU?</THINKING>")),
        (
            '{"reasoning": "EU is an ORG", "entities": [{"text": "EU", "type": "ORG"}]}',
            len('{"reasoning": "EU is an ORG", '),
        ),
        ('Answer: {"entities": []}\n<think>x</think> EU | ORG', len('Answer: {"entities": []}\n<think>x</think>')),
    ],
)
def test_answer_start(text, start):
    assert answer_start(text) == start


@pytest.mark.parametrize("fmt", ["json", "lines"])
def test_the_final_answer_is_where_the_prompts_answers_put_it(fmt):
    """The parser reads the marker the prompts write (worked examples, the simulator's answers) and starts
    the answer after it."""
    text = format_answer(
        TOKENS,
        [("EU", "ORG"), ("German", "MISC"), ("British", "MISC")],
        fmt,
        True,
        {"ORG": "an organisation", "MISC": "other names"},
    )
    after = text.index("\nAnswer:\n") + len("\nAnswer:")
    assert answer_start(text) == (text.index('"entities"') if fmt == "json" else after)
    assert final_answer(text) == text[after:] and parse_response(text, TOKENS).tags == GOLD
