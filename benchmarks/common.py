"""Shared pieces of the benchmarks: composed configs, the machine's description, result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from nerdistill.runtime import choose_precision, cpu_bf16

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATA_DIR = Path(os.environ.get("NERDISTILL_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
RESULTS = ROOT / "benchmarks" / "results"
# overrides shared by the benchmarks' variants
TRAINED_EMBEDDINGS = ["model.module.freeze_word_embeddings=false"]  # every parameter trained
# environment variables that limit the instruction sets oneDNN, MKL and ATen use: a CPU without
# native bf16 (or without AVX-512) reproduced on one that has it
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")
SLOW_PATH = ["trainer.precision=32-true", "data.sort_window=0", *TRAINED_EMBEDDINGS]  # fp32, random batches


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The config ``python -m nerdistill.train <overrides>`` would run, writing under ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"paths.data_dir={DATA_DIR}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def machine() -> dict:
    """CPU model, core count, torch threads, AMX/AVX512-BF16 support, what ``precision: auto``
    resolves to here (and any ISA limits in the environment), the CUDA GPU if torch sees one, and the
    git commit."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    # "-dirty": uncommitted changes
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "native_bf16": cpu_bf16()[0],
        "precision_auto": choose_precision("auto", "cpu").precision,
        "isa_limits": {k: os.environ[k] for k in ISA_LIMITS if k in os.environ},
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def write_result(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the machine description beside the numbers."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def run_isolated(module: str, args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``python -m <module> <args>`` in a fresh process (no allocator state or warm caches
    shared between measurements), with ``env`` added to the environment, and return the JSON it
    prints after ``RESULT ``."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"python -m {module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])
