"""glibc keeps freed memory: a training-like loop stops page-faulting its large buffers back in."""

import subprocess
import sys

import pytest

# steady-state minor page faults of a loop whose step allocates and frees a 64 MB activation
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


def steady_state_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_large_buffers_are_reused_instead_of_page_faulted_in():
    pages_per_step = 2000 * 8000 * 4 // 4096
    assert steady_state_faults("default") > 3 * pages_per_step  # glibc unmaps them on free
    assert steady_state_faults("keep") < pages_per_step // 10

