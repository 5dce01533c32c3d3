"""Sentences with per-token loss weights and soft targets as JSON lines: what relabelling writes and
training reads.

One object per line: ``{"id", "tokens", "tags", "weights", "targets", ...}`` (``weights`` and
``targets`` may be null; a target is a distribution over the label set's tags, in their order);
other keys (the teacher's and the model's tags, what changed and why) are kept as provenance. Tags
are validated like CoNLL's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

from nerdistill.data.conll import CoNLLFormatError, Sentence, unknown_tag
from nerdistill.data.labels import LabelSet, as_label_set
from nerdistill.files import atomic_path

SUFFIX = ".jsonl"
CORE_KEYS = ("id", "tokens", "tags", "weights", "targets")


def write_weighted(path: str | Path, sentences: Iterable[Sentence]) -> None:
    """Write ``sentences`` (weights and provenance included) atomically: a temp file, then a rename."""
    with atomic_path(path) as partial, partial.open("w", encoding="utf-8") as handle:
        for s in sentences:
            record = {
                "id": s.id,
                "tokens": list(s.tokens),
                "tags": list(s.tags),
                "weights": list(s.weights) if s.weights is not None else None,
                "targets": [[round(p, 5) for p in row] for row in s.targets] if s.targets is not None else None,
            }
            handle.write(
                json.dumps(
                    record | {k: v for k, v in (s.provenance or {}).items() if k not in CORE_KEYS}, ensure_ascii=False
                )
                + "\n"
            )


def read_weighted(path: str | Path, labels: LabelSet | None = None, source: str | None = None) -> list[Sentence]:
    """Read a file :func:`write_weighted` wrote; errors name the file and line."""
    path, label_set = Path(path), as_label_set(labels)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CoNLLFormatError(path, None, f"cannot read as UTF-8 text ({err})") from err
    sentences = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            tokens, tags, weights = (
                tuple(map(str, record["tokens"])),
                tuple(map(str, record["tags"])),
                record.get("weights"),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CoNLLFormatError(path, lineno, f"not a sentence record with tokens and tags ({err})") from err
        if not tokens or len(tags) != len(tokens) or (weights is not None and len(weights) != len(tokens)):
            raise CoNLLFormatError(
                path,
                lineno,
                f"{len(tokens)} tokens, {len(tags)} tags and {len(weights or tokens)} weights "
                "must be equal and non-zero",
            )
        if bad := [t for t in tags if t not in label_set]:
            raise CoNLLFormatError(path, lineno, unknown_tag(bad[0], label_set))
        if weights is not None and not all(
            isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in weights
        ):
            raise CoNLLFormatError(path, lineno, "weights must be finite numbers >= 0")
        targets = record.get("targets")
        if targets is not None and not (
            len(targets) == len(tokens)
            and all(
                isinstance(row, list)
                and len(row) == len(label_set.tags)
                and all(isinstance(p, (int, float)) and p >= 0 for p in row)
                and abs(sum(row) - 1) < 1e-3
                for row in targets
            )
        ):
            raise CoNLLFormatError(
                path,
                lineno,
                "targets must give each token a distribution over the "
                f"{len(label_set.tags)} tags {list(label_set.tags)}",
            )
        provenance = {k: v for k, v in record.items() if k not in CORE_KEYS}
        sentences.append(
            Sentence(
                tokens,
                tags,
                str(record.get("id", f"{path.name}:{lineno}")),
                source or path.name,
                provenance or None,
                tuple(map(float, weights)) if weights is not None else None,
                tuple(tuple(map(float, row)) for row in targets) if targets is not None else None,
            )
        )
    if not sentences:
        raise CoNLLFormatError(path, None, "file holds no sentences")
    return sentences
