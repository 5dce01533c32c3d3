"""Evaluation and prediction throughput of a trained student: length-sorted versus unsorted batches,
bf16 autocast versus fp32 versus int8 dynamic quantisation of the linear layers, through the
``Tagger`` that ``nerdistill.evaluate`` and ``nerdistill.predict`` use.

    python -m benchmarks.eval_throughput --model-dir benchmarks/runs/time_to_quality/gold1000_fast_s1

The bf16 variants run by default only on a CPU with native bf16.

Each variant runs in a fresh process. Test: the CoNLL test split (3,453 sentences), scored with
seqeval (sorted and unsorted must give the same F1). Predict: the first ``--predict-sentences``
sentences of BBC News raw text.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time

from benchmarks.common import DATA_DIR, run_isolated, write_result
from nerdistill.allocator import keep_freed_memory
from nerdistill.data.conll import read_conll
from nerdistill.data.text import sentences_from_text
from nerdistill.metrics import ner_metrics
from nerdistill.runtime import cpu_bf16
from nerdistill.student.inference import Tagger

# name: (sorted batches, precision, quantize)
VARIANTS = {
    "sorted_bf16": (True, "bf16-mixed", None),
    "sorted_fp32": (True, "32-true", None),
    "sorted_int8": (True, "32-true", "int8"),
    "unsorted_bf16": (False, "bf16-mixed", None),
    "unsorted_fp32": (False, "32-true", None),
}


def bbc_sentences(limit: int) -> list[list[str]]:
    sentences: list[list[str]] = []
    with open(DATA_DIR / "bbc" / "bbc-text.csv", newline="") as f:
        for row in csv.DictReader(f):
            sentences += sentences_from_text(row["text"])
            if len(sentences) >= limit:
                break
    return sentences[:limit]


def run_one(variant: str, model_dir: str, batch_size: int, predict_sentences: int) -> dict:
    keep_freed_memory()  # as the train, evaluate and predict entry points do
    sort, precision, quantize = VARIANTS[variant]
    tagger = Tagger(model_dir, batch_size=batch_size, precision=precision, quantize=quantize)
    test = read_conll(DATA_DIR / "conll2003" / "test.txt", tagger.labels)
    bbc = bbc_sentences(predict_sentences)
    tagger.tag([s.tokens for s in test[:256]], sort_by_length=sort)  # warm-up
    started = time.perf_counter()
    predicted = tagger.tag([s.tokens for s in test], sort_by_length=sort)
    test_s = time.perf_counter() - started
    started = time.perf_counter()
    tagger.tag(bbc, sort_by_length=sort)
    predict_s = time.perf_counter() - started
    return {
        "test_s": round(test_s, 2),
        "test_sentences_per_s": round(len(test) / test_s, 1),
        "test_f1": ner_metrics([s.tags for s in test], predicted)["micro"]["f1"],
        "predict_s": round(predict_s, 2),
        "predict_sentences_per_s": round(len(bbc) / predict_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a training run dir or an exported model dir")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--predict-sentences", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if cpu_bf16()[0] or "bf16" not in v))
    parser.add_argument("--name", default="eval_throughput")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(
            "RESULT " + json.dumps(run_one(args.one, args.model_dir, args.batch_size, args.predict_sentences)),
            flush=True,
        )
        return
    runs: dict[str, list[dict]] = {v: [] for v in args.variants.split(",")}
    for repeat in range(args.repeats):
        for variant in runs:
            runs[variant].append(
                run_isolated(
                    "benchmarks.eval_throughput",
                    [
                        "--one",
                        variant,
                        "--model-dir",
                        args.model_dir,
                        "--batch-size",
                        str(args.batch_size),
                        "--predict-sentences",
                        str(args.predict_sentences),
                    ],
                )
            )
            print(f"[{repeat + 1}/{args.repeats}] {variant}: {runs[variant][-1]}", flush=True)
    results = {
        v: {k: round(statistics.median(r[k] for r in found), 4) for k in found[0]} | {"runs": found}
        for v, found in runs.items()
    }
    ratios = {}
    for base in ("unsorted_fp32", "sorted_fp32"):
        if base in results:
            ratios |= {
                f"{v} vs {base} ({kind})": round(results[base][f"{kind}_s"] / results[v][f"{kind}_s"], 2)
                for v in results
                if v != base
                for kind in ("test", "predict")
            }
    if "sorted_int8" in results and "sorted_fp32" in results:
        ratios["sorted_int8 F1 - sorted_fp32 F1 (points)"] = round(
            100 * (results["sorted_int8"]["test_f1"] - results["sorted_fp32"]["test_f1"]), 2
        )
    pairs = [
        (f"sorted_{p}", f"unsorted_{p}")
        for p in ("bf16", "fp32")
        if f"sorted_{p}" in results and f"unsorted_{p}" in results
    ]
    same = all(round(results[a]["test_f1"], 6) == round(results[b]["test_f1"], 6) for a, b in pairs)
    print("ratios", ratios, "sorted F1 == unsorted F1:", same)
    command = (
        f"python -m benchmarks.eval_throughput --model-dir {args.model_dir} --batch-size {args.batch_size} "
        f"--predict-sentences {args.predict_sentences} --repeats {args.repeats} --variants {args.variants} "
        f"--name {args.name}"
    )
    write_result(
        args.name,
        {
            "command": command,
            "test_sentences": 3453,
            "predict_sentences": args.predict_sentences,
            "results": results,
            "ratios": ratios,
            "sorted_equals_unsorted_f1": same,
        },
    )


if __name__ == "__main__":
    main()
