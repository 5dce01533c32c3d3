"""Sentences as model input: sub-token ids with each word's label on its first sub-token, an
on-disk cache of them keyed by content (the sentences, the tokenizer, the labels, ``max_length``),
their dataset, padded batches and length-sorted evaluation batches (shared by training and
inference), and the way back: each word's predicted tag from its first sub-token's logits."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """One sentence as model input: sub-token ids, labels on first sub-tokens (-100 elsewhere),
    for weighted sentences each label's loss weight (words of weight 0 get no label), and for
    sentences with soft targets a ``(sub-tokens, tags)`` array of them (zero rows elsewhere)."""

    input_ids: np.ndarray
    labels: np.ndarray
    distilled: bool
    sentence: Sentence
    weights: np.ndarray | None = None
    targets: np.ndarray | None = None


def encode(
    sentences: Sequence[Sentence],
    tokenizer,
    labels: LabelSet,
    max_length: int,
    distilled: bool = False,
    name: str = "data",
) -> list[Encoded]:
    """Tokenise words into sub-tokens; each word's label goes on its first sub-token."""
    if not sentences:
        return []
    label2id = labels.label2id
    batch = tokenizer(
        [list(s.tokens) for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length
    )
    out, truncated = [], 0
    for i, sentence in enumerate(sentences):
        word_ids = batch.word_ids(i)
        ids = np.asarray(batch["input_ids"][i], dtype=np.int64)
        tags = np.full(len(ids), IGNORE, dtype=np.int64)
        weights = np.zeros(len(ids), dtype=np.float32) if sentence.weights is not None else None
        targets = np.zeros((len(ids), len(labels.tags)), dtype=np.float32) if sentence.targets is not None else None
        previous = None
        for position, word in enumerate(word_ids):
            if word is not None and word != previous:
                if weights is None or sentence.weights[word] > 0:
                    tags[position] = label2id[sentence.tags[word]]
                if weights is not None:
                    weights[position] = sentence.weights[word]
                if targets is not None:
                    targets[position] = sentence.targets[word]
            previous = word
        kept = max((w for w in word_ids if w is not None), default=-1) + 1
        truncated += kept < len(sentence.tokens)
        out.append(Encoded(ids, tags, distilled, sentence, weights, targets))
    warn_truncated(name, truncated, len(sentences), max_length)
    return out


def warn_truncated(name: str, truncated: int, total: int, max_length: int) -> None:
    if truncated:
        log.warning(
            "%s: %d of %d sentences truncated at max_length=%d sub-tokens; their tail words are predicted O",
            name,
            truncated,
            total,
            max_length,
        )


def count_truncated(items: Sequence[Encoded]) -> int:
    """Sentences with words beyond the last first-sub-token label (cut by truncation)."""
    return sum(int((item.labels != IGNORE).sum()) < len(item.sentence.tokens) for item in items)


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything that decides a fast tokenizer's output: its serialised pipeline
    (vocabulary, normaliser, pre-tokeniser, post-processor) and its class."""
    state = tokenizer.backend_tokenizer.to_str() + type(tokenizer).__name__
    return hashlib.sha256(state.encode()).hexdigest()


class TokenCache:
    """Encoded sentences on disk, one ``.npz`` per (sentences, tokenizer, labels, max_length).

    A change to any sentence's words or tags, to the tokenizer's files or to ``max_length``
    gives a new key, so a stale entry is never read; an unreadable entry is re-encoded.
    ``directory=None`` turns the cache off.
    """

    def __init__(self, directory: str | Path | None, tokenizer, labels: LabelSet, max_length: int) -> None:
        self.directory = Path(directory) if directory else None
        self.tokenizer, self.labels, self.max_length = tokenizer, labels, max_length
        self._tokenizer_key = tokenizer_fingerprint(tokenizer) if self.directory else ""

    def key(self, sentences: Sequence[Sentence]) -> str:
        digest = hashlib.sha256(json.dumps([self._tokenizer_key, self.max_length, list(self.labels.tags)]).encode())
        for sentence in sentences:
            extra = [x for x in (sentence.weights, sentence.targets) if x is not None]
            digest.update(
                json.dumps([sentence.tokens, sentence.tags, sentence.weights is not None, *extra]).encode()
                if extra
                else json.dumps([sentence.tokens, sentence.tags]).encode()
            )
        return digest.hexdigest()[:32]

    def encode(self, sentences: Sequence[Sentence], distilled: bool = False, name: str = "data") -> list[Encoded]:
        """``encode(...)`` of the sentences, read from the cache when this exact input was seen."""
        if self.directory is None or not sentences:
            return encode(sentences, self.tokenizer, self.labels, self.max_length, distilled, name)
        path = self.directory / f"{self.key(sentences)}.npz"
        if path.exists():
            try:
                with np.load(path) as stored:
                    items = self._unpack(stored, sentences, distilled)
                warn_truncated(name, count_truncated(items), len(items), self.max_length)
                return items
            except (OSError, ValueError, KeyError) as err:
                log.warning("%s: unreadable token cache entry (%s); encoding again", path, err)
        items = encode(sentences, self.tokenizer, self.labels, self.max_length, distilled, name)
        self._store(path, items)
        return items

    @staticmethod
    def _unpack(stored, sentences: Sequence[Sentence], distilled: bool) -> list[Encoded]:
        offsets = stored["offsets"]
        if len(offsets) != len(sentences) + 1:
            raise ValueError(f"{len(offsets) - 1} entries for {len(sentences)} sentences")
        ids, labels = stored["input_ids"], stored["labels"]
        weights = stored["weights"] if "weights" in stored.files else None
        targets = stored["targets"] if "targets" in stored.files else None
        return [
            Encoded(
                ids[a:b],
                labels[a:b],
                distilled,
                s,
                weights[a:b] if weights is not None and s.weights is not None else None,
                targets[a:b] if targets is not None and s.targets is not None else None,
            )
            for s, a, b in zip(sentences, offsets[:-1], offsets[1:])
        ]

    def _store(self, path: Path, items: list[Encoded]) -> None:
        """Write atomically (temp file, then rename), so a crash never leaves half an entry."""
        self.directory.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(item.input_ids) for item in items])
        with tempfile.NamedTemporaryFile(dir=self.directory, suffix=".tmp", delete=False) as tmp:
            arrays = {
                "input_ids": np.concatenate([i.input_ids for i in items]),
                "labels": np.concatenate([i.labels for i in items]),
                "offsets": offsets,
            }
            if any(i.weights is not None for i in items):
                arrays["weights"] = np.concatenate(
                    [i.weights if i.weights is not None else np.ones(len(i.input_ids), np.float32) for i in items]
                )
            if any(i.targets is not None for i in items):
                width = next(i.targets.shape[1] for i in items if i.targets is not None)
                arrays["targets"] = np.concatenate(
                    [
                        i.targets if i.targets is not None else np.zeros((len(i.input_ids), width), np.float32)
                        for i in items
                    ]
                )
            np.savez(tmp, **arrays)
        os.replace(tmp.name, path)


class EncodedDataset(Dataset):
    """Encoded sentences; indexed by a list of indices (a whole batch) or by one index."""

    def __init__(self, items: list[Encoded]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        if isinstance(index, (list, tuple)):
            return [self.items[i] for i in index]
        return self.items[index]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(item.input_ids) for item in self.items], dtype=np.int64)


class Collator:
    """Pads a batch to its longest member; keeps gold word tags and the distilled share beside the tensors."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[Encoded]) -> dict:
        width = max(len(item.input_ids) for item in items)
        input_ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item.input_ids)
            input_ids[row, :n] = torch.from_numpy(item.input_ids)
            labels[row, :n] = torch.from_numpy(item.labels)
            attention[row, :n] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "gold_tags": [item.sentence.tags for item in items],
            "distilled_share": sum(item.distilled for item in items) / len(items),
        }
        if any(item.weights is not None for item in items):  # per-label loss weights; 1 for unweighted sentences
            weights = torch.zeros((len(items), width), dtype=torch.float32)
            for row, item in enumerate(items):
                weights[row, : len(item.input_ids)] = (
                    torch.from_numpy(item.weights) if item.weights is not None else 1.0
                )
            batch["weights"] = weights
        if any(item.targets is not None for item in items):  # soft targets; one-hot labels for the other sentences
            n_tags = next(item.targets.shape[1] for item in items if item.targets is not None)
            targets = torch.nn.functional.one_hot(labels.clamp(min=0), n_tags).float()
            for row, item in enumerate(items):
                if item.targets is not None:
                    targets[row, : len(item.input_ids)] = torch.from_numpy(item.targets)
            batch["targets"] = targets
        return batch


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Evaluation batches of similar-length sentences (longest first, so memory peaks early)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def word_tags(
    logits: torch.Tensor, labels: torch.Tensor, word_counts: Sequence[int], id2label: dict[int, str]
) -> list[list[str]]:
    """Per sentence, the predicted tag of each word's first sub-token; words cut by truncation get ``O``."""
    predictions = logits.argmax(-1).cpu()
    first = (labels != IGNORE).cpu()
    out = []
    for row, n_words in enumerate(word_counts):
        tags = [id2label[i] for i in predictions[row][first[row]].tolist()]
        out.append(tags + ["O"] * (n_words - len(tags)))
    return out
