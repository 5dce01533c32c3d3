"""Keep PyTorch's OpenMP worker threads spinning between parallel regions on CPU.

A CPU training step runs hundreds of small operators, each an OpenMP parallel region, with Python
in between. libgomp (the OpenMP runtime of PyTorch's Linux wheels) spins a finished worker for
300,000 iterations, then puts it to sleep, so most regions pay a futex wake-up. A longer spin
(``GOMP_SPINCOUNT=10000000``, still bounded: an idle worker sleeps after about that many pause
loops) took bf16 MiniLM training on 2 cores from 174 to 190 sentences/s
(``benchmarks/README.md``, train_throughput). libgomp reads the variable once, when PyTorch loads
it, so the entry points call :func:`spin_openmp_workers` before importing torch. A user's own
``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` wins.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

SPINCOUNT = "10000000"


def spin_openmp_workers(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set ``GOMP_SPINCOUNT`` in ``environ`` unless the user chose a wait policy; returns whether it
    takes effect in this process (False once torch is imported: libgomp has read its settings)."""
    if "GOMP_SPINCOUNT" in environ or "OMP_WAIT_POLICY" in environ:
        return False
    environ["GOMP_SPINCOUNT"] = SPINCOUNT
    return environ is not os.environ or "torch" not in sys.modules
