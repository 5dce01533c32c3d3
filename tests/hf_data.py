"""Small ``datasets`` folders for tests, built on disk from CoNLL-2003 sentences with a label set of
their own (``person``, ``location``, ``organisation``; MISC left out): nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

from nerdistill.data.conll import Sentence, read_conll

TYPES = ("person", "location", "organisation")
RENAME = {"PER": "person", "LOC": "location", "ORG": "organisation"}


def renamed(sentence: Sentence) -> list[str]:
    """The sentence's tags with CoNLL's types renamed, MISC as ``O``."""
    return [f"{t[:2]}{RENAME[t[2:]]}" if t != "O" and t[2:] in RENAME else "O" for t in sentence.tags]


def save_dataset(
    folder: Path,
    splits: dict[str, list[Sentence]],
    names: list[str] | None = None,
    tags_column: str = "ner_tags",
    strings: bool = False,
) -> Path:
    """A ``DatasetDict`` of ``splits`` (or a single ``Dataset`` for the split ``""``) saved to ``folder``:
    ``tokens`` and ``tags_column``, a sequence of ``ClassLabel(names)`` (or of strings)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    names = names or ["O"] + [f"{p}-{t}" for t in TYPES for p in ("B", "I")]
    tag = Value("string") if strings else ClassLabel(names=names)
    features = Features({"tokens": List(Value("string")), tags_column: List(tag)})

    def dataset(sentences: list[Sentence]) -> Dataset:
        tags = [renamed(s) for s in sentences]
        return Dataset.from_dict(
            {
                "tokens": [list(s.tokens) for s in sentences],
                tags_column: tags if strings else [[names.index(t) for t in row] for row in tags],
            },
            features=features,
        )

    saved = (
        dataset(splits[""]) if list(splits) == [""] else DatasetDict({name: dataset(s) for name, s in splits.items()})
    )
    saved.save_to_disk(str(folder))
    return folder


def people_places(folder: Path, data_dir: Path, sizes: tuple[int, int, int] = (160, 40, 40)) -> Path:
    """train/validation/test splits of CoNLL-2003 train/valid/test's first sentences, types renamed."""
    files = ("train.txt", "valid.txt", "test.txt")
    splits = {
        name: read_conll(data_dir / "conll2003" / file)[:n]
        for name, file, n in zip(("train", "validation", "test"), files, sizes)
    }
    return save_dataset(folder, splits)
