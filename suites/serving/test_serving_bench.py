"""Throughput of 1 versus 16 concurrent greedy requests on the server, as a ratio (marker perf)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from suites.serving.conftest import SERVED_NAME

pytestmark = pytest.mark.perf

MAX_TOKENS = 16
CONCURRENT = 16


def _tokens_per_second(live_server, requests: int) -> float:
    prompts = [f"Benchmark prompt {i} about the weather" for i in range(requests)]
    with live_server.client() as client, ThreadPoolExecutor(max_workers=requests) as pool:
        start = time.perf_counter()
        bodies = list(pool.map(lambda p: client.post("/v1/completions", json={
            "model": SERVED_NAME, "prompt": p, "max_tokens": MAX_TOKENS, "temperature": 0}).json(), prompts))
        elapsed = time.perf_counter() - start
    return sum(body["usage"]["completion_tokens"] for body in bodies) / elapsed


def test_concurrent_requests_raise_throughput(live_server, benchmark):
    single = _tokens_per_second(live_server, 1)  # also warms the server up
    single = max(single, _tokens_per_second(live_server, 1))
    concurrent = benchmark.pedantic(_tokens_per_second, args=(live_server, CONCURRENT), rounds=2, iterations=1)
    ratio = concurrent / single
    benchmark.extra_info.update({
        "module": "serving", "mode": "generate", "single_tok_s": single, "concurrent_tok_s": concurrent,
        "concurrent_requests": CONCURRENT, "throughput_ratio": ratio,
    })
    # Batching shares each decode step among the requests; one after another would give about 1.
    assert ratio > 2.0, f"{CONCURRENT} concurrent requests gave only {ratio:.2f}x the single-request throughput"
