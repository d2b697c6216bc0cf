"""Throughput of fp8 block dequantization on one full-size routed-expert weight (DeepSeek-V3 dims)."""

import pytest
import torch

from deepseek_tt.weights import dequantize_fp8_blocks, quantize_fp8_blocks

pytestmark = pytest.mark.perf

EXPERT_DOWN_SHAPE = (7168, 2048)  # hidden x moe_intermediate of the real model


def test_fp8_dequantization_throughput(benchmark, record_result):
    weight, scale = quantize_fp8_blocks(torch.randn(EXPERT_DOWN_SHAPE) * 0.02)
    out = benchmark.pedantic(dequantize_fp8_blocks, args=(weight, scale), kwargs={"dtype": torch.bfloat16}, rounds=3, iterations=1)
    assert out.shape == EXPERT_DOWN_SHAPE and out.dtype == torch.bfloat16
    seconds = benchmark.stats.stats.min if benchmark.stats else None
    if seconds:
        record_result(module="weights.fp8", mode="load", metric="dequant_mvalues_per_s", value=weight.numel() / seconds / 1e6)
