import pytest

from nerdistill.metrics import flatten, ner_metrics


def test_strict_entity_level_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    m = ner_metrics(gold, pred)
    # 3 gold entities, 3 predicted, 2 correct
    assert m["micro"]["precision"] == pytest.approx(2 / 3) and m["micro"]["recall"] == pytest.approx(2 / 3)
    assert m["per_type"]["PER"]["f1"] == 1.0 and m["per_type"]["LOC"]["f1"] == 0.0
    assert m["per_type"]["ORG"]["precision"] == 0.5 and m["per_type"]["ORG"]["recall"] == 1.0
    assert m["macro"]["f1"] == pytest.approx((1.0 + 0.0 + 2 / 3) / 3)
    assert flatten(m, "test")["test/PER_f1"] == 1.0


def test_strict_mode_rejects_a_boundary_error():
    m = ner_metrics([["B-PER", "I-PER"]], [["B-PER", "O"]])
    assert m["micro"]["f1"] == 0.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="sequence 0"):
        ner_metrics([["O", "O"]], [["O"]])
