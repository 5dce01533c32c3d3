"""Tag sentences with a trained model: length-sorted batches, bf16 autocast where the hardware
computes bf16 natively, and optional int8 dynamic quantisation of the linear layers on CPU."""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tqdm import tqdm
from transformers import AutoModelForTokenClassification, PreTrainedModel

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet
from nerdistill.runtime import resolve_precision
from nerdistill.student.encoding import IGNORE, Collator, EncodedDataset, encode, length_sorted_batches, word_tags
from nerdistill.student.models import load_tokenizer

QUANTIZE = (None, "int8")


def load_model(path: str | Path) -> tuple[PreTrainedModel, str]:
    """The model and its tokenizer's name: from a Hugging Face model dir, a training run dir
    (its ``model/``), or a Lightning checkpoint of a run (rebuilt from the run's saved config)."""
    path = Path(path)
    if path.suffix == ".ckpt":
        return _load_checkpoint(path)
    for candidate in (path, path / "model"):
        if (candidate / "config.json").exists():
            return AutoModelForTokenClassification.from_pretrained(candidate), str(candidate)
    raise FileNotFoundError(
        f"{path}: no Hugging Face model here (expected config.json in it or in {path / 'model'}, or a .ckpt file)"
    )


# modules that moved into nerdistill/student/ on 2026-11-29: run configs written before name them at the top level
MOVED_TO_STUDENT = (
    "callbacks",
    "datamodule",
    "denoise",
    "dropout",
    "encoding",
    "inference",
    "models",
    "module",
    "plan",
    "relabel",
    "rng",
    "sampling",
    "schedules",
)
_MOVED_TARGET = re.compile(rf"\bnerdistill\.({'|'.join(MOVED_TO_STUDENT)})\.")


def current_targets(config_text: str) -> str:
    """A run config's text with the ``_target_`` paths of modules that have since moved brought up to date."""
    return _MOVED_TARGET.sub(r"nerdistill.student.\1.", config_text)


