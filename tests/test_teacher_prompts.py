"""Prompts: rendering, few-shot examples from the training split, versions in the cache key."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
from hydra.utils import instantiate

from nerdistill import annotate
from nerdistill.data import LabelSet, read_conll
from nerdistill.data.conll import Sentence
from nerdistill.teacher.cache import cache_key
from nerdistill.teacher.parser import parse_response
from nerdistill.teacher.sim import SimServer, SimSettings, prompt_style, style_for
from tests.conftest import ROOT, compose_config


def build(name, tmp_path, overrides=()):
    cfg = compose_config("annotate", [f"prompt={name}", *overrides], tmp_path)
    return annotate.build(cfg.prompt).setup(LabelSet())


def sentence(tokens, document=None):
    return Sentence(tuple(tokens), ("O",) * len(tokens), "input:0", "input", document=document)


@pytest.mark.parametrize("name", ["standard", "cot"])
def test_messages_have_definitions_examples_and_the_sentence(name, tmp_path, data_dir):
    prompt = build(name, tmp_path)
    tokens = ["EU", "rejects", "German", "call", "."]
    messages = prompt.messages(sentence(tokens))
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    system = messages[0]["content"]
    assert "ORG: an organisation" in system and "MISC:" in system and "JSON" in system
    assert ("step by step" in system) == (name == "cot")
    assert messages[-1]["content"] == "Sentence: EU rejects German call ."
    for user, answer in zip(messages[1:-1:2], messages[2:-1:2]):
        example = user["content"].removeprefix("Sentence: ").split()
        gold = next(s for s in prompt.gold if list(s.tokens) == example)
        assert parse_response(answer["content"], example).tags == list(gold.tags)  # worked examples are gold
        assert ("Answer:" in answer["content"]) == (name == "cot")


def test_examples_never_include_the_sentence_being_annotated(tmp_path, data_dir):
    prompt = build("standard", tmp_path)
    chosen = prompt.examples.chosen
    example = chosen[0]
    messages = prompt.messages(example)
    shown = [m["content"] for m in messages[1:-1] if m["role"] == "user"]
    assert f"Sentence: {' '.join(example.tokens)}" not in shown
    assert len(shown) == prompt.k == 3
    assert prompt.examples_for(chosen[-1]) == chosen[:3]


def test_examples_come_from_the_configured_split_and_cover_the_types(tmp_path, data_dir):
    prompt = build("standard", tmp_path)
    train = {s.tokens for s in read_conll(data_dir / "conll2003" / "train.txt")}
    assert all(s.tokens in train for s in prompt.examples.chosen)
    assert {t[2:] for s in prompt.examples.chosen[:3] for t in s.tags if t != "O"} == {"PER", "ORG", "LOC", "MISC"}


def test_lines_format_and_zero_shot(tmp_path, data_dir):
    prompt = build("standard", tmp_path, ["prompt.format=lines", "prompt.k=0"])
    messages = prompt.messages(sentence(["Paris"]))
    assert len(messages) == 2 and "<entity as written> | <TYPE>" in messages[0]["content"]


@pytest.mark.parametrize("name", ["standard", "cot"])
@pytest.mark.parametrize("fmt", ["json", "lines"])
def test_the_simulator_reads_from_the_rendering_what_the_prompt_declares(name, fmt, tmp_path, data_dir):
    """The job takes a prompt's style and format from its config; the simulated server, which gets only
    the request, must read the same from the rendered text, or it answers another prompt than the one sent."""
    prompt = build(name, tmp_path, [f"prompt.format={fmt}", "prompt.k=0"])
    assert prompt_style(prompt.messages(sentence(["Paris"]))) == (style_for(prompt.reasoning), prompt.format)


def test_the_simulators_target_f1_is_the_declared_styles_not_the_texts(tmp_path, data_dir):
    # declared reasoning, no "step by step" in its text
    prompt = build("standard", tmp_path, ["prompt.k=0", "prompt.reasoning=true"])
    assert prompt_style(prompt.messages(sentence(["Paris"])))[0] == "standard"
    assert (
        annotate.simulator_info(SimServer(SimSettings()), prompt)["target_f1"]
        == SimSettings().target_f1_by_style["cot"]
    )


def test_missing_type_definition_is_an_error(tmp_path, data_dir):
    cfg = compose_config("annotate", ["labels=[PER,DATE]"], tmp_path)
    with pytest.raises(ValueError, match=r"no definition for entity types \['DATE'\]"):
        instantiate(cfg.prompt).setup(LabelSet(("PER", "DATE")))


def test_prompt_version_and_every_other_part_change_the_cache_key():
    messages = [{"role": "user", "content": "Sentence: Paris"}]
    base = cache_key("http://x/v1", "m", {"temperature": 0}, messages, "standard@1")
    assert base == cache_key("http://x/v1", "m", {"temperature": 0}, [dict(m) for m in messages], "standard@1")
    others = [
        cache_key("http://x/v1", "m", {"temperature": 0}, messages, "standard@2"),
        cache_key("http://y/v1", "m", {"temperature": 0}, messages, "standard@1"),
        cache_key("http://x/v1", "m2", {"temperature": 0}, messages, "standard@1"),
        cache_key("http://x/v1", "m", {"temperature": 0.7}, messages, "standard@1"),
        cache_key(
            "http://x/v1", "m", {"temperature": 0}, [{"role": "user", "content": "Sentence: Rome"}], "standard@1"
        ),
    ]
    assert len({base, *others}) == 6


RENDER = """
import hashlib, json, sys
from pathlib import Path
from hydra.utils import instantiate
from nerdistill.data import LabelSet, read_conll
from nerdistill.data.conll import Sentence
from tests.conftest import ROOT, compose_config
tokens = tuple("EU rejects German call .".split())
for name in ("standard", "cot"):
    prompt = instantiate(compose_config("annotate", ["prompt=" + name], Path(sys.argv[1])).prompt).setup(LabelSet())
    print(hashlib.sha256(json.dumps(prompt.messages(Sentence(tokens, ("O",) * 5, "x:0", "x"))).encode()).hexdigest())
