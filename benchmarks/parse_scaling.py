"""The response parser's time against the answer's length, for the runaway answers a small local
model in a repetition loop writes (a large ``max_tokens``): it must grow linearly and stay bounded,
since a slow parse inside the annotation job's event loop stalls every request in flight.

    python -m benchmarks.parse_scaling

Each answer repeats one pattern up to the size, with no answer marker after it (the worst case: a
final ``Answer:`` line would leave only what follows it to parse). ``--name``: e.g. the same run on an
older commit for a before/after record.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import write_result
from nerdistill.teacher import parse_response

TOKENS = "EU rejects German call to boycott British lamb .".split()
PATTERNS = {
    "mention lines": "EU | ORG\nGerman | MISC\n",
    "one line of thought": "<think>hmm EU maybe ORG</think> ",
    "prose with types": "The entity EU is an organisation (ORG). ",
    "JSON that never closes": 'Sure: {"PER": ["a", ',
    "nested brackets": "[",
    "PromptNER lines with reasons": "1. Celtic | True | a location (LOC) or a team, so an organisation (ORG)\n",
    "think blocks between lines": "<think>EU is an organisation?</think>\nEU | ORG\n",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-kb", default="10,30,100,300,1000")
    parser.add_argument("--name", default="parse_scaling")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes_kb.split(",")]
    results: dict[str, dict[str, float | str]] = {}
    for name, pattern in PATTERNS.items():
        results[name] = {}
        for kb in sizes:
            text = pattern * (kb * 1000 // len(pattern))
            started = time.perf_counter()
            try:
                parse_response(text, TOKENS)
            except Exception as error:  # noqa: BLE001 - the parser must never raise; record it if it does
                results[name][f"{kb} KB"] = f"raised {type(error).__name__}"
                continue
            results[name][f"{kb} KB"] = round(time.perf_counter() - started, 3)
        print(name, results[name])
    write_result(
        args.name,
        {
            "command": f"python -m benchmarks.parse_scaling --sizes-kb {args.sizes_kb} --name {args.name}",
            "seconds": results,
        },
    )


if __name__ == "__main__":
    main()
