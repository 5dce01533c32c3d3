"""LightningModule: a token-classification encoder trained with AdamW and a warmup/decay LR."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from transformers import PreTrainedModel

from nerdistill.data.labels import LabelSet, as_label_set
from nerdistill.metrics import flatten, ner_metrics
from nerdistill.student.callbacks import best_score, dev_f1_checkpoint
from nerdistill.student.dropout import use_cheap_dropout
from nerdistill.student.encoding import IGNORE, word_tags
from nerdistill.student.models import backbone_from_config
from nerdistill.student.rng import rng_states, set_rng_states

log = logging.getLogger(__name__)

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm.weight", "layer_norm.bias")


def lr_factor(progress: float, phases: Sequence[float], warmup_ratio: float, schedule: str) -> float:
    """LR multiplier at ``progress``: per phase (split at ``phases``), linear warmup over
    ``warmup_ratio`` of the phase, then linear decay to 0 (``linear``) or flat (``constant``)."""
    bounds = [0.0, *sorted(phases), 1.0]
    start, end = next((s, e) for s, e in zip(bounds, bounds[1:]) if progress < e or e == 1.0)
    length = max(end - start, 1e-12)
    local = min(max((progress - start) / length, 0.0), 1.0)
    if warmup_ratio > 0 and local < warmup_ratio:
        return local / warmup_ratio
    if schedule == "constant":
        return 1.0
    return max(0.0, (1.0 - local) / max(1.0 - warmup_ratio, 1e-12))


def token_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over labelled tokens (``labels != IGNORE``): against the label, or against the
    soft ``targets`` (a distribution over tags per token) where given. With ``weights``, each token's
    term is multiplied by its weight and the sum divided by the number of labelled tokens, so a
    weight of 1 everywhere gives the plain mean and lower weights count for less."""
    flat_logits, flat_labels = logits.flatten(0, 1).float(), labels.flatten()
    if weights is None and targets is None:
        return torch.nn.functional.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE)
    labelled = flat_labels != IGNORE
    if targets is None:
        per_token = torch.nn.functional.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, reduction="none")
    else:
        per_token = -(targets.flatten(0, 1).to(flat_logits.dtype) * flat_logits.log_softmax(-1)).sum(-1) * labelled
    if weights is not None:
        per_token = per_token * weights.flatten().to(per_token.dtype)
    return per_token.sum() / labelled.sum().clamp(min=1)


