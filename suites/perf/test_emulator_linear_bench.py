"""Cost of the emulator: a bfp8 linear on a 4x8 mesh (one decode-sized matmul per device) against the same
arithmetic as one plain torch matmul of the stacked shards. The ratio (a slowdown: lower is better) goes to ``benchmark.extra_info``."""

from __future__ import annotations

import time

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from deepseek_tt.config.mesh import format_mesh_shape
from reports.ingest import LOWER_IS_BETTER_KEY

pytestmark = pytest.mark.perf

ROWS, COLS = 4, 8
TOKENS, HIDDEN, OUT = 32, 7168, 2112  # decode: 32 users x hidden, sharded over the columns (MLA wq_kv_a)
CONFIGS = {
    "lofi_bf16acc": ttnn.WormholeComputeKernelConfig(math_fidelity=ttnn.MathFidelity.LoFi, fp32_dest_acc_en=False),
    "hifi2_fp32acc": ttnn.WormholeComputeKernelConfig(math_fidelity=ttnn.MathFidelity.HiFi2, fp32_dest_acc_en=True),
}


def _best_of(fn, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_emulated_bfp8_linear_vs_plain_torch(benchmark, record_result, config_name):
    torch.manual_seed(0)
    device = ttnn.open_mesh_device(ttnn.MeshShape(ROWS, COLS))
    try:
        x = torch.randn(1, 1, TOKENS, HIDDEN)
        w = torch.randn(HIDDEN, OUT) * 0.02
        mapper_x = ttnn.ShardTensor2dMesh(device, dims=(None, -1), mesh_shape=(ROWS, COLS))
        mapper_w = ttnn.ShardTensor2dMesh(device, dims=(None, -2), mesh_shape=(ROWS, COLS))
        tx = ttnn.from_torch(x, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=device, mesh_mapper=mapper_x)
        tw = ttnn.from_torch(w, dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, device=device, mesh_mapper=mapper_w)
        cfg = CONFIGS[config_name]

        out = benchmark.pedantic(lambda: ttnn.linear(tx, tw, compute_kernel_config=cfg), rounds=3, iterations=1)
        assert out.shape == (1, 1, TOKENS, OUT)

        xs, ws = tx._data.float(), tw._data.float()  # the same stacked operands, [32, 1, 1, 32, 896] @ [32, 896, 2112]
        plain = _best_of(lambda: torch.matmul(xs, ws.unsqueeze(1).unsqueeze(1)))
        emulated = benchmark.stats.stats.min if benchmark.stats else _best_of(lambda: ttnn.linear(tx, tw, compute_kernel_config=cfg))
        ratio = emulated / plain
        benchmark.extra_info.update(
            {"emulated_s": emulated, "plain_torch_s": plain, "emulated_over_plain_torch": ratio,
             "mesh": format_mesh_shape((ROWS, COLS)), "torch_device": str(device.torch_device), "config": config_name,
             # a slowdown: lower is better (the report would take a bare "ratio" for a speedup)
             LOWER_IS_BETTER_KEY: ["emulated_s", "plain_torch_s", "emulated_over_plain_torch"]}
        )
        record_result(module="emulator.linear", mode="decode", metric=f"emulator_over_torch_{config_name}",
                      value=ratio, higher_is_better=False, mesh=format_mesh_shape((ROWS, COLS)), batch=TOKENS)
        assert ratio > 0
    finally:
        ttnn.close_mesh_device(device)
