"""``teacher=local``'s batched generation: CPU seconds per answer of SmolLM2-135M-Instruct, one call at
a time against calls in flight together (``teacher.local.batch_size``), with the standard and CoT
prompts (``--examples knn``: each sentence's nearest gold sentences as its examples, so calls share only
the system message; ``knn+spans``: and answers held to a JSON schema of the sentence's own spans by
constrained decoding), and whether every batch size gives the answers of one at a time; with ``--dtypes
float32,bfloat16``, the same in each weight dtype (``teacher.local.dtype``), and how many answers bf16
shares with fp32.

    python -m benchmarks.local_batch                 # ~15 min on one core of a 2-core Xeon
    python -m benchmarks.local_batch --sentences 8 --max-tokens 64 --batch-sizes 1,8 --dtypes float32,bfloat16

Each (prompt, batch size) runs in a fresh process with one torch thread: the model loads, the first
call fills the prompt prefix's KV cache (not counted), then ``--sentences`` CoNLL train sentences are
asked at once, greedy, ``--max-tokens`` each; the process's CPU seconds over those calls, per answer,
are reported. With ``max_tokens`` fixed and a small model looping to the limit, rows of a batch run to
about the same length, as they do in the phase 1 job.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time

from benchmarks.common import CONF, DATA_DIR, run_isolated, write_result


def measure(
    prompt_name: str, batch_size: int, sentences: int, max_tokens: int, dtype: str, variant: str = "random"
) -> None:
    """One variant, in this process: prints ``RESULT {json}``."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from nerdistill.data.labels import LabelSet
    from nerdistill.teacher.local import Generation, LocalSettings, LocalTeacher

    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        # knn: each sentence's nearest of the student's 1,000 gold sentences (prompt.examples_budget), as the
        # phase 1 table has them; e.g. knn+spans: nearest-neighbour examples, answers held to the sentence's spans
        examples, *options = variant.split("+")
        knn = (
            [
                f"prompt.examples={examples}",
                "prompt.examples_budget=1000",
                f"prompt.embeddings_cache={CONF.parent / '.cache' / 'embeddings'}",
            ]
            if examples == "knn"
            else []
        )
        spans = ["prompt.structured=true", "prompt.structured_spans=true"] if "spans" in options else []
        cfg = compose(
            "annotate", overrides=[f"paths.data_dir={DATA_DIR}", f"prompt={prompt_name}", "input.n=200", *knn, *spans]
        )
    labels = LabelSet(tuple(cfg.labels))
    chosen = instantiate(cfg.input).load(labels)[:sentences]
    prompt = instantiate(cfg.prompt).setup(labels)
    prompt.fit(chosen)
    teacher = LocalTeacher(
        LocalSettings(
            convert_dir=str(CONF.parent / ".cache" / "local_models"), batch_size=batch_size, dtype=dtype, device="cpu"
        )
    )
    rendered = [teacher.loaded.render(prompt.messages(s)) for s in chosen]
    _, prefix, opening = rendered[0]
    # what every call of the job shares, computed once per job: not measured
    teacher.generator.prefix_cache((prefix or [])[:opening] if examples == "knn" else prefix or [])
    schemas = [prompt.response_format(s)["json_schema"]["schema"] if prompt.structured else None for s in chosen]
    generations = [
        Generation(ids, prefix, opening, max_tokens, 0.0, 1.0, None, False, schema)
        for (ids, prefix, opening), schema in zip(rendered, schemas)
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=teacher.generator.submit, args=(g,)) for g in generations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    answers = [g.result.result()[0] for g in generations]
    teacher.close()
    tokens = sum(len(a) for a in answers)
    print(
        "RESULT "
        + json.dumps(
            {
                "prompt": prompt_name,
                "variant": variant,
                "dtype": dtype,
                "batch_size": batch_size,
                "prompt_tokens": [len(ids) for ids, _, _ in rendered],
                "prefix_tokens": len(prefix or []) if examples == "random" else opening,
                "completion_tokens": tokens,
                "cpu_s": round(cpu, 2),
                "wall_s": round(wall, 2),
                "cpu_s_per_answer": round(cpu / len(answers), 2),
                "completion_tokens_per_cpu_s": round(tokens / cpu, 2),
                "batches": teacher.generator.stats["batches"],
                "answers": answers,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", default="standard,cot")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--sentences", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--dtypes", default="float32", help="weight dtypes (teacher.local.dtype), comma-separated")
    parser.add_argument(
        "--examples",
        default="random",
        help=(
            "prompt variants, comma-separated: random, knn (each sentence's nearest of 1,000 gold), "
            "knn+spans (and answers held to the sentence's spans)"
        ),
    )
    parser.add_argument("--name", default="local_batch")
    parser.add_argument(
        "--measure", nargs=4, metavar=("PROMPT", "BATCH_SIZE", "DTYPE", "EXAMPLES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        measure(
            args.measure[0], int(args.measure[1]), args.sentences, args.max_tokens, args.measure[2], args.measure[3]
        )
        return
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    dtypes = args.dtypes.split(",")
    rows = []
    for prompt_name, examples in itertools.product(args.prompts.split(","), args.examples.split(",")):
        reference: list | None = None  # the first dtype's answers one at a time (its first batch size)
        for dtype in dtypes:
            first: dict | None = None  # this dtype's first batch size's row, with its answers
            for size in sizes:
                row = run_isolated(
                    "benchmarks.local_batch",
                    [
                        "--measure",
                        prompt_name,
                        str(size),
                        dtype,
                        examples,
                        "--sentences",
                        str(args.sentences),
                        "--max-tokens",
                        str(args.max_tokens),
                    ],
                )
                answers = row.pop("answers")
                first = first or {**row, "answers": answers}
                reference = reference or answers
                row["same_answers_as_first"] = answers == first["answers"]
                row["answers_as_first_dtype"] = sum(a == b for a, b in zip(answers, reference))
                row["cpu_speedup_vs_first"] = round(first["cpu_s"] / row["cpu_s"], 2)
                print({k: v for k, v in row.items() if k != "prompt_tokens"}, flush=True)
                rows.append(row)
    command = (
        f"python -m benchmarks.local_batch --prompts {args.prompts} --batch-sizes {args.batch_sizes} "
        f"--sentences {args.sentences} --max-tokens {args.max_tokens} --dtypes {args.dtypes} "
        f"--examples {args.examples} --name {args.name}"
    )
    write_result(
        args.name,
        {
            "command": command,
            "model": f"SmolLM2-135M-Instruct (teacher=local), {args.dtypes}, 1 torch thread, greedy",
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