def _load_checkpoint(path: Path) -> tuple[PreTrainedModel, str]:
    config_file = path.parent.parent / ".hydra" / "config.yaml"
    if not path.exists() or not config_file.exists():
        raise FileNotFoundError(f"{path}: checkpoint or its run config {config_file} not found")
    cfg = OmegaConf.create(current_targets(config_file.read_text()))
    module = instantiate(cfg.model.module, _partial_=True)(labels=list(cfg.labels))
    # weights_only: tensors and plain types only; a checkpoint from elsewhere cannot run code when loaded
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except (pickle.UnpicklingError, RuntimeError, KeyError) as err:
        raise ValueError(
            f"{path}: not a checkpoint that loads with weights_only=True "
            f"({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from None
    try:
        module.load_state_dict(state)
    except RuntimeError as err:  # another label set's classifier, or another model's layers
        first = str(err).strip().splitlines()[1].strip() if len(str(err).strip().splitlines()) > 1 else str(err)
        raise ValueError(
            f"{path}: does not fit the model its run config {config_file} describes (labels {list(cfg.labels)}, "
            f"model.name_or_path {cfg.model.get('name_or_path')}): {first}"
        ) from None
    return module.model, cfg.model.tokenizer


def quantize_linear_int8(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` with every ``nn.Linear`` replaced by PyTorch's dynamically quantised int8 linear
    (weights int8 with a scale per output channel, activations quantised per batch); eval only, on
    CPU. One scale per weight matrix instead cost 0.85 test F1 points on a MiniLM student, per
    channel 0.05 (benchmarks/README.md)."""
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        return torch.ao.quantization.quantize_dynamic(model.cpu(), {torch.nn.Linear: qconfig}, dtype=torch.qint8)


class Tagger:
    """A trained token classifier (see :func:`load_model` for what ``model_dir`` may be) that tags tokenised
    sentences."""

    def __init__(
        self,
        model_dir: str | Path,
        batch_size: int = 128,
        max_length: int = 128,
        precision: str = "auto",
        device: str | None = None,
        quantize: str | None = None,
        progress: bool = False,
    ) -> None:
        """``precision``: ``auto`` (bf16 autocast where the device computes bf16 natively, else
        fp32), or a Lightning precision name (bf16 ones autocast, the rest run fp32).
        ``quantize="int8"``: the linear layers as int8 dynamic quantisation (CPU only; the rest in
        fp32, ``precision`` unused); :attr:`precision` is then ``int8``. ``progress``: a progress bar over
        the batches of every tagging call."""
        if quantize not in QUANTIZE:
            raise ValueError(f"quantize={quantize!r}: expected null or 'int8'")
        if batch_size < 1 or max_length < 3:
            raise ValueError(
                "batch_size must be positive and max_length at least 3 (CLS, one sub-token, SEP), "
                f"got {batch_size} and {max_length}"
            )
        model, tokenizer = load_model(model_dir)
        self.model = model.eval()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if quantize and self.device.type != "cpu":
            raise ValueError(f"quantize=int8 runs on the CPU only, not on {self.device.type}")
        chosen = resolve_precision(precision, self.device.type).precision if not quantize else None
        self.precision = "int8" if quantize else chosen
        if quantize:
            self.model = quantize_linear_int8(self.model)
        self.model.to(self.device)
        self.tokenizer = load_tokenizer(tokenizer)
        id2label = {int(k): v for k, v in self.model.config.id2label.items()}
        self.id2label = id2label
        self.labels = LabelSet(tuple(dict.fromkeys(tag[2:] for tag in id2label.values() if tag != "O")))
        self.batch_size, self.max_length = batch_size, max_length
        self.autocast = self.precision.startswith("bf16")
        self.progress = progress

    def tag(self, sentences: Sequence[Sequence[str]], sort_by_length: bool = True) -> list[list[str]]:
        """IOB2 tags for each sentence (a list of tokens), in input order."""
        return [tags for tags, _ in self._run(sentences, sort_by_length, probabilities=False)]

    def tag_with_probabilities(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[str], np.ndarray]]:
        """Per sentence, its IOB2 tags and a ``(words, tags)`` array of the model's probabilities
        (softmax over ``self.id2label`` in id order, each word's first sub-token); a word cut by
        truncation gets ``O`` with probability 1."""
        return self._run(sentences, True, probabilities=True)

    def sample_probabilities(self, sentences: Sequence[Sequence[str]], passes: int, seed: int) -> list[np.ndarray]:
        """Per sentence, a ``(passes, words, tags)`` array: the probabilities (as
        :meth:`tag_with_probabilities` gives them) of ``passes`` forward passes with the model's
        dropout on (Monte Carlo dropout). The masks are drawn from ``seed``, so the same call gives
        the same arrays; the global random generators are left as they were."""
        if passes < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        items, batches, collate = self._batches(sentences, True)
        results: list[np.ndarray | None] = [None] * len(items)
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(seed)
                self.model.train()  # dropout on (attention dropout too); the weights do not change
                for batch_indices in tqdm(
                    batches, desc=f"tag x{passes} with dropout", unit="batch", disable=not self.progress
                ):
                    batch = collate([items[i] for i in batch_indices])
                    first = (batch["labels"] != IGNORE).to(self.device)
                    # (batch, passes, length, tags)
                    stack = torch.stack([self._logits(batch).softmax(-1) for _ in range(passes)], dim=1)
                    for row, index in enumerate(batch_indices):
                        kept = stack[row][:, first[row]].cpu().numpy()
                        missing = len(items[index].sentence.tokens) - kept.shape[1]
                        results[index] = (
                            np.concatenate([kept, np.tile(self._outside, (passes, missing, 1))], axis=1)
                            if missing
                            else kept
                        )
        finally:
            self.model.eval()
        return results

    def words_kept(self, sentences: Sequence[Sequence[str]]) -> list[int]:
        """Per sentence, how many of its words fit in ``max_length`` sub-tokens (the rest are predicted ``O``)."""
        items, _, _ = self._batches(sentences, False)
        return [int((item.labels != IGNORE).sum()) for item in items]

    @property
    def _outside(self) -> np.ndarray:
        """The probabilities given to a word cut by truncation: ``O`` with probability 1."""
        outside = np.zeros(len(self.id2label), dtype=np.float32)
        outside[next(i for i, tag in self.id2label.items() if tag == "O")] = 1.0
        return outside

    def _batches(
        self, sentences: Sequence[Sequence[str]], sort_by_length: bool
    ) -> tuple[list, list[list[int]], Collator]:
        wrapped = [Sentence(tuple(tokens), ("O",) * len(tokens), str(i), "input") for i, tokens in enumerate(sentences)]
        items = encode(wrapped, self.tokenizer, self.labels, self.max_length, name="input")
        if sort_by_length:
            batches = length_sorted_batches(EncodedDataset(items).lengths, self.batch_size)
        else:
            batches = [
                list(range(i, min(i + self.batch_size, len(items)))) for i in range(0, len(items), self.batch_size)
            ]
        return items, batches, Collator(self.tokenizer.pad_token_id)

    def _logits(self, batch: dict) -> torch.Tensor:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else nullcontext()
        with autocast:
            logits = self.model(
                input_ids=batch["input_ids"].to(self.device), attention_mask=batch["attention_mask"].to(self.device)
            ).logits
        return logits.float()

    @torch.inference_mode()
    def _run(
        self, sentences: Sequence[Sequence[str]], sort_by_length: bool, probabilities: bool
    ) -> list[tuple[list[str], np.ndarray | None]]:
        items, batches, collate = self._batches(sentences, sort_by_length)
        results: list[tuple[list[str], np.ndarray | None]] = [([], None) for _ in items]
        outside = self._outside
        for batch_indices in tqdm(batches, desc="tag", unit="batch", disable=not self.progress):
            batch = collate([items[i] for i in batch_indices])
            logits = self._logits(batch)
            word_counts = [len(t) for t in batch["gold_tags"]]
            tags = word_tags(logits, batch["labels"], word_counts, self.id2label)
            if probabilities:
                first = (batch["labels"] != IGNORE).to(logits.device)
                probs = logits.softmax(-1)
            for row, (index, sentence_tags) in enumerate(zip(batch_indices, tags)):
                if probabilities:
                    kept = probs[row][first[row]].cpu().numpy()
                    padding = np.tile(outside, (word_counts[row] - len(kept), 1))
                    results[index] = (sentence_tags, np.concatenate([kept, padding]) if len(padding) else kept)
                else:
                    results[index] = (sentence_tags, None)
        return results