"""


def test_the_default_prompts_render_as_before_examples_could_be_chosen(tmp_path, data_dir):
    """Caches made before ``prompt.examples`` existed still answer: the default (fixed) examples render the
    same messages."""
    before = {
        "standard": "e351a7cf7478d674e982bed888c7f10ce5ac102fb5bdf547c9e2beceff959e9b",
        "cot": "8589be68a526ac6454441c6a095beacb679c2464af4d6ad793db7427bfe29009",
    }
    for name, digest in before.items():
        messages = build(name, tmp_path).messages(sentence("EU rejects German call .".split()))
        assert hashlib.sha256(json.dumps(messages).encode()).hexdigest() == digest


def test_rendering_is_identical_in_every_process(tmp_path, data_dir):
    """Cache keys must not depend on PYTHONHASHSEED (e.g. set iteration order)."""
    env = {**os.environ, "NERDISTILL_DATA_DIR": str(data_dir)}
    digests = {
        subprocess.run(
            [sys.executable, "-c", RENDER, str(tmp_path)],
            cwd=ROOT,
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1


# a gold pool of two articles; the sentence annotated below is from the first, and its near twin is in the second
POOL = """-DOCSTART- -X- -X- O

Germany B-LOC
beat O
France B-LOC
2-1 O
in O
Paris B-LOC
. O

Muller B-PER
scored O
twice O
. O

-DOCSTART- -X- -X- O

Germany B-LOC
beat O
Spain B-LOC
3-1 O
in O
Madrid B-LOC
. O

Shares O
of O
Siemens B-ORG
fell O
. O

