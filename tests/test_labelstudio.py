"""The Label Studio round trip: tasks out (text, the LLM's and the student's spans as predictions,
the labelling config), the JSON export back as gold CoNLL, and every bad export a clear error or a
counted warning naming the task, with nothing half-written. The exports are built here in the shape
of Label Studio's own JSON export (``id``, ``data``, ``annotations[].result[]``, ``predictions``)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import pytest

from nerdistill.data.conll import Sentence, read_conll, write_conll
from nerdistill.data.labels import LabelSet, spans
from nerdistill.data.labelstudio import LabelStudioError, read_export, span_results, token_offsets
from nerdistill.export import export
from nerdistill.import_labels import import_labels
from nerdistill.metrics import ner_metrics
from tests.conftest import compose_config

LABELS = LabelSet()


@pytest.fixture(scope="module")
def chosen(data_dir) -> list[Sentence]:
    """20 dev sentences with at least one entity: what select would have chosen for people."""
    return [s for s in read_conll(data_dir / "conll2003" / "valid.txt") if spans(s.tags) and len(s.tokens) > 5][:20]


def corrected(sentences: list[Sentence]) -> list[Sentence]:
    """The people's corrections: CoNLL's gold with a few changes of their own (a type changed, an entity dropped)."""
    out = []
    for i, s in enumerate(sentences):
        tags = list(s.tags)
        if i % 5 == 1:  # a type changed
            tags = [t[:2] + ("ORG" if t[2:] != "ORG" else "PER") if t != "O" else t for t in tags]
        if i % 7 == 3:  # the first entity dropped
            first, last, _ = spans(tags)[0]
            tags[first:last] = ["O"] * (last - first)
        out.append(replace(s, tags=tuple(tags)))
    return out


def noisy(sentence: Sentence, rng: random.Random) -> tuple[str, ...]:
    """An LLM's tags: gold with every entity's type drawn anew half the time."""
    tags = list(sentence.tags)
    for first, last, _ in spans(tags):
        if rng.random() < 0.5:
            kind = rng.choice(LABELS.types)
            tags[first:last] = [f"B-{kind}"] + [f"I-{kind}"] * (last - first - 1)
    return tuple(tags)


def label_studio_export(tasks: list[dict], truth: list[Sentence]) -> list[dict]:
    """What Label Studio's JSON export holds after people labelled ``tasks`` as ``truth``: its task and
    annotation fields, a span selected with a trailing space (task 3), a cancelled annotation before
    the real one (task 6), an earlier, wrong annotation (task 9) and a choices result beside the spans."""
    exported = []
    for i, (item, sentence) in enumerate(zip(tasks, truth)):
        task_id = 101 + i
        result = [
            r | {"id": f"h{task_id}-{n}", "origin": "manual"}
            for n, r in enumerate(span_results(sentence.tokens, sentence.tags, "x"))
        ]
        if i == 3 and result:  # selected with the space after it, as a drag often does
            result[0]["value"] = result[0]["value"] | {
                "end": result[0]["value"]["end"] + 1,
                "text": result[0]["value"]["text"] + " ",
            }
        result.append(
            {
                "id": f"c{task_id}",
                "from_name": "quality",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": ["ok"]},
                "origin": "manual",
            }
        )
        annotation = {
            "id": 900 + i,
            "completed_by": 1,
            "result": result,
            "was_cancelled": False,
            "ground_truth": False,
            "created_at": "2026-12-01T10:00:00.000000Z",
            "updated_at": f"2026-12-01T10:{i:02d}:30.000000Z",
            "draft_created_at": None,
            "lead_time": 12.5,
            "prediction": {},
            "result_count": 0,
            "unique_id": f"u-{task_id}",
            "import_id": None,
            "last_action": None,
            "bulk_created": False,
            "task": task_id,
            "project": 3,
            "updated_by": 1,
            "parent_prediction": None,
            "parent_annotation": None,
            "last_created_by": None,
        }
        annotations = [annotation]
        if i == 6:
            annotations.insert(
                0,
                annotation
                | {"id": 800, "result": [], "was_cancelled": True, "updated_at": "2026-12-01T11:00:00.000000Z"},
            )
        if i == 9:
            annotations.insert(
                0,
                annotation
                | {"id": 801, "result": result[:1] if result else [], "updated_at": "2026-11-30T09:00:00.000000Z"},
            )
        exported.append(
            {
                "id": task_id,
                "annotations": annotations,
                "file_upload": "3f2a-tasks.json",
                "drafts": [],
                "predictions": [
                    p
                    | {
                        "id": 500 + 10 * i + k,
                        "score": None,
                        "cluster": None,
                        "neighbors": None,
                        "mislabeling": 0.0,
                        "task": task_id,
                        "project": 3,
                    }
                    for k, p in enumerate(item["predictions"])
                ],
                "data": item["data"],
                "meta": {},
                "created_at": "2026-12-01T09:00:00.000000Z",
                "updated_at": "2026-12-01T10:30:00.000000Z",
                "inner_id": i + 1,
                "total_annotations": 1,
                "cancelled_annotations": int(i == 6),
                "total_predictions": len(item["predictions"]),
                "comment_count": 0,
                "unresolved_comment_count": 0,
                "last_comment_updated_at": None,
                "project": 3,
                "updated_by": 1,
                "comment_authors": [],
            }
        )
    return exported


@pytest.fixture(scope="module")
def exported(chosen, tmp_path_factory):
    """``python -m nerdistill.export`` of the 20 sentences with an annotate job's labels beside its report."""
    root = tmp_path_factory.mktemp("ls")
    rng = random.Random(0)
    annotate_dir = root / "annotate"
    write_conll(annotate_dir / "distilled.conll", [replace(s, tags=noisy(s, rng)) for s in chosen[:18]])
    (annotate_dir / "report.json").write_text(
        json.dumps(
            {
                "schema": "nerdistill.annotate.report/1",
                "simulated": True,
                "teacher": {"name": "sim", "model": "sim"},
                "prompt": {"id": "standard", "version": 1},
            }
        )
    )
    write_conll(root / "selected.conll", chosen)
    cfg = compose_config(
        "export", [f"source={root / 'selected.conll'}", f"llm_labels={annotate_dir / 'distilled.conll'}"], root / "out"
    )
    report = export(cfg)
    return root / "out", report


