"""LightningDataModule: the run's gold and distilled pools blended by its plan, dev/test gold splits."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet, as_label_set
from nerdistill.data.pools import Pools
from nerdistill.student.encoding import Collator, EncodedDataset, TokenCache, length_sorted_batches
from nerdistill.student.models import load_tokenizer
from nerdistill.student.plan import RunPlan
from nerdistill.student.sampling import ScheduledBatchSampler


def scale_weights(sentence: Sentence, factor: float) -> Sentence:
    """``sentence`` with every token's loss weight (1 where unset) multiplied by ``factor``."""
    weights = sentence.weights or (1.0,) * len(sentence.tokens)
    return dataclasses.replace(sentence, weights=tuple(w * factor for w in weights))


class BlendDataModule(pl.LightningDataModule):
    """The run's pools blended by its plan (:class:`~nerdistill.student.plan.RunPlan`, which it
    holds for the module and the callbacks to read); validation and test are gold splits.

    ``pools`` are the pools the plan draws from (:func:`nerdistill.student.blend.blend`).
    ``distilled_loss_weight`` scales the loss of every distilled token (how much a distilled example
    counts; the schedule sets how often). Tokenised sentences are cached under ``cache_dir``, keyed
    by content (``None``: no cache).
    """

    def __init__(
        self,
        pools: Pools,
        validation: list[Sentence],
        test: list[Sentence],
        plan: RunPlan,
        tokenizer: str,
        labels: LabelSet | Sequence[str] | None = None,
        eval_batch_size: int = 128,
        max_length: int = 128,
        sort_window: int = 64,
        num_workers: int = 0,
        cache_dir: str | None = None,
        seed: int = 0,
        distilled_loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if eval_batch_size < 1:
            raise ValueError(
                f"data.batch_size and data.eval_batch_size must be positive, got data.eval_batch_size={eval_batch_size}"
            )
        if max_length < 3:
            raise ValueError(f"data.max_length must be at least 3 (CLS, one sub-token, SEP), got {max_length}")
        if not distilled_loss_weight > 0:
            raise ValueError(f"data.distilled_loss_weight must be positive, got {distilled_loss_weight}")
        self.pools, self.eval_sentences, self.plan = pools, {"val": validation, "test": test}, plan
        self.tokenizer_name = tokenizer
        self.labels = as_label_set(labels)
        self.eval_batch_size, self.max_length = eval_batch_size, max_length
        self.sort_window, self.num_workers, self.seed = sort_window, num_workers, seed
        self.cache_dir = cache_dir
        self.distilled_loss_weight = distilled_loss_weight
        self.tokenizer = None
        self.datasets: dict[str, EncodedDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        """Tokenise the pools and the dev and test splits (once; read from the cache where it has them)."""
        if self.datasets:
            return
        self.tokenizer = load_tokenizer(self.tokenizer_name)
        distilled = self.pools.distilled
        if self.distilled_loss_weight != 1.0:
            distilled = [scale_weights(sentence, self.distilled_loss_weight) for sentence in distilled]
        cache = TokenCache(self.cache_dir, self.tokenizer, self.labels, self.max_length)
        self.datasets["train"] = EncodedDataset(
            cache.encode(self.pools.original, name="original")
            + cache.encode(distilled, distilled=True, name="distilled")
        )
        for split, sentences in self.eval_sentences.items():
            self.datasets[split] = EncodedDataset(cache.encode(sentences, name=split))

    @property
    def on_gpu(self) -> bool:
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def _loader(self, dataset: EncodedDataset, sampler) -> DataLoader:
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,
            collate_fn=Collator(self.tokenizer.pad_token_id),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.on_gpu,  # faster, asynchronous host-to-device copies
        )

    def train_sampler(self, rank: int) -> ScheduledBatchSampler:
        """Rank ``rank``'s batches of the training set, as the plan blends them."""
        return ScheduledBatchSampler(
            self.plan, seed=self.seed, lengths=self.datasets["train"].lengths, sort_window=self.sort_window, rank=rank
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["train"], self.train_sampler(self.trainer.global_rank))

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        return self._loader(dataset, length_sorted_batches(dataset.lengths, self.eval_batch_size))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
