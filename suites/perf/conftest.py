"""Perf-suite settings: torch threads during a benchmark.

Both sides of every ratio (the emulated TT-NN model and the transformers reference) are torch code on
the same CPU threads. On a shared or small machine torch's default thread pool oversubscribes the cores
and a step's time becomes mostly scheduling noise (measured here on 2 shared cores: a galaxy-tiny
prefill of 128 tokens 0.36-0.40 s on 1 thread, 0.9-3.1 s on 2), so the suite runs on
``$DEEPSEEK_TT_PERF_THREADS`` threads, 1 by default; ``0`` keeps torch's default.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest
import torch

PERF_THREADS_ENV = "DEEPSEEK_TT_PERF_THREADS"


def perf_threads() -> int | None:
    """Threads for the benchmarks, or None for torch's default; a bad value names the variable."""
    raw = os.environ.get(PERF_THREADS_ENV, "1")
    try:
        value = int(raw)
    except ValueError:
        raise pytest.UsageError(f"${PERF_THREADS_ENV}={raw!r}: expected a number of threads (0: torch's default)") from None
    if value < 0:
        raise pytest.UsageError(f"${PERF_THREADS_ENV}={raw!r}: expected a number >= 0")
    return value or None


@pytest.fixture(autouse=True)
def benchmark_threads() -> Iterator[int]:
    """Torch threads for the test (restored afterwards); the value goes into the benchmark's extra info."""
    previous = torch.get_num_threads()
    wanted = perf_threads()
    if wanted is not None:
        torch.set_num_threads(wanted)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