class TokenClassifier(pl.LightningModule):
    """Wraps a Hugging Face token-classification model; logs seqeval metrics per epoch."""

    def __init__(
        self,
        backbone: Callable[..., PreTrainedModel] | None = None,
        labels: LabelSet | Sequence[str] | None = None,
        lr: float = 2e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        lr_schedule: str = "linear",
        lr_restart: bool = False,
        max_grad_norm: float | None = 1.0,
        compile: bool = False,
        cheap_dropout: bool = True,
        freeze_word_embeddings: bool = False,
        backbone_config: dict | None = None,
    ) -> None:
        super().__init__()
        if lr_schedule not in ("linear", "constant"):
            raise ValueError(f"model.lr_schedule must be 'linear' or 'constant', got {lr_schedule!r}")
        if not 0 <= warmup_ratio < 1:
            raise ValueError(f"model.warmup_ratio must be in [0, 1), got {warmup_ratio}")
        if lr <= 0:
            raise ValueError(f"model.lr must be positive, got {lr}")
        self.save_hyperparameters(ignore=["backbone"])
        self.label_set = as_label_set(labels)
        if backbone is None:  # TokenClassifier.load_from_checkpoint: the architecture the checkpoint saved
            if backbone_config is None:
                raise ValueError("TokenClassifier needs a backbone (or the backbone_config a checkpoint holds)")
            backbone = partial(backbone_from_config, config=backbone_config)
        self.model = backbone(labels=self.label_set)
        # saved in checkpoints: load_from_checkpoint rebuilds from it
        self.hparams["backbone_config"] = self.model.config.to_dict()
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps module modes as found
        # compiled, the masks are fused into the graph; these would break it at every dropout
        if cheap_dropout and not compile:
            use_cheap_dropout(self.model)
        if freeze_word_embeddings:
            self.model.get_input_embeddings().requires_grad_(False)
        if compile:  # in place: parameter names and checkpoints stay those of the eager model
            self.model.compile(dynamic=True)
        self.test_metrics: dict | None = None
        self._outputs: list[tuple[Sequence[str], list[str]]] = []

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = token_loss(logits, batch["labels"], batch.get("weights"), batch.get("targets"))
        # the progress bar turns its metrics into Python numbers every step: a host sync on a GPU
        self.log(
            "train/loss", loss, on_step=True, prog_bar=loss.device.type == "cpu", batch_size=len(batch["gold_tags"])
        )
        self.log("train/distilled_share", batch["distilled_share"], on_step=True, batch_size=len(batch["gold_tags"]))
        return loss

    def _eval_step(self, batch: dict) -> None:
        predicted = word_tags(
            self(batch), batch["labels"], [len(g) for g in batch["gold_tags"]], self.label_set.id2label
        )
        self._outputs.extend(zip(batch["gold_tags"], predicted))

    def _eval_metrics(self) -> dict:
        gold, predicted = zip(*self._outputs) if self._outputs else ((), ())
        self._outputs = []
        return ner_metrics(gold, predicted)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        flat = flatten(self._eval_metrics(), "val")
        f1 = flat.pop("val/f1")
        self.log("val/f1", f1, prog_bar=True)
        self.log_dict(flat)
        if dev_f1_checkpoint(self.trainer) is not None and not self.trainer.sanity_checking:
            best = best_score(self.trainer)  # the checkpoint callback takes this round's score after this hook
            self.log("val/f1_best", f1 if best is None else max(best, f1), prog_bar=True)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._eval_metrics()
        self.log_dict(flatten(self.test_metrics, "test"))

    def on_before_optimizer_step(self, optimizer) -> None:
        # clipped here: Lightning's gradient_clip_val refuses fused optimizers
        if self.hparams.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hparams.max_grad_norm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self._trainer is None or self._trainer.state.fn != TrainerFn.FITTING:
            return  # evaluated or loaded for inference: the caller's random state is left alone
        # resumed: a checkpoint written at the end of an epoch holds the generators as the next
        # epoch found them in the run that was never stopped, and nothing draws from them between
        # here and that epoch's first draw (its train DataLoader iterator's base seed)
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])
        else:
            log.warning(
                "the checkpoint holds no random generator states (written before they were saved): "
                "the resumed run draws other dropout masks than the run it continues"
            )

    def _lr_span(self) -> tuple[int, tuple[float, ...]]:
        """Optimiser steps the LR schedule spans and the progress points where it restarts: the
        run plan's (held by the data module), so the LR restarts on the step where the data switches."""
        plan = self.trainer.datamodule.plan
        if not self.trainer.fast_dev_run and self.trainer.estimated_stepping_batches != plan.total_steps:
            log.warning(
                "the trainer will take %s optimiser steps, the run plan %d",
                self.trainer.estimated_stepping_batches,
                plan.total_steps,
            )
        return plan.total_steps, plan.schedule.phase_boundaries() if self.hparams.lr_restart else ()

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                (no_decay if name.endswith(NO_DECAY) else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay, "name": "decay"},
                {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
            ],
            lr=self.hparams.lr,
            fused=True,  # one kernel for all parameters: ~6x faster steps than the foreach default on CPU
        )
        total, phases = self._lr_span()
        warmup, kind = self.hparams.warmup_ratio, self.hparams.lr_schedule
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step / total, phases, warmup, kind)
        )
        # named for LearningRateMonitor (conf/callbacks): train/lr/decay and train/lr/no_decay
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "train/lr"},
        }
