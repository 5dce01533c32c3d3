"""Output files written whole or not at all: a temporary sibling, renamed onto the final name
when complete, so a kill never leaves a half file (or half model folder) that looks finished."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` (same suffix, so writers that infer the format from
    it work; a file or a folder) and moves it onto ``path`` when the block ends without error. On
    an error the temporary is removed and ``path``, if it existed, is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        yield partial
        if partial.is_dir():
            # a folder cannot replace a non-empty folder in one rename: the old one goes first
            if path.is_dir():
                shutil.rmtree(path)
        os.replace(partial, path)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        elif partial.exists():
            partial.unlink()


def write_text(path: str | Path, text: str) -> None:
    """``Path.write_text`` (UTF-8), atomically."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: object) -> None:
    """``data`` as indented JSON with a final newline, atomically."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
