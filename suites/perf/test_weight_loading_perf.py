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


# -- a full-dims MoE layer through the host conversion (nightly) ----------------------------------------

#: the memory contract of the streamed expert conversion (the time is measured, not asserted)
LAYER_PEAK_RSS_LIMIT_BYTES = 3 * 10**9
#: free disk a full layer needs (its files take about 22.5 GB: bfp values are stored as bf16)
LAYER_DISK_BYTES = 24 * 10**9


@pytest.mark.slow
@pytest.mark.parametrize("mesh", [(1, 1), (4, 8)], ids=["1x1", "4x8"])
def test_full_moe_layer_conversion(mesh, tmp_path, record_result):
    """One 256-expert layer of DeepSeek-V3 dims, random weights, converted in a child process (its own
    peak RSS): time and peak RSS as result rows; RSS within the limit; the files hold the right values."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from deepseek_tt.backend import ttnn
    from deepseek_tt.weights.convert import RandomStateDict
    from reference_models.presets import get_preset

    from deepseek_tt import backend

    from .layer_conversion import LAYER, PRESET

    if backend.backend_name() != "emulator":
        pytest.skip("measures the emulator's host conversion (the child process opens an emulated mesh)")
    free = shutil.disk_usage(tmp_path).free
    if free < LAYER_DISK_BYTES:
        pytest.fail(f"{tmp_path}: {free / 1e9:.1f} GB free, a full MoE layer needs {LAYER_DISK_BYTES / 1e9:.0f} GB")
    out = tmp_path / "layer"
    try:
        run = subprocess.run(
            [sys.executable, "-m", "suites.perf.layer_conversion", "--mesh", f"{mesh[0]}x{mesh[1]}", "--out", str(out)],
            capture_output=True, text=True, timeout=3600, cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, backend.BACKEND_ENV: "emulator"},
        )
        assert run.returncode == 0, run.stderr[-2000:]
        measured = json.loads(run.stdout.strip().splitlines()[-1])
        assert measured["experts"] == 256

        # the first expert of the first w1 file equals a direct host conversion of that expert's weight
        hf_config = get_preset(PRESET, num_layers=LAYER + 1)
        files = sorted((out / "experts").glob("w1.*.tensorbin"))
        slots = 256 // (mesh[0] * mesh[1])
        assert len(files) == len(list((out / "experts").glob("*.tensorbin"))) // 3 == -(-slots // max(1, 8 // (mesh[0] * mesh[1])))
        first = ttnn.get_device_tensors(ttnn.load_tensor(str(files[0])))[0]
        weight = RandomStateDict(hf_config, 0)[f"model.layers.{LAYER}.mlp.experts.0.gate_proj.weight"]
        expected = ttnn.to_torch(ttnn.from_torch(weight.T.contiguous(), dtype=ttnn.bfloat4_b, layout=ttnn.TILE_LAYOUT))
        assert torch.equal(ttnn.to_torch(first)[0, 0], expected)
    finally:
        shutil.rmtree(out, ignore_errors=True)

    name = f"{mesh[0]}x{mesh[1]}"
    for metric, value, threshold in [
        ("layer_conversion_seconds", measured["seconds"], None),
        ("layer_conversion_cpu_seconds", measured["cpu_seconds"], None),
        ("layer_conversion_peak_rss_gb", measured["peak_rss_bytes"] / 1e9, LAYER_PEAK_RSS_LIMIT_BYTES / 1e9),
        ("layer_conversion_written_gb", measured["bytes_written"] / 1e9, None),
    ]:
        record_result(module="weights.convert.moe_layer", mode="convert", metric=metric, value=float(value), mesh=name,
                      threshold=threshold, higher_is_better=False)
    assert measured["peak_rss_bytes"] <= LAYER_PEAK_RSS_LIMIT_BYTES, (
        f"peak RSS {measured['peak_rss_bytes'] / 1e9:.2f} GB converting a full MoE layer on {name} "
        f"(limit {LAYER_PEAK_RSS_LIMIT_BYTES / 1e9:.0f} GB)"
    )
