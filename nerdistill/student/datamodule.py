"""LightningDataModule: gold and distilled pools blended by a schedule, dev/test gold splits."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet, as_label_set
from nerdistill.data.pools import Overlap, build_pools
from nerdistill.data.sources import read_source
from nerdistill.student.encoding import Collator, EncodedDataset, TokenCache, length_sorted_batches
from nerdistill.student.models import load_tokenizer
from nerdistill.student.plan import RunPlan, make_plan
from nerdistill.student.sampling import ScheduledBatchSampler
from nerdistill.student.schedules import Schedule

log = logging.getLogger(__name__)


DRAW_UNITS = ("sentences", "tokens")


def check_draws(draws: dict[str, Any] | None) -> dict[str, Any]:
    """``data.draws`` with its defaults (no pool's draws fixed, unit sentences), checked."""
    out = {"original": None, "distilled": None, "unit": "sentences"} | dict(draws or {})
    if set(out) != {"original", "distilled", "unit"}:
        raise ValueError(f"data.draws takes 'original', 'distilled' and 'unit', got {sorted(out)}")
    if out["unit"] not in DRAW_UNITS:
        raise ValueError(f"data.draws.unit={out['unit']!r}: expected one of {list(DRAW_UNITS)}")
    for name in ("original", "distilled"):
        value = out[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ValueError(f"data.draws.{name}={value!r}: expected a positive number or null")
    return out


def scale_weights(sentence: Sentence, factor: float) -> Sentence:
    """``sentence`` with every token's loss weight (1 where unset) multiplied by ``factor``."""
    weights = sentence.weights or (1.0,) * len(sentence.tokens)
    return dataclasses.replace(sentence, weights=tuple(w * factor for w in weights))


class BlendDataModule(pl.LightningDataModule):
    """Gold and distilled pools blended by ``schedule``; validation and test are gold splits.

    The step budget draws ``passes[pool] * len(pool)`` sentences from each pool the schedule
    uses, over the examples of one optimiser step; it is cut into ``trainer.max_epochs`` epochs
    (validation rounds). ``draws[pool]``, where set, fixes a pool's draws instead, whatever its
    size: that many sentences (``draws["unit"]: sentences``) or sentences worth that many tokens
    (``tokens``), i.e. ``draws / size`` passes with the size counted in the unit. ``steps_per_epoch`` fixes the epoch length instead. :meth:`make_plan`
    turns this into the run plan the sampler, the LR schedule and the share log follow. ``distilled_loss_weight`` scales the
    loss of every distilled token (how much a distilled example counts; the schedule sets how often). Pool-dependent schedule defaults
    (sequential's switch, simple_mix's share) see the pools' sizes weighted by their passes, so
    sequential and simple_mix realise the passes exactly. Tokenised sentences are cached under
    ``cache_dir``, keyed by content (``None``: no cache).
    """

    def __init__(
        self,
        original: Sequence[str],
        distilled: Sequence[str],
        validation: str,
        test: str,
        schedule: Schedule,
        tokenizer: str,
        labels: LabelSet | Sequence[str] | None = None,
        gold_budget: int | None = None,
        distilled_budget: int | None = None,
        gold_overlap: Overlap = "any",
        budget_seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        max_length: int = 128,
        passes: dict[str, float] | None = None,
        draws: dict[str, Any] | None = None,
        steps_per_epoch: int | None = None,
        sort_window: int = 64,
        num_workers: int = 0,
        cache_dir: str | None = None,
        seed: int = 0,
        distilled_loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError("data.batch_size and data.eval_batch_size must be positive")
        if max_length < 3:
            raise ValueError(f"data.max_length must be at least 3 (CLS, one sub-token, SEP), got {max_length}")
        passes = dict(passes or {"original": 1, "distilled": 1})
        if set(passes) != {"original", "distilled"} or min(passes.values()) <= 0:
            raise ValueError(f"data.passes needs positive 'original' and 'distilled' entries, got {passes}")
        self.draws = check_draws(draws)
        if not distilled_loss_weight > 0:
            raise ValueError(f"data.distilled_loss_weight must be positive, got {distilled_loss_weight}")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"data.steps_per_epoch must be positive or null, got {steps_per_epoch}")
        self.original_files, self.distilled_files = list(original), list(distilled)
        self.validation_file, self.test_file = validation, test
        self.labels = as_label_set(labels)
        self.raw_schedule = schedule
        self.tokenizer_name = tokenizer
        self.gold_budget, self.distilled_budget = gold_budget, distilled_budget
        self.gold_overlap, self.budget_seed = gold_overlap, budget_seed
        self.batch_size, self.eval_batch_size, self.max_length = batch_size, eval_batch_size, max_length
        self.passes = passes
        self.fixed_steps_per_epoch, self.sort_window = steps_per_epoch, sort_window
        self.num_workers, self.seed = num_workers, seed
        self.cache_dir = cache_dir
        self.distilled_loss_weight = distilled_loss_weight
        self.schedule: Schedule | None = None
        self.plan: RunPlan | None = None
        self.tokenizer = None
        self.datasets: dict[str, EncodedDataset] = {}
        self.n_original = self.n_distilled = 0
        self.pool_passes = dict(passes)

    def prepare_pools(self) -> None:
        """Read and validate every file, apply budgets, check the schedule's pools. Idempotent."""
        if self.schedule is not None:
            return
        original_files, distilled_files = self._files_drawn_from()
        gold_budget = self.gold_budget if original_files else None  # a budget of a pool not read: moot
        distilled_budget = self.distilled_budget if distilled_files else None
        pools = build_pools(original_files, distilled_files, self.labels, gold_budget, distilled_budget, self.gold_overlap, self.budget_seed)
        self.pool_passes = {name: self._passes(name, sentences) for name, sentences in (("original", pools.original), ("distilled", pools.distilled))}
        schedule = self.raw_schedule.resolve(len(pools.original), len(pools.distilled), self.pool_passes["original"], self.pool_passes["distilled"])
        if schedule.uses_distilled and not pools.distilled:
            raise ValueError("the schedule needs distilled data but data.distilled yields no sentences")
        if schedule.uses_original and not pools.original:
            raise ValueError("the schedule needs gold data but data.original yields no sentences (check data.gold_budget)")
        self.pools = pools
        self.schedule = schedule
        self.eval_sentences = {"val": read_source(self.validation_file, self.labels), "test": read_source(self.test_file, self.labels)}
        self.n_original = len(pools.original) if schedule.uses_original else 0
        self.n_distilled = len(pools.distilled) if schedule.uses_distilled else 0
        log.info("pools: %d gold, %d distilled sentences; schedule %s", self.n_original, self.n_distilled, schedule)

    def _passes(self, name: str, sentences: list[Sentence]) -> float:
        """A pool's passes: ``data.passes``, or with ``data.draws`` set for it, its draws over its size in the draws' unit."""
        draws = self.draws[name]
        if draws is None or not sentences:
            return self.passes[name]
        size = len(sentences) if self.draws["unit"] == "sentences" else sum(len(s.tokens) for s in sentences)
        log.info(
            "data.draws.%s=%s %s over a pool of %d %s: %.4g passes (instead of data.passes.%s=%s)", name, draws, self.draws["unit"], size, self.draws["unit"], draws / size, name, self.passes[name]
        )
        return draws / size

    def _files_drawn_from(self) -> tuple[list, list]:
        """The pools' files, without those of a pool the schedule never draws from (gold-only
        training on your own label set does not read the default distilled file). With
        ``gold_overlap`` other than ``any`` the distilled pool decides which gold sentences are
        used, so it is read."""
        drawn = self.raw_schedule.resolve(1, 1)  # whether a pool is drawn does not depend on its size
        original, distilled = self.original_files, self.distilled_files
        if not drawn.uses_distilled and self.gold_overlap == "any" and distilled:
            log.info("schedule %s draws no distilled data: data.distilled is not read", drawn)
            distilled = []
        if not drawn.uses_original and original:
            log.info("schedule %s draws no gold data: data.original is not read", drawn)
            original = []
        return original, distilled

    def setup(self, stage: str | None = None) -> None:
        self.prepare_pools()
        if self.datasets:
            return
        self.tokenizer = load_tokenizer(self.tokenizer_name)
        original = self.pools.original if self.n_original else []
        distilled = self.pools.distilled if self.n_distilled else []
        if self.distilled_loss_weight != 1.0:
            distilled = [scale_weights(sentence, self.distilled_loss_weight) for sentence in distilled]
        cache = TokenCache(self.cache_dir, self.tokenizer, self.labels, self.max_length)
        self.datasets["train"] = EncodedDataset(cache.encode(original, name="original") + cache.encode(distilled, distilled=True, name="distilled"))
        for split, sentences in self.eval_sentences.items():
            self.datasets[split] = EncodedDataset(cache.encode(sentences, name=split))

    def _weighted_sizes(self, n_original: int, n_distilled: int) -> tuple[float, float]:
        """Sentences drawn from each pool: its passes times its size (``data.draws`` in sentences: exactly the draws)."""

        def drawn(name: str, n: int) -> float:
            if n and self.draws[name] is not None and self.draws["unit"] == "sentences":
                return float(self.draws[name])
            return self.pool_passes[name] * n

        return drawn("original", n_original), drawn("distilled", n_distilled)

    def make_plan(self, trainer: pl.Trainer | None = None) -> RunPlan:
        """The run plan for the pools and ``trainer``'s ranks, gradient accumulation, epochs and
        ``max_steps`` (no trainer: one rank, one epoch)."""
        self.prepare_pools()
        if trainer is not None and not trainer.fast_dev_run and trainer.limit_train_batches != 1.0:
            raise ValueError(
                f"trainer.limit_train_batches={trainer.limit_train_batches} would cut epochs short behind the blending schedule's back: set data.steps_per_epoch (optimiser steps per epoch) instead"
            )
        return make_plan(
            self.schedule,
            self.n_original,
            self.n_distilled,
            sum(self._weighted_sizes(self.n_original, self.n_distilled)),
            self.batch_size,
            world_size=trainer.world_size if trainer is not None else 1,
            accumulate=trainer.accumulate_grad_batches if trainer is not None else 1,
            max_epochs=trainer.max_epochs if trainer is not None else 1,
            max_steps=trainer.max_steps if trainer is not None else None,
            steps_per_epoch=self.fixed_steps_per_epoch,
        )

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

    def train_dataloader(self) -> DataLoader:
        if self.plan is None:  # fitted outside nerdistill.train.build (which sets the plan)
            self.plan = self.make_plan(self.trainer)
        plan, dataset = self.plan, self.datasets["train"]
        sampler = ScheduledBatchSampler(
            plan.n_original,
            plan.n_distilled,
            plan.schedule,
            plan.batch_size,
            plan.batches_per_epoch,
            plan.total_steps * plan.accumulate,
            seed=self.seed,
            lengths=dataset.lengths,
            sort_window=self.sort_window,
            rank=self.trainer.global_rank if self.trainer is not None else 0,
            world_size=plan.world_size,
            accumulate=plan.accumulate,
        )
        return self._loader(dataset, sampler)

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        return self._loader(dataset, length_sorted_batches(dataset.lengths, self.eval_batch_size))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
