"""Hugging Face ``datasets`` as a sentence source: ``hf:<folder or hub id>[:split]``.

A ``save_to_disk`` folder is read with ``datasets.load_from_disk``; a name that is not a folder here
and looks like a hub id (``name`` or ``owner/name``) with ``datasets.load_dataset`` (the hub must
be reachable, or the dataset in the local cache). The tokens come from the ``tokens`` column, the
tags from ``ner_tags`` (else ``tags``, ``labels``, or the one column that is a sequence of
``ClassLabel``): the tag names are the ``ClassLabel`` names (IOB1 or IOB2; a column of strings holds
the names itself). Tags are converted to IOB2 and checked against the label set as CoNLL files are
(:func:`nerdistill.data.conll.read_conll`). Sentence ids are ``<name>:<split>:<row>`` (row 0-based),
so the number after the last ``:`` is the row, as it is a CoNLL file's block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerdistill.data.conll import Sentence, unknown_tag
from nerdistill.data.labels import LabelSet, as_label_set, to_iob2

PREFIX = "hf:"
TOKENS = "tokens"
TAGS = ("ner_tags", "tags", "labels")  # the tags column: the first of these, else the one sequence of ClassLabel
_SOURCE = re.compile(r"^hf:(?P<name>.+?)(?::(?P<split>[A-Za-z0-9_.\-]+))?$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


class DatasetSourceError(ValueError):
    """An ``hf:`` source that cannot be read; names the source (and the row, where one is at fault)."""

    def __init__(self, source: str, message: str, row: int | None = None) -> None:
        super().__init__(f"{source}{f' row {row}' if row is not None else ''}: {message}")
        self.source, self.row = source, row


@dataclass(frozen=True)
class HFSource:
    """A parsed ``hf:<name>[:split]``: a folder here or a hub id, and the split (None: the only one)."""

    name: str
    split: str | None

    @classmethod
    def parse(cls, source: str) -> HFSource:
        match = _SOURCE.match(str(source))
        if match is None:
            raise DatasetSourceError(str(source), "expected hf:<dataset folder or hub id>[:split]")
        return cls(match["name"], match["split"])

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}" + (f":{self.split}" if self.split else "")

    @property
    def is_local(self) -> bool:
        """A folder here, or (not a hub id's shape: ``/x``, ``./x``, ``a/b/c``) one that should be."""
        return Path(self.name).expanduser().exists() or not _HUB_ID.match(self.name)


def is_hf(source: object) -> bool:
    """Whether a configured source names a ``datasets`` dataset (``hf:...``) rather than a file."""
    return str(source).startswith(PREFIX)


def load_split(source: HFSource) -> Any:
    """The ``datasets.Dataset`` of ``source``: a folder's (one split, or the named one) or the hub's."""
    try:
        import datasets  # imported here: a second or two, paid only by runs that read a dataset
    except ImportError:
        raise DatasetSourceError(
            str(source), "reading a datasets dataset needs the datasets package: pip install -e '.[hf]'"
        ) from None

    where = str(source)
    if source.is_local:
        folder = Path(source.name).expanduser()
        if not folder.is_dir():
            raise DatasetSourceError(where, f"no dataset folder {folder} (a folder written by datasets' save_to_disk)")
        try:
            loaded = datasets.load_from_disk(str(folder))
        except (FileNotFoundError, ValueError) as err:
            raise DatasetSourceError(where, f"{folder} is not a dataset written by save_to_disk ({err})") from None
    else:
        try:
            loaded = datasets.load_dataset(source.name, split=source.split)
        except Exception as err:  # offline, unknown id, unknown split: the hub's many error types, one message
            raise DatasetSourceError(
                where,
                f"{source.name!r} is not a folder here and could not be loaded from the Hugging Face hub "
                f"({type(err).__name__}: {err})",
            ) from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if source.split is None:
            if len(splits) != 1:
                raise DatasetSourceError(where, f"the dataset has splits {splits}: name one ({source}:{splits[0]})")
            return loaded[splits[0]]
        if source.split not in loaded:
            raise DatasetSourceError(where, f"no split {source.split!r}; the dataset has splits {splits}")
        return loaded[source.split]
    if source.split is not None and source.is_local:
        raise DatasetSourceError(where, f"{source.name} holds one dataset without splits: drop ':{source.split}'")
    return loaded


def tag_column(dataset: Any, where: str) -> tuple[str, list[str] | None]:
    """The tags column and its tag names (``None``: the column holds the names as strings)."""
    features = dataset.features
    if TOKENS not in features:
        raise DatasetSourceError(where, f"no {TOKENS!r} column (columns: {list(features)})")
    names = [c for c in TAGS if c in features][:1] or [
        c for c, f in features.items() if class_label_names(f) is not None
    ]
    if len(names) != 1:
        found = "none" if not names else f"several: {names}"
        raise DatasetSourceError(
            where,
            f"no tags column: expected one of {list(TAGS)} or one sequence of ClassLabel tags "
            f"({found}; columns: {list(features)})",
        )
    column = names[0]
    tag_names = class_label_names(features[column])
    if tag_names is None and getattr(getattr(features[column], "feature", None), "dtype", None) not in (
        "string",
        "large_string",
    ):
        raise DatasetSourceError(
            where,
            f"column {column!r} has no tag names: expected a sequence of ClassLabel (its names are the tags) "
            f"or of strings, got {features[column]}",
        )
    return column, tag_names


def class_label_names(feature: Any) -> list[str] | None:
    """The ``ClassLabel`` names of a sequence feature (``List``/``Sequence`` of ``ClassLabel``), else None."""
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def read_hf(
    source: str, labels: LabelSet | Sequence[str] | None = None, labels_name: str = "the label set"
) -> list[Sentence]:
    """The sentences of an ``hf:`` source as IOB2 ``Sentence`` s; errors name the source, column or row."""
    parsed = HFSource.parse(source)
    label_set, where = as_label_set(labels), str(parsed)
    dataset = load_split(parsed)
    column, names = tag_column(dataset, where)
    stem = Path(parsed.name).name if parsed.is_local else parsed.name
    origin = f"{stem}:{parsed.split}" if parsed.split else stem
    sentences: list[Sentence] = []
    row = 0
    for batch in dataset.select_columns([TOKENS, column]).iter(batch_size=1000):
        for tokens, tags in zip(batch[TOKENS], batch[column]):
            tokens, tags = [str(t) for t in tokens or []], list(tags or [])
            if len(tokens) != len(tags):
                raise DatasetSourceError(where, f"{len(tokens)} tokens but {len(tags)} tags", row)
            if names is not None:
                tags = [names[t] if isinstance(t, int) and 0 <= t < len(names) else t for t in tags]
            if bad := next((t for t in tags if not isinstance(t, str) or t not in label_set), None):
                raise DatasetSourceError(where, unknown_tag(bad, label_set, labels_name) + types_hint(names), row)
            if bad := next((t for t in tokens if not t or any(c.isspace() for c in t)), None) if tokens else None:
                raise DatasetSourceError(
                    where, f"token {bad!r} is empty or holds whitespace (a token is one CoNLL column)", row
                )
            if tokens:
                sentences.append(Sentence(tuple(tokens), tuple(to_iob2(tags)), f"{origin}:{row}", origin))
            row += 1
    if not sentences:
        raise DatasetSourceError(where, "holds no sentences (no rows, or only empty ones)")
    return sentences


def types_hint(names: list[str] | None) -> str:
    """``; the dataset's tags give the types [...]`` for a label-set error, when the names are known."""
    if not names:
        return ""
    types = list(dict.fromkeys(n.split("-", 1)[1] for n in names if n[:2] in ("B-", "I-")))
    return (
        f"; the dataset's tag names {names} give labels=[{','.join(types)}]"
        if types
        else f"; the dataset's tag names are {names}"
    )
