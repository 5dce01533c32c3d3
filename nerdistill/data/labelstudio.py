"""Label Studio's formats for NER on tokenised sentences: tasks with pre-annotations out, the JSON export in.

Followed as documented by Label Studio (docs/data.md names the pages): a task is
``{"data": {"text": ...}, "predictions": [{"model_version", "result": [...]}]}``; a span result is
``{"id", "from_name", "to_name", "type": "labels", "value": {"start", "end", "text", "labels": [TYPE]}}``
with ``start``/``end`` character offsets into ``data.text`` (end exclusive); the JSON export is a
list of tasks, each with its ``id``, ``data`` and ``annotations`` (``result``, ``was_cancelled``,
``created_at``/``updated_at``). The text of a task is its tokens joined by single spaces, so a span
that starts and ends on token edges maps back to tokens exactly; ``data.tokens`` keeps the tokens
themselves. Reading an export checks every span against the tokens and the label set; a span off
the token edges, overlapping another, or of an unknown type is an error naming the task, or with
``bad_spans="skip"`` leaves that task out, counted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet, spans

FROM_NAME, TO_NAME = "label", "text"
BAD_SPANS = ("error", "skip")
GRANULARITIES = ("word", "symbol", None)
# label colours in the annotation view (Label Studio gives every label the same green otherwise)
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990", "#808000")


class LabelStudioError(ValueError):
    """An export that cannot be read as gold; names the file and, where one is at fault, the task id."""

    def __init__(self, path: str | Path, task: object, message: str) -> None:
        super().__init__(f"{path}" + (f": task {task}" if task is not None else "") + f": {message}")
        self.path, self.task = str(path), task


def token_offsets(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """``(start, end)`` of each token in ``" ".join(tokens)``."""
    offsets, start = [], 0
    for token in tokens:
        offsets.append((start, start + len(token)))
        start += len(token) + 1
    return offsets


def span_results(tokens: Sequence[str], tags: Sequence[str], prefix: str) -> list[dict[str, Any]]:
    """The entity spans of IOB2 ``tags`` as Label Studio ``labels`` results (ids ``<prefix>-<n>``)."""
    text, offsets = " ".join(tokens), token_offsets(tokens)
    results = []
    for n, (first, last, kind) in enumerate(spans(tags)):
        start, end = offsets[first][0], offsets[last - 1][1]
        value = {"start": start, "end": end, "text": text[start:end], "labels": [kind]}
        results.append(
            {"id": f"{prefix}-{n}", "from_name": FROM_NAME, "to_name": TO_NAME, "type": "labels", "value": value}
        )
    return results


def task(sentence: Sentence, number: int, predictions: Mapping[str, Sequence[str] | None]) -> dict[str, Any]:
    """One task: the sentence's text (``data.text``), its tokens and id, and a prediction per model
    version with tags for it (``None`` tags: that model has none for this sentence)."""
    return {
        "data": {"text": " ".join(sentence.tokens), "tokens": list(sentence.tokens), "sentence_id": sentence.id},
        "predictions": [
            {"model_version": version, "result": span_results(sentence.tokens, tags, f"s{number}-p{k}")}
            for k, (version, tags) in enumerate(predictions.items())
            if tags is not None
        ],
    }


def label_config(labels: LabelSet, granularity: str | None = "word") -> str:
    """The labelling interface: a ``Labels`` control (``label``) over a ``Text`` object (``text``, ``$text``);
    ``granularity="word"`` snaps a selection to whole words."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity={granularity!r}: expected word, symbol or null")
    rows = [
        f"    <Label value={quoteattr(t)} background={quoteattr(PALETTE[i % len(PALETTE)])}/>"
        for i, t in enumerate(labels.types)
    ]
    text = f'  <Text name="{TO_NAME}" value="$text"' + (f' granularity="{granularity}"' if granularity else "") + "/>"
    return (
        "\n".join(
            ["<View>", f'  <Labels name="{FROM_NAME}" toName="{TO_NAME}">', *rows, "  </Labels>", text, "</View>"]
        )
        + "\n"
    )


