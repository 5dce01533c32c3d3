"""Scoring a selection pool against evaluating the test split, per sentence and per word: the cost
``python -m nerdistill.select`` adds to a round of annotation selection (issue 28's goal: no slower
per sentence than the test set's evaluation).

    python -m benchmarks.score_throughput --model-dir <a training run dir, e.g. a loop's round_0/original>

One process, one loaded ``Tagger`` (batch 128, as ``select`` and ``evaluate`` use), the three jobs
interleaved ``--repeats`` times after a warm-up, so drift on a shared machine falls on all of them:

- ``evaluate_test``: ``Tagger.tag`` over the CoNLL test split (3,453 sentences), what
  ``nerdistill.evaluate`` runs;
- ``score_test``: ``selection.job.score`` with ``--strategy`` over the same sentences (tags,
  probabilities and the strategy's scores): the scoring path's own cost, sentence for sentence;
- ``score_pool``: the same over the distinct sentences of CoNLL train (the pool ``select`` ranks,
  before a seed set is left out).

Each includes tokenising its sentences, as both commands do.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from benchmarks.common import DATA_DIR, write_result
from nerdistill.allocator import keep_freed_memory
from nerdistill.data.conll import read_conll
from nerdistill.selection.job import Settings, score
from nerdistill.selection.pool import leave_out
from nerdistill.student.inference import Tagger


def timed(job: Callable[[], object]) -> float:
    started = time.perf_counter()
    job()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a training run dir or an exported model dir")
    parser.add_argument("--strategy", default="mnlp", help="a strategy scored from one pass (not bald)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="score_throughput")
    args = parser.parse_args()
    keep_freed_memory()  # as the entry points do
    tagger = Tagger(args.model_dir, batch_size=args.batch_size)
    settings = Settings(strategy=args.strategy)
    if settings.needs != "probabilities":
        parser.error(f"--strategy {args.strategy}: needs {settings.needs}; pick one scored from probabilities")
    test = read_conll(DATA_DIR / "conll2003" / "test.txt", tagger.labels)
    pool = leave_out(read_conll(DATA_DIR / "conll2003" / "train.txt", tagger.labels), {}).candidates
    jobs = {
        "evaluate_test": (test, lambda: tagger.tag([s.tokens for s in test])),
        "score_test": (test, lambda: score(settings, test, tagger, None)),
        "score_pool": (pool, lambda: score(settings, pool, tagger, None)),
    }
    tagger.tag([s.tokens for s in test[:256]])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in jobs}
    for repeat in range(args.repeats):
        for name, (_, job) in jobs.items():
            seconds[name].append(round(timed(job), 2))
            print(f"[{repeat + 1}/{args.repeats}] {name}: {seconds[name][-1]} s", flush=True)
    results = {}
    for name, (sentences, _) in jobs.items():
        median = statistics.median(seconds[name])
        words = sum(len(s.tokens) for s in sentences)
        results[name] = {
            "sentences": len(sentences),
            "words": words,
            "seconds_median": median,
            "ms_per_sentence": round(1000 * median / len(sentences), 3),
            "ms_per_word": round(1000 * median / words, 4),
            "runs": seconds[name],
        }
    base = results["evaluate_test"]
    ratios = {
        f"{name} / evaluate_test ({unit})": round(results[name][f"ms_per_{unit}"] / base[f"ms_per_{unit}"], 3)
        for name in ("score_test", "score_pool")
        for unit in ("sentence", "word")
    }
    print(ratios)
    write_result(
        args.name,
        {
            "command": (
                f"python -m benchmarks.score_throughput --model-dir {args.model_dir} --strategy {args.strategy} "
                f"--batch-size {args.batch_size} --repeats {args.repeats} --name {args.name}"
            ),
            "precision": tagger.precision,
            "results": results,
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
