"""Steady-state minor page faults of a training-like loop whose step allocates and frees a 64 MB
activation, with glibc's defaults and with ``nerdistill.allocator.keep_freed_memory()``.

    python -m benchmarks.page_faults

The count measures the kernel as much as the allocator (transparent huge pages, compaction, an
inherited ``GLIBC_TUNABLES`` or ``LD_PRELOAD`` change it), so it is a benchmark, not a test.
"""

from __future__ import annotations

import subprocess
import sys

from benchmarks.common import write_result

LOOP = """
import resource, sys, torch
from nerdistill.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():
    activation = torch.ones(2000, 8000)
    return (activation @ torch.ones(8000, 100)).sum()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES_PER_STEP = 2000 * 8000 * 4 // 4096


def steady_state_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def main() -> None:
    faults = {mode: steady_state_faults(mode) for mode in ("default", "keep")}
    print(
        f"minor page faults over 5 steps ({PAGES_PER_STEP} pages allocated a step): "
        f"glibc defaults {faults['default']}, keep_freed_memory {faults['keep']}"
    )
    write_result(
        "page_faults",
        {"command": "python -m benchmarks.page_faults", "pages_per_step": PAGES_PER_STEP, "steps": 5, "faults": faults},
    )


if __name__ == "__main__":
    main()