def test_tasks_hold_the_text_and_each_prediction_with_its_model_version(exported, chosen):
    out, report = exported
    tasks = json.loads((out / "tasks.json").read_text())
    assert report["tasks"] == len(tasks) == 20 and report["predictions"]["llm"]["tasks"] == 18
    first = tasks[0]
    assert first["data"]["text"] == " ".join(chosen[0].tokens) and first["data"]["tokens"] == list(chosen[0].tokens)
    (prediction,) = first["predictions"]
    assert prediction["model_version"] == "sim standard@1 SIMULATED"
    for result in prediction["result"]:
        value = result["value"]
        assert {result["from_name"], result["to_name"], result["type"]} == {"label", "text", "labels"}
        assert (
            first["data"]["text"][value["start"] : value["end"]] == value["text"] and value["labels"][0] in LABELS.types
        )
    assert tasks[19]["predictions"] == []  # the LLM did not label it
    config = ElementTree.fromstring((out / "label_config.xml").read_text())
    assert [label.get("value") for label in config.iter("Label")] == list(LABELS.types)
    assert config.find("Labels").get("name") == "label" and config.find("Text").get("value") == "$text"


def test_twenty_hand_corrected_sentences_come_back_as_conll_that_scores_one(exported, chosen, tmp_path):
    out, _ = exported
    truth = corrected(chosen)
    export_file = tmp_path / "project-3-at-2026-12-01-10-30.json"
    export_file.write_text(
        json.dumps(label_studio_export(json.loads((out / "tasks.json").read_text()), truth), indent=1)
    )
    report = import_labels(compose_config("import_labels", [f"export_file={export_file}"], tmp_path / "gold"))
    gold = read_conll(tmp_path / "gold" / "gold.conll")
    assert [s.tokens for s in gold] == [s.tokens for s in truth]
    assert [s.tags for s in gold] == [s.tags for s in truth]
    assert ner_metrics([s.tags for s in truth], [s.tags for s in gold])["micro"]["f1"] == 1.0
    assert truth != chosen and report["sentences"] == 20 and report["trimmed_spans"] == 1
    assert report["several_annotations"]["tasks"] == [110] and report["other_results"] == {"choices": 20}
    assert json.loads((tmp_path / "gold" / "report.json").read_text())["entities"] == sum(
        len(spans(s.tags)) for s in truth
    )


