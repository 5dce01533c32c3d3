r"""Blending schedules: the share of distilled (LLM-annotated) examples as a function of progress.

``progress`` is ``step / total_steps`` in ``[0, 1]``. Every schedule maps it to the distilled
share of the batch at that step; the rest of the batch is gold ("original") data.

==============  =====================================================================
schedule        distilled share :math:`s(p)`
==============  =====================================================================
original        :math:`0`
distilled       :math:`1`
sequential      :math:`1` for :math:`p < p_s`, else :math:`0` (``switch`` :math:`p_s`;
                default :math:`n_D |D| / (n_D |D| + n_G |G|)`, see below)
simple_mix      constant :math:`c` (``mix``; default :math:`n_D |D| / (n_D |D| + n_G |G|)`)
linear          :math:`1 - p`
cosine          :math:`\tfrac12 (1 + \cos \pi p)`
sigmoid         :math:`1 / (1 + e^{k (p - m)})` (``steepness`` :math:`k \ge 0`, ``midpoint`` :math:`m`)
power           :math:`(1 - p)^{a}` (``exponent`` :math:`a > 0`)
==============  =====================================================================

The defaults weigh each pool's size by its passes (``data.passes``: :math:`n_D`, :math:`n_G`), so
each pool gets the steps its passes ask for: 3 passes over 4,887 distilled and 20 over 1,000 gold
sentences give 0.423. Every schedule but ``original``, ``distilled`` and ``simple_mix`` takes ``order``:
``distilled_first`` (the formulas above) or ``original_first``, which uses :math:`1 - s(p)`
(gold first, distilled later: the reversed control).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Literal

Order = Literal["distilled_first", "original_first"]
_GRID = [i / 1000 for i in range(1001)]


def _check_unit(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"schedule.{name} must be in [0, 1], got {value}")


def _check_order(order: str) -> None:
    if order not in ("distilled_first", "original_first"):
        raise ValueError(f"schedule.order must be 'distilled_first' or 'original_first', got {order!r}")


@dataclass(frozen=True)
class Schedule(ABC):
    """Distilled share as a function of training progress."""

    @abstractmethod
    def share(self, progress: float) -> float:
        """Distilled share in ``[0, 1]`` at ``progress`` in ``[0, 1]``."""

    def __call__(self, progress: float) -> float:
        return min(1.0, max(0.0, self.share(min(1.0, max(0.0, progress)))))

    def resolve(
        self, n_original: int, n_distilled: int, passes_original: float = 1.0, passes_distilled: float = 1.0
    ) -> Schedule:
        """Fill defaults that depend on the pools' sizes and passes (``data.passes``); schedules
        without such defaults return self."""
        return self

    def phase_boundaries(self) -> tuple[float, ...]:
        """Progress points where the data regime switches (an LR restart may happen there)."""
        return ()

    @property
    def uses_distilled(self) -> bool:
        """Whether any step draws distilled examples (before :meth:`resolve` too)."""
        return any(self(p) > 0 for p in _GRID)

    @property
    def uses_original(self) -> bool:
        """Whether any step draws gold examples (before :meth:`resolve` too)."""
        return any(self(p) < 1 for p in _GRID)


@dataclass(frozen=True)
class _Ordered(Schedule):
    order: Order = "distilled_first"

    def __post_init__(self) -> None:
        _check_order(self.order)

    @abstractmethod
    def decay(self, progress: float) -> float:
        """The distilled-first curve, from 1 (all distilled) towards 0 (all gold)."""

    def share(self, progress: float) -> float:
        value = self.decay(progress)
        return value if self.order == "distilled_first" else 1.0 - value


@dataclass(frozen=True)
class Original(Schedule):
    """Gold data only: ``s(p) = 0``."""

    def share(self, progress: float) -> float:
        return 0.0


@dataclass(frozen=True)
class Distilled(Schedule):
    """Distilled data only: ``s(p) = 1``."""

    def share(self, progress: float) -> float:
        return 1.0


@dataclass(frozen=True)
class Sequential(_Ordered):
    """All distilled until ``switch``, then all gold (``original_first``: the reverse).

    ``switch=None`` puts the switch where the first pool has had the steps its passes ask for:
    ``resolve`` weighs the sizes by the passes, so ``n_first |first| / (n_D |D| + n_G |G|)``.
    """

    switch: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_unit("switch", self.switch)

    def _switch(self) -> float:
        if self.switch is None:
            raise ValueError("sequential: switch is unset; call resolve(...) first")
        return self.switch

    def decay(self, progress: float) -> float:
        return 1.0 if progress < self._switch() else 0.0

    def resolve(
        self, n_original: int, n_distilled: int, passes_original: float = 1.0, passes_distilled: float = 1.0
    ) -> Schedule:
        if self.switch is not None:
            return self
        original, distilled = passes_original * n_original, passes_distilled * n_distilled
        first = distilled if self.order == "distilled_first" else original
        return replace(self, switch=first / max(1, original + distilled))

    def phase_boundaries(self) -> tuple[float, ...]:
        return (self._switch(),)

    @property
    def uses_distilled(self) -> bool:
        return self.switch is None or super().uses_distilled  # unset: resolve puts the switch between two pools

    @property
    def uses_original(self) -> bool:
        return self.switch is None or super().uses_original


@dataclass(frozen=True)
class SimpleMix(Schedule):
    """A constant share ``c`` (``mix``). ``None``: the pools' size ratio, pass-weighted
    ``n_D |D| / (n_D |D| + n_G |G|)`` (``weigh_passes``, the default) or plain ``|D| / (|D| + |G|)``,
    every sentence equally often (the paper's ALL)."""

    mix: float | None = None
    weigh_passes: bool = True

    def __post_init__(self) -> None:
        _check_unit("mix", self.mix)

    def share(self, progress: float) -> float:
        if self.mix is None:
            raise ValueError("simple_mix: mix is unset; call resolve(...) first")
        return self.mix

    def resolve(
        self, n_original: int, n_distilled: int, passes_original: float = 1.0, passes_distilled: float = 1.0
    ) -> Schedule:
        if self.mix is not None:
            return self
        if self.weigh_passes:
            n_original, n_distilled = passes_original * n_original, passes_distilled * n_distilled
        return replace(self, mix=n_distilled / max(1, n_original + n_distilled))

    @property
    def uses_distilled(self) -> bool:
        return self.mix is None or super().uses_distilled  # unset: resolve mixes two pools

    @property
    def uses_original(self) -> bool:
        return self.mix is None or super().uses_original


@dataclass(frozen=True)
class Linear(_Ordered):
    """``s(p) = 1 - p``."""

    def decay(self, progress: float) -> float:
        return 1.0 - progress


@dataclass(frozen=True)
class Cosine(_Ordered):
    """``s(p) = (1 + cos(pi p)) / 2``."""

    def decay(self, progress: float) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Sigmoid(_Ordered):
    """``s(p) = 1 / (1 + exp(steepness * (p - midpoint)))``: mostly distilled early, gold late."""

    steepness: float = 10.0
    midpoint: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steepness < 0:
            raise ValueError(f"schedule.steepness must be >= 0, got {self.steepness}")
        _check_unit("midpoint", self.midpoint)

    def decay(self, progress: float) -> float:
        z = self.steepness * (progress - self.midpoint)
        return 1.0 / (1.0 + math.exp(z)) if z < 700 else 0.0


@dataclass(frozen=True)
class Power(_Ordered):
    """Power decay: ``s(p) = (1 - p) ** exponent``."""

    exponent: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.exponent <= 0:
            raise ValueError(f"schedule.exponent must be > 0, got {self.exponent}")

    def decay(self, progress: float) -> float:
        return (1.0 - progress) ** self.exponent