Oil O
prices O
rose O
on O
Monday O
. O
"""


def knn_prompt(tmp_path, overrides=()):
    (tmp_path / "gold.txt").write_text(POOL)
    return build(
        "standard",
        tmp_path,
        ["prompt.examples=knn", f"prompt.examples_path={tmp_path / 'gold.txt'}", "prompt.k=2", *overrides],
    )


def test_knn_examples_are_the_nearest_gold_sentences_never_itself_nor_its_article(tmp_path, data_dir):
    prompt = knn_prompt(tmp_path)
    pool = read_conll(tmp_path / "gold.txt")
    assert [s.document for s in pool] == ["gold.txt:0"] * 2 + ["gold.txt:3"] * 3
    query = pool[0]  # "Germany beat France 2-1 in Paris ." from the first article
    prompt.fit([query])
    shown = [s.tokens for s in prompt.examples_for(query)]
    assert len(shown) == 2 and shown[-1] == pool[2].tokens  # its twin from the other article, the most similar, last
    assert query.tokens not in shown and pool[1].tokens not in shown  # not itself, not its own article
    summary = prompt.examples.summary()
    assert (
        summary["strategy"] == "knn" and summary["excluded"]["self"] == 1 and summary["excluded"]["same_document"] >= 1
    )
    messages = prompt.messages(query)
    assert messages[-2]["content"] == (
        '{"entities": [{"text": "Germany", "type": "LOC"}, {"text": "Spain", "type": "LOC"}, '
        '{"text": "Madrid", "type": "LOC"}]}'
    )


def test_knn_may_take_examples_from_the_same_article_when_asked(tmp_path, data_dir):
    prompt = knn_prompt(tmp_path, ["prompt.examples_same_document=true"])
    pool = read_conll(tmp_path / "gold.txt")
    prompt.fit(pool)
    assert pool[0].tokens not in [s.tokens for s in prompt.examples_for(pool[0])]
    assert prompt.examples.summary()["excluded"]["same_document"] == 0
    # a sentence of unknown document: only itself is left out
    assert len(prompt.examples_for(sentence(pool[1].tokens))) == 2


def test_knn_embeddings_are_cached_by_content(tmp_path, data_dir, monkeypatch):
    first = knn_prompt(tmp_path)
    first.fit(read_conll(tmp_path / "gold.txt"))
    from nerdistill.embeddings import SentenceEncoder

    monkeypatch.setattr(SentenceEncoder, "_encode", lambda self, sentences: pytest.fail("encoded again"))
    again = knn_prompt(tmp_path)
    again.fit(read_conll(tmp_path / "gold.txt"))
    assert again.examples.chosen == first.examples.chosen


def test_the_examples_budget_is_the_students_gold(tmp_path, data_dir):
    """``examples_budget=1000`` draws exactly the 1,000 gold sentences train draws with the same seed."""
    from nerdistill.data.pools import build_pools

    prompt = build("standard", tmp_path, ["prompt.examples_budget=1000", "prompt.examples_budget_seed=0"])
    data = compose_config("train", [], tmp_path).data
    student = build_pools(
        data.original, data.distilled, LabelSet(), data.gold_budget, None, data.gold_overlap, data.budget_seed
    ).original
    assert [s.id for s in prompt.gold] == [s.id for s in student] and len(student) == 1000
    assert all(example in student for example in prompt.examples.chosen)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["prompt.examples=nearest"], r"prompt.examples must be one of \['random', 'knn'\], got 'nearest'"),
        (["prompt.examples=knn", "prompt.k=0"], r"prompt.examples=knn needs prompt.k >= 1"),
        (["prompt.examples=knn", "prompt.examples_path=null"], r"need examples_path"),
        (["prompt.examples=knn", "prompt.k=6"], r"the gold pool has 5 sentences, fewer than prompt.k=6"),
    ],
)
def test_knn_without_a_usable_gold_pool_is_a_clear_error(overrides, message, tmp_path, data_dir):
    (tmp_path / "gold.txt").write_text(POOL)
    with pytest.raises(ValueError, match=message):
        build("standard", tmp_path, [f"prompt.examples_path={tmp_path / 'gold.txt'}", *overrides])


def test_verification_question_names_the_entity_type_and_sentence(tmp_path, data_dir):
    prompt = build("standard", tmp_path, ["prompt.verify=true"])
    messages = prompt.verify_messages(sentence("EU rejects German call .".split()), "German", "MISC")
    assert (
        [m["role"] for m in messages] == ["system", "user"]
        and "yes or no" in messages[0]["content"]
        and "PER: a person" in messages[0]["content"]
    )
    assert messages[1]["content"].startswith(
        'Sentence: EU rejects German call .\nCandidate: "German" as MISC (a miscellaneous named entity'
    )
    assert prompt.verify_format()["json_schema"]["schema"]["properties"]["answer"]["enum"] == ["yes", "no"]


def test_span_limited_structured_output_lists_the_sentences_own_word_spans(tmp_path, data_dir):
    from nerdistill.teacher.prompts import candidate_spans

    tokens = ("(", "New", "York", ")", "beat", "New", "York", "2-1")
    # up to 3 words, each text once, none starting or ending with a bare symbol
    assert candidate_spans(tokens, longest=3) == [
        "New",
        "New York",
        "York",
        "York ) beat",
        "beat",
        "beat New",
        "beat New York",
        "New York 2-1",
        "York 2-1",
        "2-1",
    ]
    prompt = build("standard", tmp_path, ["prompt.structured=true", "prompt.structured_spans=true"])
    schema = prompt.response_format(sentence(tokens))["json_schema"]["schema"]
    assert schema["properties"]["entities"]["items"]["properties"]["text"]["enum"] == candidate_spans(tokens)
    with pytest.raises(ValueError, match="set prompt.structured=true too"):
        build("standard", tmp_path, ["prompt.structured_spans=true"])


def test_verification_can_show_worked_questions_from_the_sentences_examples(tmp_path, data_dir):
    prompt = knn_prompt(tmp_path, ["prompt.verify=true", "prompt.verify_examples=true"])
    query = read_conll(tmp_path / "gold.txt")[0]
    prompt.fit([query])
    messages = prompt.verify_messages(query, "Germany", "LOC")
    demos = [(q["content"].split("\n")[1], a["content"]) for q, a in zip(messages[1:-1:2], messages[2:-1:2])]
    # the twin sentence's "Germany" as LOC (yes) and its "Madrid" as the type after LOC (no); the other example's
    # entity likewise
    assert (
        'Candidate: "Germany" as LOC (a location, such as a country, city, region, continent, river, mountain, '
        "street or building, when used as a place)",
        "yes",
    ) in demos
    assert any(d.startswith('Candidate: "Madrid" as MISC') and a == "no" for d, a in demos)
    assert len(demos) == 4 and sorted(a for _, a in demos) == ["no", "no", "yes", "yes"]
    assert messages[-1]["content"].startswith(
        'Sentence: Germany beat France 2-1 in Paris .\nCandidate: "Germany" as LOC'
    )
