"""One configured source of labelled sentences, whatever its format: a CoNLL file, a ``.jsonl`` file
of weighted sentences (what relabelling writes) or a ``datasets`` dataset (``hf:<folder or hub id>[:split]``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nerdistill.data.conll import Sentence, read_conll
from nerdistill.data.hf import DatasetSourceError, HFSource, is_hf, read_hf
from nerdistill.data.labels import LabelSet
from nerdistill.data.weighted import SUFFIX, read_weighted


def read_source(
    source: str | Path, labels: LabelSet | Sequence[str] | None = None, labels_name: str = "the label set"
) -> list[Sentence]:
    """The sentences of ``source`` (IOB2, validated against ``labels``; errors name the source)."""
    if is_hf(source):
        return read_hf(str(source), labels, labels_name)
    if str(source).endswith(SUFFIX):
        return read_weighted(source, labels)
    return read_conll(source, labels, labels_name=labels_name)


def check_source(key: str, source: str | Path) -> None:
    """Fail early, naming ``key``, where a file source is not a file or an ``hf:`` folder is not a
    folder (before a model loads; splits, columns and tags are checked when it is read)."""
    if is_hf(source):
        parsed = HFSource.parse(str(source))
        if parsed.is_local and not Path(parsed.name).expanduser().is_dir():
            raise DatasetSourceError(
                str(source), f"{key}: no dataset folder {parsed.name} (a folder written by datasets' save_to_disk)"
            )
    elif not Path(source).is_file():
        raise FileNotFoundError(f"{key}={source}: not a file (a CoNLL file, or hf:<dataset folder or hub id>[:split])")
