"""Prompts: rendering, few-shot examples from the training split, versions in the cache key."""

import os
import subprocess
import sys

import pytest
from hydra.utils import instantiate

from nerdistill.data import LabelSet, read_conll
from nerdistill.teacher.cache import cache_key
from nerdistill.teacher.parser import parse_response
from tests.conftest import ROOT, compose_config


def build(name, tmp_path, overrides=()):
    cfg = compose_config("annotate", [f"prompt={name}", *overrides], tmp_path)
    return instantiate(cfg.prompt).setup(LabelSet())


@pytest.mark.parametrize("name", ["standard", "cot"])
def test_messages_have_definitions_examples_and_the_sentence(name, tmp_path, data_dir):
    prompt = build(name, tmp_path)
    tokens = ["EU", "rejects", "German", "call", "."]
    messages = prompt.messages(tokens)
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    system = messages[0]["content"]
    assert "ORG: an organisation" in system and "MISC:" in system and "JSON" in system
    assert ("step by step" in system) == (name == "cot")
    assert messages[-1]["content"] == "Sentence: EU rejects German call ."
    for user, answer in zip(messages[1:-1:2], messages[2:-1:2]):
        example = user["content"].removeprefix("Sentence: ").split()
        gold = next(s for s in prompt.pool if list(s.tokens) == example)
        assert parse_response(answer["content"], example).tags == list(gold.tags)  # worked examples are gold
        assert ("Answer:" in answer["content"]) == (name == "cot")


def test_examples_never_include_the_sentence_being_annotated(tmp_path, data_dir):
    prompt = build("standard", tmp_path)
    example = prompt.pool[0]
    messages = prompt.messages(example.tokens)
    shown = [m["content"] for m in messages[1:-1] if m["role"] == "user"]
    assert f"Sentence: {' '.join(example.tokens)}" not in shown
    assert len(shown) == prompt.k == 3
    assert prompt.examples_for(prompt.pool[-1].tokens) == prompt.pool[:3]


def test_examples_come_from_the_configured_split_and_cover_the_types(tmp_path, data_dir):
    prompt = build("standard", tmp_path)
    train = {s.tokens for s in read_conll(data_dir / "conll2003" / "train.txt")}
    assert all(s.tokens in train for s in prompt.pool)
    assert {t[2:] for s in prompt.pool[:3] for t in s.tags if t != "O"} == {"PER", "ORG", "LOC", "MISC"}


def test_lines_format_and_zero_shot(tmp_path, data_dir):
    prompt = build("standard", tmp_path, ["prompt.format=lines", "prompt.k=0"])
    messages = prompt.messages(["Paris"])
    assert len(messages) == 2 and "<entity as written> | <TYPE>" in messages[0]["content"]


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
        cache_key("http://x/v1", "m", {"temperature": 0}, [{"role": "user", "content": "Sentence: Rome"}], "standard@1"),
    ]
    assert len({base, *others}) == 6


RENDER = """
import hashlib, json, sys
from pathlib import Path
from hydra.utils import instantiate
from nerdistill.data import LabelSet, read_conll
from tests.conftest import ROOT, compose_config
for name in ("standard", "cot"):
    prompt = instantiate(compose_config("annotate", ["prompt=" + name], Path(sys.argv[1])).prompt).setup(LabelSet())
    print(hashlib.sha256(json.dumps(prompt.messages("EU rejects German call .".split())).encode()).hexdigest())
"""


def test_rendering_is_identical_in_every_process(tmp_path, data_dir):
    """Cache keys must not depend on PYTHONHASHSEED (e.g. set iteration order)."""
    env = {**os.environ, "NERDISTILL_DATA_DIR": str(data_dir)}
    digests = {
        subprocess.run([sys.executable, "-c", RENDER, str(tmp_path)], cwd=ROOT, env={**env, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True).stdout for seed in ("1", "2", "3")
    }
    assert len(digests) == 1
