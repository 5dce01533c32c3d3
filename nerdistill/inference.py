"""Tag sentences with a trained model: length-sorted batches, bf16 autocast where it pays."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoModelForTokenClassification, PreTrainedModel

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet
from nerdistill.datamodule import Collator, EncodedDataset, length_sorted_batches
from nerdistill.encoding import IGNORE, encode
from nerdistill.models import load_tokenizer


def word_tags(logits: torch.Tensor, labels: torch.Tensor, word_counts: Sequence[int], id2label: dict[int, str]) -> list[list[str]]:
    """Per sentence, the predicted tag of each word's first sub-token; words cut by truncation get ``O``."""
    predictions = logits.argmax(-1).cpu()
    first = (labels != IGNORE).cpu()
    out = []
    for row, n_words in enumerate(word_counts):
        tags = [id2label[i] for i in predictions[row][first[row]].tolist()]
        out.append(tags + ["O"] * (n_words - len(tags)))
    return out


def load_model(path: str | Path) -> tuple[PreTrainedModel, str]:
    """The model and its tokenizer's name: from a Hugging Face model dir, a training run dir
    (its ``model/``), or a Lightning checkpoint of a run (rebuilt from the run's saved config)."""
    path = Path(path)
    if path.suffix == ".ckpt":
        return _load_checkpoint(path)
    for candidate in (path, path / "model"):
        if (candidate / "config.json").exists():
            return AutoModelForTokenClassification.from_pretrained(candidate), str(candidate)
    raise FileNotFoundError(f"{path}: no Hugging Face model here (expected config.json in it or in {path / 'model'}, or a .ckpt file)")


def _load_checkpoint(path: Path) -> tuple[PreTrainedModel, str]:
    config_file = path.parent.parent / ".hydra" / "config.yaml"
    if not path.exists() or not config_file.exists():
        raise FileNotFoundError(f"{path}: checkpoint or its run config {config_file} not found")
    cfg = OmegaConf.load(config_file)
    module = instantiate(cfg.model.module, _partial_=True)(labels=list(cfg.labels))
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])
    return module.model, cfg.model.tokenizer


class Tagger:
    """A trained token classifier (see :func:`load_model` for what ``model_dir`` may be) that tags tokenised sentences."""

    def __init__(self, model_dir: str | Path, batch_size: int = 128, max_length: int = 128, precision: str = "bf16-mixed", device: str | None = None) -> None:
        model, tokenizer = load_model(model_dir)
        self.model = model.eval()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.tokenizer = load_tokenizer(tokenizer)
        id2label = {int(k): v for k, v in self.model.config.id2label.items()}
        self.id2label = id2label
        self.labels = LabelSet(tuple(dict.fromkeys(tag[2:] for tag in id2label.values() if tag != "O")))
        self.batch_size, self.max_length = batch_size, max_length
        self.autocast = precision.startswith("bf16")

    @torch.inference_mode()
    def tag(self, sentences: Sequence[Sequence[str]], sort_by_length: bool = True) -> list[list[str]]:
        """IOB2 tags for each sentence (a list of tokens), in input order."""
        wrapped = [Sentence(tuple(tokens), ("O",) * len(tokens), str(i), "input") for i, tokens in enumerate(sentences)]
        items = encode(wrapped, self.tokenizer, self.labels, self.max_length, name="input")
        if sort_by_length:
            batches = length_sorted_batches(EncodedDataset(items).lengths, self.batch_size)
        else:
            batches = [list(range(i, min(i + self.batch_size, len(items)))) for i in range(0, len(items), self.batch_size)]
        collate = Collator(self.tokenizer.pad_token_id)
        results: list[list[str]] = [[] for _ in items]
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else nullcontext()
        for batch_indices in batches:
            batch = collate([items[i] for i in batch_indices])
            with autocast:
                logits = self.model(input_ids=batch["input_ids"].to(self.device), attention_mask=batch["attention_mask"].to(self.device)).logits
            tags = word_tags(logits.float(), batch["labels"], [len(t) for t in batch["gold_tags"]], self.id2label)
            for index, sentence_tags in zip(batch_indices, tags):
                results[index] = sentence_tags
        return results