@dataclass
class ImportReport:
    """What reading an export found: tasks read, sentences kept, and what was left out or mended, by task id."""

    tasks: int = 0
    sentences: int = 0
    entities: int = 0
    left_out: dict[str, list] = field(default_factory=lambda: {"no_annotation": [], "bad_spans": []})
    bad_spans: list[str] = field(default_factory=list)
    several_annotations: list = field(default_factory=list)
    trimmed_spans: int = 0
    duplicate_spans: int = 0
    utf16_offsets: int = 0
    other_results: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "sentences": self.sentences,
            "entities": self.entities,
            "left_out": {reason: {"count": len(ids), "tasks": ids} for reason, ids in self.left_out.items()},
            "bad_spans": self.bad_spans,
            "several_annotations": {
                "count": len(self.several_annotations),
                "tasks": self.several_annotations,
                "used": "the latest (updated_at, else created_at) not cancelled",
            },
            "trimmed_spans": self.trimmed_spans,
            "duplicate_spans": self.duplicate_spans,
            "utf16_offsets": self.utf16_offsets,
            "other_results": dict(self.other_results),
        }


def read_export(path: str | Path, labels: LabelSet, bad_spans: str = "error") -> tuple[list[Sentence], ImportReport]:
    """The annotated tasks of a Label Studio JSON export as IOB2 sentences (ids ``<file>:<task id>``),
    and what was found. A task without a usable annotation is left out and counted."""
    if bad_spans not in BAD_SPANS:
        raise ValueError(f"bad_spans={bad_spans!r}: expected error or skip")
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LabelStudioError(path, None, f"cannot read as JSON ({err})") from None
    if isinstance(tasks, dict):  # one task exported on its own
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise LabelStudioError(path, None, "expected Label Studio's JSON export: a list of tasks")
    if tasks and all("annotations" not in t and "data" not in t for t in tasks):
        raise LabelStudioError(
            path, None, "tasks have no 'data' and 'annotations': export with the JSON format (not JSON_MIN or CSV)"
        )
    report = ImportReport(tasks=len(tasks))
    sentences = []
    for number, item in enumerate(tasks):
        task_id = item.get("id", f"#{number}")
        tokens, text = task_tokens(path, task_id, item)
        annotation = latest_annotation(item, task_id, report)
        if annotation is None:
            continue
        try:
            tags = tags_from_results(annotation.get("result") or [], tokens, text, labels, report)
        except ValueError as err:
            if bad_spans == "error":
                raise LabelStudioError(path, task_id, str(err)) from None
            report.left_out["bad_spans"].append(task_id)
            report.bad_spans.append(f"task {task_id}: {err}")
            continue
        sentences.append(Sentence(tuple(tokens), tuple(tags), f"{path.name}:{task_id}", path.name))
        report.entities += len(spans(tags))
    report.sentences = len(sentences)
    return sentences, report


def task_tokens(path: Path, task_id: object, item: Mapping[str, Any]) -> tuple[list[str], str]:
    """The task's tokens (``data.tokens``, which must join to ``data.text``; else the text's
    whitespace-separated words) and its text."""
    data = item.get("data")
    text = data.get("text") if isinstance(data, Mapping) else None
    if not isinstance(text, str) or not text.strip():
        raise LabelStudioError(
            path, task_id, "no data.text (the tasks must be the ones python -m nerdistill.export wrote)"
        )
    tokens = data.get("tokens")
    if tokens is None:
        if text != " ".join(text.split()):
            raise LabelStudioError(
                path, task_id, "data.text is not tokens joined by single spaces, and there is no data.tokens"
            )
        return text.split(" "), text
    if (
        not isinstance(tokens, list)
        or not all(isinstance(t, str) and t and not any(c.isspace() for c in t) for t in tokens)
        or " ".join(tokens) != text
    ):
        raise LabelStudioError(path, task_id, "data.tokens joined by single spaces is not data.text")
    return tokens, text


def latest_annotation(item: Mapping[str, Any], task_id: object, report: ImportReport) -> Mapping[str, Any] | None:
    """The task's latest annotation that was not cancelled (skipped); ``None`` (counted) when it has none."""
    annotations = [
        a
        for a in item.get("annotations") or []
        if isinstance(a, Mapping) and not a.get("was_cancelled") and not a.get("skipped")
    ]
    if not annotations:
        report.left_out["no_annotation"].append(task_id)
        return None
    if len(annotations) > 1:
        report.several_annotations.append(task_id)
    return max(
        enumerate(annotations),
        key=lambda pair: (str(pair[1].get("updated_at") or pair[1].get("created_at") or ""), pair[0]),
    )[1]


