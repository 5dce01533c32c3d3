"""What users would use instead: the Hugging Face ``Trainer`` with ``DataCollatorForTokenClassification``,
as in the transformers token-classification example (first-subword labels, dynamic padding)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from nerdistill.data.labels import LabelSet
from nerdistill.metrics import ner_metrics
from nerdistill.student.encoding import Encoded, word_tags


class EpochTimer(TrainerCallback):
    """Wall time of the training epochs (the loop itself, not model loading)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self._start


def features(items: list[Encoded]) -> list[dict]:
    """The example's features: unpadded input ids, attention mask and first-subword labels."""
    return [
        {"input_ids": it.input_ids.tolist(), "attention_mask": [1] * len(it.input_ids), "labels": it.labels.tolist()}
        for it in items
    ]


def hf_train(
    model_path: str,
    tokenizer,
    labels: LabelSet,
    train: list[Encoded],
    output_dir: Path,
    *,
    epochs: float,
    batch_size: int = 32,
    lr: float = 2e-4,
    bf16: bool = False,
    group_by_length: bool = False,
    seed: int = 1,
):
    """Fine-tune with the HF Trainer; returns (model, seconds spent in the training epochs)."""
    model = AutoModelForTokenClassification.from_pretrained(
        model_path, num_labels=len(labels.tags), id2label=labels.id2label, label2id=labels.label2id
    )
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        learning_rate=lr,
        weight_decay=0.01,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        bf16=bf16,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        use_cpu=not torch.cuda.is_available(),
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
    )
    timer = EpochTimer()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=features(train),
        data_collator=DataCollatorForTokenClassification(tokenizer),
        callbacks=[timer],
    )
    trainer.train()
    return trainer.model, timer.seconds


@torch.inference_mode()
def hf_evaluate(
    model, tokenizer, labels: LabelSet, items: list[Encoded], batch_size: int = 128, bf16: bool = False
) -> dict:
    """seqeval metrics of ``model`` on ``items`` in dataset order (unsorted batches)."""
    model.eval()
    collate = DataCollatorForTokenClassification(tokenizer)
    gold, predicted = [], []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        batch = collate(features(chunk))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        predicted += word_tags(
            logits.float(), batch["labels"], [len(it.sentence.tokens) for it in chunk], labels.id2label
        )
        gold += [it.sentence.tags for it in chunk]
    return ner_metrics(gold, predicted)


def token_count(items: list[Encoded]) -> int:
    return int(np.sum([len(it.input_ids) for it in items]))