def one_task(text_tokens: list[str], result: list[dict], task_id: int = 7) -> list[dict]:
    return [
        {
            "id": task_id,
            "data": {"text": " ".join(text_tokens), "tokens": text_tokens},
            "annotations": [{"id": 1, "result": result, "was_cancelled": False}],
            "predictions": [],
        }
    ]


def span(start: int, end: int, text: str, label: str = "PER") -> dict:
    return {
        "id": f"r{start}",
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": end, "text": text, "labels": [label]},
    }


TOKENS = ["Angela", "Merkel", "visited", "New", "York", "."]  # offsets: Angela 0-6, Merkel 7-13, New 22-25, York 26-30
BAD_EXPORTS = [
    (
        "overlapping",
        [span(0, 13, "Angela Merkel"), span(7, 13, "Merkel")],
        "task 7: span 'Merkel' at 7-13 (PER) overlaps span 'Angela Merkel' at 0-13",
    ),
    (
        "same-span-two-types",
        [span(22, 30, "New York", "LOC"), span(22, 30, "New York", "ORG")],
        "task 7: span 'New York' at 22-30 is labelled both LOC and ORG",
    ),
    (
        "off-token-edges",
        [span(0, 9, "Angela Me")],
        "task 7: span 'Angela Me' at 0-9 (PER) does not start and end on token edges "
        "(it cuts into tokens ['Angela', 'Merkel'])",
    ),
    (
        "unknown-type",
        [span(22, 30, "New York", "CITY")],
        "task 7: span {'start': 22, 'end': 30, 'text': 'New York', 'labels': ['CITY']}: "
        "label 'CITY' is not one of labels",
    ),
    (
        "two-labels",
        [span(22, 30, "New York") | {"value": {"start": 22, "end": 30, "text": "New York", "labels": ["LOC", "ORG"]}}],
        "expected exactly one label",
    ),
    (
        "text-mismatch",
        [span(0, 6, "Merkel")],
        "task 7: span at 0-6: its text 'Merkel' is not the task text there ('Angela')",
    ),
    ("past-the-end", [span(26, 40, "York .")], "start and end must be offsets into the text"),
]


@pytest.mark.parametrize(("case", "result", "message"), BAD_EXPORTS, ids=[b[0] for b in BAD_EXPORTS])
def test_a_bad_span_stops_the_import_naming_the_task_and_writes_nothing(case, result, message, tmp_path):
    export_file = tmp_path / "export.json"
    export_file.write_text(
        json.dumps(one_task(TOKENS, result) + one_task(TOKENS, [span(22, 30, "New York", "LOC")], task_id=8))
    )
    with pytest.raises(LabelStudioError) as err:
        import_labels(compose_config("import_labels", [f"export_file={export_file}"], tmp_path / "out"))
    assert str(err.value).startswith(f"{export_file}: ") and message in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_with_bad_spans_skip_the_task_is_left_out_counted_and_named(tmp_path, caplog):
    export_file = tmp_path / "export.json"
    export_file.write_text(
        json.dumps(
            one_task(TOKENS, [span(0, 9, "Angela Me")])
            + one_task(TOKENS, [span(22, 30, "New York", "LOC")], task_id=8)
            + one_task(TOKENS, [], task_id=9)
        )
    )
    report = import_labels(
        compose_config("import_labels", [f"export_file={export_file}", "bad_spans=skip"], tmp_path / "out")
    )
    assert report["left_out"]["bad_spans"] == {"count": 1, "tasks": [7]} and report["sentences"] == 2
    assert (
        "task 7: span 'Angela Me' at 0-9 (PER) does not start and end on token edges" in caplog.text
        and "1 task(s) left out (bad spans): [7]" in caplog.text
    )
    assert [s.tags for s in read_conll(tmp_path / "out" / "gold.conll")] == [
        ("O", "O", "O", "B-LOC", "I-LOC", "O"),
        ("O",) * 6,
    ]


