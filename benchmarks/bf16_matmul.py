"""How much slower bf16 is than fp32 on this CPU: one MiniLM-sized feed-forward matmul (a batch of
32 x 40 sub-tokens, 1,280 x 384 by 384 x 1,536) timed in fp32 and in bf16, as the machine is and with
oneDNN limited to AVX2 (what a CPU without AVX-512 runs; ``--isa-limits`` for others).

    python -m benchmarks.bf16_matmul

This is the figure behind ``precision: auto`` and behind the warning when bf16 is forced on a CPU
without native bf16 (``nerdistill/runtime.py``). Each setting runs in a fresh process, since oneDNN
reads its ISA limit once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from benchmarks.common import run_isolated, write_result

# limits that make PyTorch's CPU kernels (oneDNN, MKL, ATen's own) use AVX2 at most
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def run_one(repeats: int) -> dict:
    import torch

    a, b = torch.randn(1280, 384), torch.randn(384, 1536)
    flop = 2 * 1280 * 384 * 1536
    result = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        for _ in range(3):  # warm-up: oneDNN picks and JIT-compiles its kernel on the first call
            x @ y
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - started)
        ms = statistics.median(times) * 1000
        result[str(dtype).removeprefix("torch.")] = {"ms": round(ms, 2), "gflop_s": round(flop / ms / 1e6, 1)}
    result["bf16_slowdown"] = round(result["bfloat16"]["ms"] / result["float32"]["ms"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--isa-limits", default=json.dumps(AVX2), help="JSON env limits for the second setting")
    parser.add_argument("--name", default="bf16_matmul")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.repeats)))
        return
    settings = {"as_is": {}, "isa_limited": json.loads(args.isa_limits)}
    results = {}
    for name, limits in settings.items():
        results[name] = {
            "limits": limits,
            **run_isolated("benchmarks.bf16_matmul", ["--one", "--repeats", str(args.repeats)], env=limits),
        }
        print(name, results[name])
    command = "python -m benchmarks.bf16_matmul " + " ".join(sys.argv[1:])
    write_result(
        args.name, {"command": command.strip(), "shape": [1280, 384, 1536], "repeats": args.repeats, "results": results}
    )


if __name__ == "__main__":
    main()
