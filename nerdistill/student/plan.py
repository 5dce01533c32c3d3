"""The run plan: a run's optimiser steps and where its phases fall, made once before fitting
(``nerdistill.train.build``) and held by the data module, where the sampler, the LR schedule and
the distilled-share log read it, so all three count the same steps (with gradient accumulation,
``max_steps`` or several ranks too)."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

from nerdistill.student.schedules import Schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """Steps are optimiser steps; one step takes ``accumulate`` batches of ``batch_size`` examples
    on each of ``world_size`` ranks. Training stops after ``total_steps``; the schedule's progress
    at step ``t`` is ``t / total_steps``."""

    schedule: Schedule
    n_original: int
    n_distilled: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    total_steps: int
    world_size: int = 1
    accumulate: int = 1

    @property
    def examples_per_step(self) -> int:
        return self.batch_size * self.world_size * self.accumulate

    @property
    def batches_per_epoch(self) -> int:
        """Batches one rank's sampler yields per epoch."""
        return self.steps_per_epoch * self.accumulate

    def progress(self, step: int) -> float:
        return step / self.total_steps

    def share(self, step: int) -> float:
        """The schedule's distilled share at optimiser ``step``."""
        return self.schedule(self.progress(step))

    def phase_steps(self) -> tuple[int, ...]:
        """The first step of every phase after the first (where sequential switches pools and
        the LR restarts): the first step whose progress reaches the boundary."""
        return tuple(math.ceil(boundary * self.total_steps - 1e-9) for boundary in self.schedule.phase_boundaries())

    def as_dict(self) -> dict:
        """What ``plan.json`` in the run dir holds."""
        return asdict(self) | {"schedule": str(self.schedule), "phase_steps": list(self.phase_steps())}


def make_plan(
    schedule: Schedule,
    n_original: int,
    n_distilled: int,
    examples: float,
    batch_size: int,
    *,
    world_size: int = 1,
    accumulate: int = 1,
    max_epochs: int | None = None,
    max_steps: int | None = None,
    steps_per_epoch: int | None = None,
) -> RunPlan:
    """Plan a run that draws ``examples`` training examples (the pass-weighted budget) cut into
    ``max_epochs`` epochs, as Lightning will run it: ``max_steps`` (when set) ends training there,
    or at the end of ``max_epochs`` if that comes first. ``steps_per_epoch`` fixes the epoch length
    instead of the budget. ``max_epochs`` of ``None`` or ``-1`` (unbounded) needs ``max_steps``."""
    if batch_size < 1:
        raise ValueError(f"data.batch_size and data.eval_batch_size must be positive, got data.batch_size={batch_size}")
    if accumulate < 1 or world_size < 1:
        raise ValueError(
            f"world size ({world_size}) and trainer.accumulate_grad_batches ({accumulate}) must be positive"
        )
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"data.steps_per_epoch must be positive or null, got {steps_per_epoch}")
    bounded_epochs = max_epochs if max_epochs is not None and max_epochs > 0 else None
    bounded_steps = max_steps if max_steps is not None and max_steps > 0 else None
    if bounded_epochs is None and bounded_steps is None:
        raise ValueError(
            "trainer.max_epochs is unbounded (-1 or null): set trainer.max_steps, or a positive trainer.max_epochs"
        )
    if steps_per_epoch is None:
        steps_per_epoch = max(1, math.ceil(examples / (batch_size * world_size * accumulate) / (bounded_epochs or 1)))
    total = steps_per_epoch * bounded_epochs if bounded_epochs else bounded_steps
    if bounded_steps is not None:
        if bounded_steps > total:
            log.warning(
                "trainer.max_steps=%d is beyond trainer.max_epochs=%d epochs of %d steps: "
                "training stops after %d steps (set trainer.max_epochs=-1 to train by steps)",
                bounded_steps,
                bounded_epochs,
                steps_per_epoch,
                total,
            )
        total = min(total, bounded_steps)
    return RunPlan(
        schedule=schedule,
        n_original=n_original,
        n_distilled=n_distilled,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        epochs=math.ceil(total / steps_per_epoch),
        total_steps=total,
        world_size=world_size,
        accumulate=accumulate,
    )