def tags_from_results(
    results: Sequence[Any], tokens: Sequence[str], text: str, labels: LabelSet, report: ImportReport
) -> list[str]:
    """IOB2 tags from an annotation's ``labels`` results; a bad span raises ``ValueError`` saying which."""
    offsets = token_offsets(tokens)
    starts, ends = {s: i for i, (s, _) in enumerate(offsets)}, {e: i for i, (_, e) in enumerate(offsets)}
    found: dict[tuple[int, int], str] = {}
    for result in results:
        if not isinstance(result, Mapping) or result.get("type") != "labels":
            report.other_results[str(result.get("type")) if isinstance(result, Mapping) else type(result).__name__] += 1
            continue
        value = result.get("value") or {}
        start, end, kinds = value.get("start"), value.get("end"), value.get("labels")
        if (
            not isinstance(start, int)
            or not isinstance(end, int)
            or not 0 <= start < end <= len(text.encode("utf-16-le")) // 2
        ):
            raise ValueError(f"span {value!r}: start and end must be offsets into the text, start < end")
        if not isinstance(kinds, list) or len(kinds) != 1:
            raise ValueError(f"span {value!r}: expected exactly one label, got {kinds!r}")
        if kinds[0] not in labels.types:
            raise ValueError(f"span {value!r}: label {kinds[0]!r} is not one of labels {list(labels.types)}")
        original = code_points(text, start, end, value.get("text"), report)
        if original[1] > len(text):
            raise ValueError(f"span {value!r}: ends past the text's {len(text)} characters")
        start, end = original
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end:
            raise ValueError(f"span at {original[0]}-{original[1]} ({kinds[0]}) holds only whitespace")
        report.trimmed_spans += (start, end) != original
        if start not in starts or end not in ends:
            touched = [t for t, (s, e) in zip(tokens, offsets) if e > start and s < end]
            raise ValueError(
                f"span {text[start:end]!r} at {start}-{end} ({kinds[0]}) does not start and end on token edges "
                f"(it cuts into tokens {touched})"
            )
        if (start, end) in found:
            if found[(start, end)] != kinds[0]:
                raise ValueError(
                    f"span {text[start:end]!r} at {start}-{end} is labelled both {found[(start, end)]} "
                    f"and {kinds[0]} (overlapping spans)"
                )
            report.duplicate_spans += 1
            continue
        found[(start, end)] = kinds[0]
    tags = ["O"] * len(tokens)
    last_end, last = -1, None
    for (start, end), kind in sorted(found.items()):
        if start < last_end:
            raise ValueError(
                f"span {text[start:end]!r} at {start}-{end} ({kind}) "
                f"overlaps span {text[last[0] : last[1]]!r} at {last[0]}-{last[1]}"
            )
        first, stop = starts[start], ends[end] + 1
        tags[first:stop] = [f"B-{kind}"] + [f"I-{kind}"] * (stop - first - 1)
        last_end, last = max(last_end, end), (start, end)
    return tags


def code_points(text: str, start: int, end: int, expected: object, report: ImportReport) -> tuple[int, int]:
    """Offsets in code points (Python's). Label Studio has counted in UTF-16 code units in some
    versions (text with emoji and other characters beyond the BMP): where the span's ``text`` does
    not match the code-point slice but matches the UTF-16 one, the UTF-16 offsets are converted."""
    if not isinstance(expected, str) or text[start:end] == expected:
        return start, end
    units = text.encode("utf-16-le")
    if units[2 * start : 2 * end].decode("utf-16-le", errors="replace") == expected:
        report.utf16_offsets += 1
        return len(units[: 2 * start].decode("utf-16-le", errors="replace")), len(
            units[: 2 * end].decode("utf-16-le", errors="replace")
        )
    raise ValueError(f"span at {start}-{end}: its text {expected!r} is not the task text there ({text[start:end]!r})")
