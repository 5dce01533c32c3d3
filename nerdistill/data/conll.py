"""Read and write CoNLL column files (token first, NER tag last), validating as we go."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nerdistill.data.labels import LabelSet, as_label_set, to_iob2
from nerdistill.files import atomic_path

DOCSTART = "-DOCSTART-"


class CoNLLFormatError(ValueError):
    """A CoNLL file that cannot be read; names the file and line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


@dataclass(frozen=True)
class Sentence:
    """One tokenised sentence with IOB2 tags.

    ``id`` is ``<source>:<block>``, where block counts blank-line separated blocks of the file
    (``-DOCSTART-`` blocks included, 0-based), so it is stable across runs and matches the
    ``train_gpt35.index`` convention. ``provenance`` is set on distilled sentences. ``weights``,
    where set, is each token's loss weight (0: unlabelled, left out of the loss; see
    :mod:`nerdistill.student.denoise`); ``None`` means 1 everywhere. ``targets``, where set, is each
    token's soft target: a distribution over the label set's tags, trained towards instead of its tag.
    ``document``, where known, names the document the sentence belongs to (in a CoNLL file,
    ``<source>:<block>`` of the ``-DOCSTART-`` line before it): sentences of one article share it.
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    id: str
    source: str
    provenance: dict[str, Any] | None = field(default=None, compare=False)
    weights: tuple[float, ...] | None = field(default=None, compare=False)
    targets: tuple[tuple[float, ...], ...] | None = field(default=None, compare=False)
    document: str | None = field(default=None, compare=False)

    @property
    def text_key(self) -> str:
        """Content hash of the tokens: matches the same sentence across gold and distilled files."""
        return hashlib.sha1("\x1f".join(self.tokens).encode("utf-8")).hexdigest()


def read_conll(
    path: str | Path,
    labels: LabelSet | Sequence[str] | None = None,
    source: str | None = None,
    labels_name: str = "the label set",
) -> list[Sentence]:
    """Read a CoNLL file (IOB1 or IOB2, two or more space/tab separated columns) as IOB2 sentences.

    A UTF-8 byte order mark and CRLF line ends are accepted. Raises :class:`CoNLLFormatError`
    naming file and line for undecodable bytes, an empty file, a column count that differs from
    the file's first token line, or a tag outside ``labels`` (called ``labels_name`` in the message).
    """
    path = Path(path)
    label_set = as_label_set(labels)
    source = source or path.name
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CoNLLFormatError(path, None, f"cannot read file ({err.strerror})") from err
    try:
        text = raw.decode("utf-8-sig")  # a byte order mark (Windows editors) is not part of the first token
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise CoNLLFormatError(path, line, f"bytes are not valid UTF-8 ({err.reason})") from err

    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    columns: int | None = None
    block = 0
    in_block = False
    document: str | None = None

    def close_block() -> None:
        nonlocal block, in_block, tokens, tags
        if tokens:
            sentences.append(
                Sentence(tuple(tokens), tuple(to_iob2(tags)), f"{source}:{block}", source, document=document)
            )
        if in_block:
            block += 1
        tokens, tags, in_block = [], [], False

    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            close_block()
            continue
        in_block = True
        if fields[0] == DOCSTART:
            document = f"{source}:{block}"
            continue
        if len(fields) < 2:
            raise CoNLLFormatError(
                path, lineno, f"expected at least 2 columns (token ... NER tag), got {len(fields)}: {line!r}"
            )
        if columns is None:
            columns = len(fields)
        elif len(fields) != columns:
            raise CoNLLFormatError(
                path,
                lineno,
                f"expected {columns} columns like the file's first token line, got {len(fields)}: {line!r}",
            )
        tag = fields[-1]
        if tag not in label_set:
            raise CoNLLFormatError(path, lineno, unknown_tag(tag, label_set, labels_name))
        tokens.append(fields[0])
        tags.append(tag)
    close_block()
    if not sentences:
        raise CoNLLFormatError(path, None, "file holds no sentences (empty, or only -DOCSTART- lines)")
    return sentences


def unknown_tag(tag: object, label_set: LabelSet, labels_name: str = "the label set") -> str:
    """The message for a tag outside the label set, the same for every format that holds tags."""
    return f"tag {tag!r} is not in {labels_name} {list(label_set.tags)}"


def write_conll(path: str | Path, sentences: Iterable[Sentence]) -> None:
    """Write sentences as two-column ``token TAG`` IOB2 CoNLL, a blank line after each, atomically."""
    with atomic_path(path) as partial, partial.open("w", encoding="utf-8") as handle:
        for sentence in sentences:
            for token, tag in zip(sentence.tokens, sentence.tags):
                handle.write(f"{token} {tag}\n")
            handle.write("\n")
