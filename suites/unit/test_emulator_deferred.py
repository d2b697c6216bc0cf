"""Deferred expert rows (emulator ops/deferred.py) change no value.

The MoE expert chain (dispatch, repeat, batched expert linears, SiLU-mul, combine) runs twice: with the
deferral on (combine evaluates only the rows it reads, group by group) and off (the dense products); the
combined outputs must agree bit for bit, on one device and on a mesh, for routing that leaves experts idle,
loads some heavily (buckets of several row-granule sizes) and for a decode batch where most slots share one token,
with a bucket's experts multiplied in one batched product, in several, or one by one on their cached weights
(where ``_kernel_probe`` finds that exact on this CPU), accumulating in fp32 or bf16.
Reading a deferred tensor any other way (``to_torch``, another op) gives the dense values.
"""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from deepseek_tt.backend.emulator.ops import matmul as emulator_matmul
from deepseek_tt.backend.emulator.ops.deferred import is_deferred
from suites.unit.emulator_ops_helpers import open_mesh, replicated, shards

pytestmark = pytest.mark.unit

HIDDEN, INTER, EXPERTS, TOP_K = 64, 96, 8, 2


def _mapping(device, experts: int) -> ttnn.Tensor:
    devices = device.get_num_devices()
    table = torch.zeros(1, 1, experts, devices)
    table[0, 0, torch.arange(experts), torch.arange(experts) // (experts // devices)] = 1
    return replicated(device, table, dtype=ttnn.uint16, layout=ttnn.ROW_MAJOR_LAYOUT)


def _weights(device, generator: torch.Generator) -> dict[str, ttnn.Tensor]:
    """Per-device expert weights [1, E_local, K, N] (device d holds experts d*E_local ...)."""
    per_device = EXPERTS // device.get_num_devices()
    out = {}
    for name, (k, n) in {"w1": (HIDDEN, INTER), "w3": (HIDDEN, INTER), "w2": (INTER, HIDDEN)}.items():
        w = torch.randn(EXPERTS, k, n, generator=generator) / k**0.5
        stacked = w.reshape(device.get_num_devices(), per_device, k, n).unsqueeze(1)  # [D, 1, El, K, N]
        mapper = ttnn.ShardTensorToMesh(device, dim=0)
        out[name] = ttnn.from_torch(stacked.reshape(-1, per_device, k, n), dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT,
                                    device=device, mesh_mapper=mapper)
    return out


def _expert_chain(device, x: torch.Tensor, indices: torch.Tensor, weights, *, fidelity,
                  fp32_acc: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """moe.forward_routed's chain up to the combine: (combined [K, T, 1, H], expert_out read whole)."""
    tokens = x.shape[0]
    kernel = ttnn.WormholeComputeKernelConfig(math_fidelity=fidelity, fp32_dest_acc_en=fp32_acc)
    x_rm = replicated(device, x.reshape(tokens, 1, 1, HIDDEN), layout=ttnn.ROW_MAJOR_LAYOUT)
    idx_rm = replicated(device, indices.reshape(tokens, 1, 1, TOP_K), dtype=ttnn.uint16, layout=ttnn.ROW_MAJOR_LAYOUT)
    mapping = _mapping(device, EXPERTS)
    dispatched, metadata = ttnn.all_to_all_dispatch(x_rm, idx_rm, mapping, cluster_axis=0, output_concat_dim=1)
    group_tokens = dispatched.shape[1]
    per_device = EXPERTS // device.get_num_devices()
    expert_in = ttnn.to_layout(ttnn.repeat(ttnn.reshape(dispatched, (1, 1, group_tokens, HIDDEN)), (1, per_device, 1, 1)),
                               ttnn.TILE_LAYOUT)
    gate = ttnn.linear(expert_in, weights["w1"], dtype=ttnn.bfloat16, compute_kernel_config=kernel)
    up = ttnn.linear(expert_in, weights["w3"], dtype=ttnn.bfloat16, compute_kernel_config=kernel)
    act = ttnn.mul(gate, up, dtype=ttnn.bfloat16, input_tensor_a_activations=[ttnn.UnaryOpType.SILU])
    ttnn.deallocate(gate)
    ttnn.deallocate(up)
    out = ttnn.linear(act, weights["w2"], dtype=ttnn.bfloat16, compute_kernel_config=kernel)
    out = ttnn.reshape(ttnn.to_layout(out, ttnn.ROW_MAJOR_LAYOUT), (per_device, group_tokens, 1, HIDDEN))
    deferred = is_deferred(out._stacked)
    zeros = ttnn.zeros((TOP_K, tokens, 1, HIDDEN), dtype=ttnn.bfloat16, layout=ttnn.ROW_MAJOR_LAYOUT, device=device)
    combined = ttnn.all_to_all_combine(out, metadata, mapping, cluster_axis=0, output_tensor=zeros)
    whole = shards(out)  # evaluated whole after the combine
    assert deferred == emulator_matmul.DEFER_EXPERT_ROWS
    return shards(combined), whole


def _routing(tokens: int, kind: str, generator: torch.Generator) -> torch.Tensor:
    if kind == "skewed":  # most tokens on experts 0 and 1: buckets of several tile heights, idle experts
        first = torch.where(torch.rand(tokens, generator=generator) < 0.8, 0, torch.randint(2, EXPERTS, (tokens,), generator=generator))
        return torch.stack([first, torch.ones_like(first)], dim=1)
    if kind == "one-user":  # slot 0 active, the other slots all hold the same empty-slot token
        return torch.tensor([[3, 5]] + [[1, 2]] * (tokens - 1))
    return torch.stack([torch.randperm(EXPERTS, generator=generator)[:TOP_K] for _ in range(tokens)])


@pytest.mark.parametrize("mesh", [(1, 1), (2, 2)])
@pytest.mark.parametrize("tokens, kind", [(128, "skewed"), (128, "uniform"), (32, "one-user"), (96, "skewed")])
@pytest.mark.parametrize("fidelity", [ttnn.MathFidelity.LoFi, ttnn.MathFidelity.HiFi2])
@pytest.mark.parametrize("groups_per_product", [None, 3, 1], ids=["default-batch", "3-experts-per-product", "group-by-group"])
@pytest.mark.parametrize("fp32_acc", [True, False], ids=["fp32-acc", "bf16-acc"])
def test_deferred_expert_rows_are_bit_identical(mesh, tokens, kind, fidelity, groups_per_product, fp32_acc,
                                                monkeypatch) -> None:
    if groups_per_product == 1:  # each expert on its cached weight in place (where the CPU makes that exact)
        monkeypatch.setattr(emulator_matmul, "_FEW_GROUPS_FRACTION", 1)
    elif groups_per_product is not None:  # several batched products per bucket, the last one partial
        monkeypatch.setattr(emulator_matmul, "_EXPERT_BATCH_BYTES", groups_per_product * HIDDEN * INTER * 4)
    generator = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, HIDDEN, generator=generator)
    indices = _routing(tokens, kind, generator)
    results = {}
    with open_mesh(*mesh) as device:
        weights = _weights(device, generator)
        for defer in (False, True):
            monkeypatch.setattr(emulator_matmul, "DEFER_EXPERT_ROWS", defer)
            results[defer] = _expert_chain(device, x, indices, weights, fidelity=fidelity, fp32_acc=fp32_acc)
    (dense_combined, dense_out), (lazy_combined, lazy_out) = results[False], results[True]
    assert dense_combined.abs().sum() > 0, "the combine read nothing: the test exercises no expert row"
    assert torch.equal(dense_combined, lazy_combined), "deferred expert rows differ from the dense products"
    assert torch.equal(dense_out, lazy_out), "a deferred tensor read whole differs from the dense products"


def test_other_ops_read_deferred_values_whole(monkeypatch) -> None:
    generator = torch.Generator().manual_seed(0)
    a_values, w_values = torch.randn(1, 4, 64, 32, generator=generator), torch.randn(1, 4, 32, 48, generator=generator)
    results = {}
    with open_mesh(1, 1) as device:
        a, w = replicated(device, a_values), replicated(device, w_values)
        for defer in (False, True):
            monkeypatch.setattr(emulator_matmul, "DEFER_EXPERT_ROWS", defer)
            product = ttnn.matmul(a, w)
            assert is_deferred(product._stacked) == defer
            assert tuple(product.shape) == (1, 4, 64, 48), "the shape of a deferred tensor is known without evaluating it"
            assert is_deferred(product._stacked) == defer
            total = ttnn.to_torch(ttnn.sum(product, dim=-1, keepdim=True))
            results[defer] = (total, ttnn.to_torch(product))
    assert torch.equal(results[False][0], results[True][0]), "an op reading a deferred tensor saw other values"
    assert torch.equal(results[False][1], results[True][1]), "to_torch of a deferred tensor gave other values"
    expected = a_values @ w_values  # and the values are the product (LoFi: a few percent off)
    assert torch.allclose(results[True][1].float(), expected, rtol=0.1, atol=0.5)


def test_row_granule_is_probed_and_falls_back_to_the_tile_height(monkeypatch) -> None:
    from deepseek_tt.backend.emulator.ops import _kernel_probe, deferred

    assert _kernel_probe.row_granule() in (*_kernel_probe.GRANULE_CANDIDATES, _kernel_probe.TILE)
    _kernel_probe._row_granule.cache_clear()
    monkeypatch.setattr(_kernel_probe, "granule_holds", lambda granule: False)  # a CPU where no smaller granule holds
    try:
        assert _kernel_probe.row_granule() == _kernel_probe.TILE
        needed = torch.zeros(1, 4, 128, dtype=torch.bool)
        needed[0, 1, :5] = True
        [(groups_idx, sel)] = deferred.row_selection(needed)
        assert groups_idx.tolist() == [1] and sel.shape == (1, 1, _kernel_probe.TILE)
    finally:
        _kernel_probe._row_granule.cache_clear()
