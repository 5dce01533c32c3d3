"""Process settings the entry points share: the numeric precision, chosen from the hardware, and
PyTorch's threads.

``precision: auto`` resolves to ``bf16-mixed`` where bf16 is computed natively (a CUDA device of
compute capability 8.0 or newer; a CPU with AMX-BF16 or AVX512-BF16 on x86, BF16 on Arm) and to
``32-true`` everywhere else: a CPU without native bf16 emulates it, measured 2.6-5.6x slower than
fp32 per matmul with AVX-512 and 45-64x with AVX2 (``python -m benchmarks.bf16_matmul``). A precision
given explicitly wins; bf16 forced onto such a CPU runs, with a warning.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from nerdistill.allocator import keep_freed_memory

log = logging.getLogger(__name__)

# what Lightning's Trainer accepts, plus ``auto``
PRECISIONS = (
    "auto",
    "32-true",
    "32",
    "bf16-mixed",
    "bf16-true",
    "bf16",
    "16-mixed",
    "16-true",
    "16",
    "64-true",
    "64",
    "transformer-engine",
    "transformer-engine-float16",
)
# oneDNN ISA limits (``ONEDNN_MAX_CPU_ISA``) below AVX512_CORE_BF16: bf16 is emulated under them
NO_BF16_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@dataclass(frozen=True)
class Choice:
    """A resolved precision and why it was chosen."""

    precision: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.precision.startswith("bf16")


def cpu_capabilities() -> dict:
    """The CPU's features as PyTorch detects them (``torch.cpu.get_capabilities``, PyTorch 2.8+);
    on older PyTorch, the flags ``/proc/cpuinfo`` lists (Linux)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return dict(get())
    cpuinfo = Path("/proc/cpuinfo")
    flags: set[str] = set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("flags", "features")):
                flags.update(line.split(":", 1)[1].split())
    return {flag: True for flag in flags} | {"architecture": os.uname().machine if hasattr(os, "uname") else ""}


def cpu_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and the evidence."""
    caps = cpu_capabilities()
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    native = [name for name in ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16") if caps.get(name)]
    if native and limit in NO_BF16_ISAS:
        return False, f"ONEDNN_MAX_CPU_ISA={limit} keeps oneDNN from this CPU's {', '.join(native)}"
    if native:
        return True, f"this CPU has native bf16 ({', '.join(native)})"
    return (
        False,
        "this CPU has no native bf16 (no AMX-BF16 or AVX512-BF16 on x86, no BF16 on Arm): "
        "bf16 would be emulated, slower than fp32",
    )


def device_type(accelerator: str | None) -> str:
    """``cpu``, ``cuda`` or another torch device type for a Lightning ``accelerator`` setting."""
    accelerator = str(accelerator or "auto").lower()
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return accelerator


def choose_precision(requested: str | int, device: str, key: str = "precision") -> Choice:
    """Resolve ``requested`` (``auto`` or a Lightning precision) for a device type; no logging.

    Raises ``ValueError`` naming ``key`` for a name that is not a precision.
    """
    name = str(requested)
    if name not in PRECISIONS:
        raise ValueError(f"{key}={name!r} is not a precision: expected one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return Choice(name, f"{key}={name} given explicitly")
    if device == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return Choice("bf16-mixed", f"{torch.cuda.get_device_name()} computes bf16 natively")
        return Choice("32-true", "no CUDA device with native bf16 (compute capability 8.0 or newer)")
    if device == "cpu":
        native, why = cpu_bf16()
        return Choice("bf16-mixed" if native else "32-true", why)
    return Choice("32-true", f"bf16 autocast is only chosen on CPU and CUDA, not {device}")


def resolve_precision(requested: str | int, device: str, key: str = "precision") -> Choice:
    """:func:`choose_precision`, logged; warns when bf16 is forced onto a CPU that would emulate it."""
    choice = choose_precision(requested, device, key)
    log.info("precision %s (%s=%s): %s", choice.precision, key, requested, choice.reason)
    if device == "cpu" and str(requested) != "auto" and choice.bf16:
        native, why = cpu_bf16()
        if not native:
            warnings.warn(
                f"{key}={requested} on a CPU without native bf16 ({why}): every bf16 matmul is emulated, "
                "measured 2.6-5.6x (AVX-512) to 45-64x (AVX2) slower than fp32. "
                f"Set {key}=auto or {key}=32-true to train in fp32.",
                stacklevel=2,
            )
    return choice


def configure_process(settings: Mapping | None) -> None:
    """Apply the ``runtime`` config node (conf/runtime/): glibc keeps freed memory, PyTorch's threads."""
    settings = settings or {}
    if settings.get("keep_freed_memory", True):
        keep_freed_memory()
    set_torch_threads(settings.get("torch_threads"))


def set_torch_threads(setting: int | str | None) -> None:
    """``auto``: under Hydra's joblib launcher, each of its ``n_jobs`` parallel jobs gets an equal
    share of the cores (PyTorch would otherwise give every job all of them); an int sets it."""
    if setting == "auto":
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher if HydraConfig.initialized() else {}
        n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")).lower() else None
        setting = max(1, (os.cpu_count() or 1) // n_jobs) if n_jobs and n_jobs > 0 else None
    if setting:
        torch.set_num_threads(int(setting))
        log.info("PyTorch uses %d threads", torch.get_num_threads())
