"""What the teacher annotates: CoNLL sentences or a ``datasets`` dataset (``hf:...``; with gold) or raw
text from the BBC News CSV."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from nerdistill.data.conll import Sentence
from nerdistill.data.hf import HFSource, is_hf
from nerdistill.data.labels import LabelSet
from nerdistill.data.pools import take_budget
from nerdistill.data.sources import read_source
from nerdistill.data.text import sentences_from_text


class InputFormatError(ValueError):
    """An input file that cannot be read; names the file and line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")
        self.path, self.line = str(path), line


class ConllInput:
    """A seeded subset of ``n`` sentences of a CoNLL file or of an ``hf:<folder or hub id>[:split]``
    dataset (:mod:`nerdistill.data.hf`; a block is then a row) (``None``: all), in file order. With
    ``index``, a file of block numbers (one per line, ``-DOCSTART-`` blocks counted, 0-based: the
    ``train_gpt35.index`` convention), only those sentences: e.g. the gold tags of the sentences an
    LLM annotated, for a simulated teacher to annotate the same text."""

    has_gold = True

    def __init__(
        self, path: str, n: int | None = None, seed: int = 0, split: str | None = None, index: str | None = None
    ) -> None:
        # an hf: source names its own split (input.split, for CoNLL-2003's file name, does not apply)
        self.path, self.n, self.seed, self.split = (
            (path, n, seed, HFSource.parse(path).split) if is_hf(path) else (Path(path), n, seed, split)
        )
        self.index = Path(index) if index else None

    def load(self, labels: LabelSet) -> list[Sentence]:
        sentences = read_source(self.path, labels)
        if self.index is not None:
            sentences = self._indexed(sentences)
        order = {s.id: i for i, s in enumerate(sentences)}
        return sorted(take_budget(sentences, self.n, self.seed, "input.n"), key=lambda s: order[s.id])

    def _indexed(self, sentences: list[Sentence]) -> list[Sentence]:
        by_block = {int(s.id.rsplit(":", 1)[1]): s for s in sentences}
        chosen = []
        for number, line in enumerate(self.index.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            if not line.strip().isdigit():
                raise InputFormatError(
                    self.index, number, f"expected a block number of {self.path}, got {line.strip()!r}"
                )
            if int(line) not in by_block:
                raise InputFormatError(
                    self.index,
                    number,
                    f"{self.path} has no sentence in block {int(line)} (a -DOCSTART- or empty block, or past its end)",
                )
            chosen.append(by_block[int(line)])
        return chosen

    def describe(self) -> dict:
        return {
            "kind": "hf" if is_hf(self.path) else "conll",
            "path": str(self.path),
            "split": self.split,
            "n": self.n,
            "seed": self.seed,
        } | ({"index": str(self.index)} if self.index else {})


def read_bbc(path: str | Path) -> list[tuple[int, str]]:
    """``(csv line, text)`` per article of a ``category,text`` CSV; malformed CSV names file and line."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as err:
        raise InputFormatError(path, None, f"cannot read file ({err.strerror})") from err
    articles: list[tuple[int, str]] = []
    with handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader, None)
            if header is None or "text" not in header:
                raise InputFormatError(path, 1, f"expected a header with a 'text' column, got {header}")
            column = header.index("text")
            line = reader.line_num
            for row in reader:
                if len(row) != len(header):
                    raise InputFormatError(
                        path, line + 1, f"expected {len(header)} fields like the header, got {len(row)}"
                    )
                articles.append((line + 1, row[column]))
                line = reader.line_num
        except csv.Error as err:
            raise InputFormatError(path, reader.line_num, f"malformed CSV ({err})") from err
        except UnicodeDecodeError as err:
            raise InputFormatError(path, reader.line_num + 1, f"bytes are not valid UTF-8 ({err.reason})") from err
    if not articles:
        raise InputFormatError(path, None, "no articles (only a header)")
    return articles


class BbcInput:
    """Sentences of the BBC News CSV, tokenised like CoNLL; no gold (tags are all ``O``)."""

    has_gold = False

    def __init__(self, path: str, limit: int | None = None, seed: int | None = 0, dedup: bool = True) -> None:
        self.path, self.limit, self.seed, self.dedup = Path(path), limit, seed, dedup

    def all_sentences(self) -> list[Sentence]:
        """Every sentence, ids ``<file>:<row>:<sentence>`` (row 0-based, header excluded); each article is a
        document."""
        out: list[Sentence] = []
        seen: set[tuple[str, ...]] = set()
        for row, (_, text) in enumerate(read_bbc(self.path)):
            for i, tokens in enumerate(sentences_from_text(text)):
                key = tuple(tokens)
                if self.dedup and key in seen:
                    continue
                seen.add(key)
                out.append(
                    Sentence(
                        key,
                        ("O",) * len(key),
                        f"{self.path.name}:{row}:{i}",
                        self.path.name,
                        document=f"{self.path.name}:{row}",
                    )
                )
        return out

    def load(self, labels: LabelSet) -> list[Sentence]:
        sentences = self.all_sentences()
        if self.limit is None or self.limit >= len(sentences):
            return sentences
        if self.seed is None:
            return sentences[: self.limit]
        keep = set(random.Random(self.seed).sample(range(len(sentences)), self.limit))
        return [s for i, s in enumerate(sentences) if i in keep]

    def describe(self) -> dict:
        return {"kind": "bbc", "path": str(self.path), "limit": self.limit, "seed": self.seed, "dedup": self.dedup}
