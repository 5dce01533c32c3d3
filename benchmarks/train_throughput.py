"""Training throughput: nerdistill's loop versus the Hugging Face Trainer on the same model, data,
batch size and machine, back to back in one process.

    python -m benchmarks.train_throughput                 # minilm, 2,000 CoNLL train sentences, batch 32
    python -m benchmarks.train_throughput --sentences 4000 --variants nerdistill,hf_default
    python -m benchmarks.train_throughput --trainer gpu    # on a CUDA GPU: ours with trainer=gpu, HF on the GPU

The default variants follow the device: the HF ``bf16=True`` ones only where it computes bf16
natively (elsewhere they measure an emulation nobody would choose). ``nerdistill`` runs the
defaults, ``precision: auto`` included; the record says what it resolved to.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from benchmarks.common import SLOW_PATH, TRAINED_EMBEDDINGS, compose_train, run_isolated, write_result
from benchmarks.hf_baseline import hf_train, token_count
from nerdistill.allocator import keep_freed_memory
from nerdistill.runtime import cpu_bf16
from nerdistill.student.models import resolve_name_or_path
from nerdistill.train import build, read_data


class EpochTimer(pl.Callback):
    """Wall time of the training epochs (sampler, collation, forward, backward, optimiser, logging)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._synchronize()
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._synchronize()
        self.seconds += time.perf_counter() - self._start

    @staticmethod
    def _synchronize() -> None:
        """A GPU runs behind the Python that queues its work: wait for it."""
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()


def nerdistill_fit(overrides: list[str], workdir: Path, callbacks: list[pl.Callback] = ()) -> tuple[float, object]:
    """Train as ``python -m nerdistill.train <overrides>`` does, without validation or checkpoints;
    returns the epochs' wall time and the datamodule."""
    cfg = compose_train(
        ["logger=none", "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false", *overrides], workdir
    )
    pl.seed_everything(cfg.seed)
    timer = EpochTimer()
    run = build(cfg, read_data(cfg), callbacks=[timer, *callbacks], logger=False, enable_checkpointing=False)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    return timer.seconds, run.datamodule


OURS = {
    # the defaults: precision auto, length-aware batches, cheap dropout masks, frozen word embeddings, glibc keeps
    # freed memory
    "nerdistill": [],
    "nerdistill_torch_dropout": ["model.module.cheap_dropout=false"],  # PyTorch's CPU dropout masks
    "nerdistill_fp32_random": SLOW_PATH,
    "nerdistill_trained_embeddings": TRAINED_EMBEDDINGS,
    "nerdistill_compile": ["model.module.compile=true"],  # not in the default list: compiling takes minutes
}
HF = {
    "hf_default": dict(bf16=False, group_by_length=False),
    "hf_group_by_length": dict(bf16=False, group_by_length=True),
    "hf_bf16": dict(bf16=True, group_by_length=False),
    "hf_group_by_length_bf16": dict(bf16=True, group_by_length=True),
}


def default_variants(trainer: str = "default") -> list[str]:
    """Every variant but compile; the HF bf16 ones only where the device (the CPU, or the GPU for
    ``trainer=gpu``) computes bf16 natively."""
    native = torch.cuda.is_available() and torch.cuda.is_bf16_supported() if trainer == "gpu" else cpu_bf16()[0]
    return [v for v in [*OURS, *HF] if v != "nerdistill_compile" and (native or not HF.get(v, {}).get("bf16"))]


def run_variant(variant: str, base: list[str], batch_size: int, workdir: Path) -> dict:
    """Train one variant for one pass over the sentences; its wall time and throughput."""
    if variant in OURS:
        keep_freed_memory()  # as ``python -m nerdistill.train`` does
        seconds, datamodule = nerdistill_fit([*base, *OURS[variant]], workdir)
    else:
        cfg = compose_train(base, workdir)
        datamodule = build(cfg, read_data(cfg), logger=False, enable_checkpointing=False).datamodule
        datamodule.setup()
        model_path = resolve_name_or_path(cfg.model.name_or_path)
        hf_train(
            model_path,
            datamodule.tokenizer,
            datamodule.labels,
            datamodule.datasets["train"].items[:256],
            workdir / "warmup",
            epochs=1,
            batch_size=batch_size,
            **HF[variant],
        )
        _, seconds = hf_train(
            model_path,
            datamodule.tokenizer,
            datamodule.labels,
            datamodule.datasets["train"].items,
            workdir / variant,
            epochs=1,
            batch_size=batch_size,
            **HF[variant],
        )
    items = datamodule.datasets["train"].items
    return {
        "seconds": round(seconds, 2),
        "sentences_per_s": round(len(items) / seconds, 1),
        "tokens_per_s": round(token_count(items) / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sentences", type=int, default=2000, help="CoNLL train sentences (a seeded sample), one pass each"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--trainer", default="default", help="conf/trainer for ours: default (CPU) or gpu")
    parser.add_argument("--variants", help="comma-separated; default: every variant the device suits")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant, interleaved; the median is reported")
    parser.add_argument("--name", default="train_throughput")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant in this process
    args = parser.parse_args()
    args.variants = args.variants or ",".join(default_variants(args.trainer))
    base = [
        f"trainer={args.trainer}",
        f"model={args.model}",
        "schedule=original",
        f"data.gold_budget={args.sentences}",
        "data.passes.original=1",
        f"data.batch_size={args.batch_size}",
        "trainer.max_epochs=1",
    ]
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            if args.one in OURS:  # first-use costs (oneDNN kernels, file cache) paid before timing
                nerdistill_fit([*base, "data.gold_budget=256"], Path(tmp))
            print("RESULT " + json.dumps(run_variant(args.one, base, args.batch_size, Path(tmp))), flush=True)
        return

    runs: dict[str, list[dict]] = {v: [] for v in args.variants.split(",")}
    for repeat in range(args.repeats):
        for variant in runs:
            runs[variant].append(
                run_isolated(
                    "benchmarks.train_throughput",
                    [
                        "--one",
                        variant,
                        "--sentences",
                        str(args.sentences),
                        "--batch-size",
                        str(args.batch_size),
                        "--model",
                        args.model,
                        "--trainer",
                        args.trainer,
                    ],
                )
            )
            print(f"[{repeat + 1}/{args.repeats}] {variant}: {runs[variant][-1]}", flush=True)
    results = {
        v: {k: round(statistics.median(r[k] for r in found), 2) for k in found[0]} | {"runs": found}
        for v, found in runs.items()
    }
    ratios = {}
    for name, ref in (
        ("vs_hf_default", "hf_default"),
        ("vs_hf_group_by_length", "hf_group_by_length"),
        ("vs_hf_group_by_length_bf16", "hf_group_by_length_bf16"),
    ):
        if "nerdistill" in results and ref in results:
            ratios[name] = round(results["nerdistill"]["sentences_per_s"] / results[ref]["sentences_per_s"], 2)
    print("ratios", ratios)
    command = (
        f"python -m benchmarks.train_throughput --sentences {args.sentences} --batch-size {args.batch_size} "
        f"--model {args.model} --trainer {args.trainer} --repeats {args.repeats} --variants {args.variants} "
        f"--name {args.name}"
    )
    write_result(
        args.name,
        {
            "command": command,
            "sentences": args.sentences,
            "batch_size": args.batch_size,
            "model": args.model,
            "trainer": args.trainer,
            "results": results,
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