def test_tasks_without_a_usable_annotation_are_counted_and_a_wrong_format_is_named(tmp_path):
    export_file = tmp_path / "export.json"
    tasks = one_task(TOKENS, [span(0, 13, "Angela Merkel")]) + [
        {"id": 8, "data": {"text": "Hello there"}, "annotations": [{"id": 2, "result": [], "was_cancelled": True}]}
    ]
    export_file.write_text(json.dumps(tasks))
    sentences, report = read_export(export_file, LABELS)
    assert len(sentences) == 1 and report.left_out["no_annotation"] == [8]
    export_file.write_text(
        json.dumps(
            [
                {
                    "text": "Angela Merkel",
                    "id": 1,
                    "label": [{"start": 0, "end": 13, "text": "Angela Merkel", "labels": ["PER"]}],
                }
            ]
        )
    )
    with pytest.raises(LabelStudioError, match="export with the JSON format \\(not JSON_MIN or CSV\\)"):
        read_export(export_file, LABELS)
    export_file.write_text('[{"id": 1, "data": ')
    with pytest.raises(LabelStudioError, match="cannot read as JSON"):
        read_export(export_file, LABELS)
    export_file.write_text(json.dumps([{"id": 3, "data": {"text": "a  b"}, "annotations": []}]))
    with pytest.raises(LabelStudioError, match="task 3: data.text is not tokens joined by single spaces"):
        read_export(export_file, LABELS)


def test_utf16_offsets_of_text_beyond_the_bmp_are_converted(tmp_path):
    # 😀 is two UTF-16 code units: Paris is at 7-12 in code points, 8-13 in UTF-16
    tokens = ["I", "❤️", "😀", "Paris", "!"]
    assert token_offsets(tokens)[3] == (7, 12)
    export_file = tmp_path / "export.json"
    export_file.write_text(
        json.dumps(one_task(tokens, [span(8, 13, "Paris", "LOC")]), ensure_ascii=False), encoding="utf-8"
    )
    (sentence,), report = read_export(export_file, LABELS)
    assert sentence.tags == ("O", "O", "O", "B-LOC", "O") and report.utf16_offsets == 1


def test_export_takes_the_students_predictions_from_a_model(tmp_path, data_dir):
    from nerdistill.train import train
    from tests.conftest import TINY_GOLD_RUN

    train(compose_config("train", TINY_GOLD_RUN, tmp_path / "run"))
    source = tmp_path / "selected.conll"
    write_conll(source, read_conll(data_dir / "conll2003" / "test.txt")[:5])
    report = export(
        compose_config(
            "export", [f"source={source}", f"model_dir={tmp_path / 'run'}", "student_version=tiny"], tmp_path / "out"
        )
    )
    tasks = json.loads((tmp_path / "out" / "tasks.json").read_text())
    assert (
        report["predictions"]["student"]["tasks"] == 5
        and [t["predictions"][0]["model_version"] for t in tasks] == ["tiny"] * 5
    )


def test_export_settings_fail_by_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="source=missing.conll: not a file"):
        export(compose_config("export", ["source=missing.conll"], tmp_path))
    with pytest.raises(ValueError, match="granularity='line'"):
        export(compose_config("export", [f"source={Path(__file__)}", "granularity=line"], tmp_path))
