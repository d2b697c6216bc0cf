"""``ttnn.sparse_matmul`` and ``ttnn.moe_expert_token_remap`` against plain torch formulations of the
semantics ttnn 0.81.1 documents (its docstrings and golden functions)."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn

from .emulator_ops_helpers import open_mesh, replicated, sharded, shards

pytestmark = [pytest.mark.unit, pytest.mark.quick]

M, K, N, E = 32, 64, 32, 4
HIFI4 = ttnn.WormholeComputeKernelConfig(math_fidelity=ttnn.MathFidelity.HiFi4, fp32_dest_acc_en=True)


def _program_config(mcast_in0: bool = True) -> ttnn.MatmulMultiCoreReuseMultiCast1DProgramConfig:
    return ttnn.MatmulMultiCoreReuseMultiCast1DProgramConfig(
        compute_with_storage_grid_size=ttnn.CoreCoord(8, 8), in0_block_w=1, out_subblock_h=1, out_subblock_w=1,
        per_core_M=1, per_core_N=1, fuse_batch=False, fused_activation=None, mcast_in0=mcast_in0)


PC = _program_config()


def _bf16(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).bfloat16().float()


def _mask(*shape: int, seed: int) -> torch.Tensor:
    m = (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) > 0.5).float()
    m.view(-1)[0], m.view(-1)[-1] = 1.0, 0.0  # at least one active and one skipped pair
    return m


def _close(got: torch.Tensor, ref: torch.Tensor, scale: torch.Tensor) -> None:
    assert got.shape == ref.shape, f"shape {list(got.shape)} vs {list(ref.shape)}"
    worst = (got - ref).abs() - (2.0**-7 * scale + 1e-6)
    assert float(worst.max()) <= 0, f"worst excess {float(worst.max()):.3g}"


# (is_a_sparse, is_b_sparse, a shape, sparsity shape, torch formulation -> (product, |A|@|B|, mask view))
MODES = {
    "both": (True, True, (1, E, M, K), (1, 1, 1, E),
             lambda a, b: (a @ b, a.abs() @ b.abs()), (1, E, 1, 1)),
    "dense_a": (False, True, (2, 3, M, K), (2, 3, 1, E),
                lambda a, b: (a[:, :, None, None] @ b[None, None], a.abs()[:, :, None, None] @ b.abs()[None, None]),
                (2, 3, 1, E, 1, 1)),
    "sparse_a_only": (True, False, (3, E, M, K), (1, 1, 3, E),
                      lambda a, b: (a @ b, a.abs() @ b.abs()), (3, E, 1, 1)),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_sparse_matmul_modes(mesh, mode) -> None:
    a_sparse, b_sparse, a_shape, s_shape, formula, mask_view = MODES[mode]
    a, b = _bf16(*a_shape, seed=1), _bf16(1, E, K, N, seed=2)
    sparsity = _mask(*s_shape, seed=3)
    out = ttnn.sparse_matmul(replicated(mesh, a), replicated(mesh, b),
                             sparsity=replicated(mesh, sparsity, layout=ttnn.ROW_MAJOR_LAYOUT),
                             is_input_a_sparse=a_sparse, is_input_b_sparse=b_sparse, compute_kernel_config=HIFI4, program_config=PC)
    product, scale = formula(a, b)
    mask = sparsity.reshape(mask_view)
    got = ttnn.to_torch(out).float()
    assert out.layout == ttnn.TILE_LAYOUT and out.dtype == ttnn.bfloat16
    _close(got, product * mask, scale)
    assert bool((got.reshape(-1, M, N)[(mask.flatten() == 0)] == 0).all()), "skipped pairs must read zero"


def test_sparse_matmul_per_device_sparsity_and_compact_output() -> None:
    with open_mesh(1, 2) as mesh:
        a, b = _bf16(1, E, M, K, seed=4), _bf16(2, E, K, N, seed=5)  # a different B per device
        sparsity = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]]).reshape(2, 1, 1, E)  # nnz 2 each
        out = ttnn.sparse_matmul(replicated(mesh, a), sharded(mesh, b, 0),
                                 sparsity=sharded(mesh, sparsity, 0, layout=ttnn.ROW_MAJOR_LAYOUT),
                                 is_input_a_sparse=True, compute_kernel_config=HIFI4, program_config=PC)
        compact = ttnn.from_torch(torch.zeros(2, 2, M, N), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=mesh,
                                  mesh_mapper=ttnn.ShardTensorToMesh(mesh, dim=0))
        packed = ttnn.sparse_matmul(replicated(mesh, a), sharded(mesh, b, 0),
                                    sparsity=sharded(mesh, sparsity, 0, layout=ttnn.ROW_MAJOR_LAYOUT), nnz=2,
                                    is_input_a_sparse=True, compute_kernel_config=HIFI4, program_config=PC, optional_output_tensor=compact)
        full, held = shards(out), shards(packed)
    assert packed is compact
    for d in range(2):
        ref = (a[0] @ b[d]) * sparsity[d].reshape(E, 1, 1)
        _close(full[d, 0], ref, a[0].abs() @ b[d].abs())
        active = sparsity[d].flatten().nonzero().flatten()
        assert torch.equal(held[d, 0], full[d, 0, active]), "compact output: the active pairs in scan order"


def test_sparse_matmul_indexed_mode_with_bias(mesh) -> None:
    a, b = _bf16(2, 1, M, K, seed=6), _bf16(1, E, K, N, seed=7)
    bias = _bf16(E, 32, N, seed=8)
    ids = torch.tensor([[3, 0]])
    junk = torch.zeros(2, 1, 1, E)  # not read in indexed mode
    out = ttnn.sparse_matmul(replicated(mesh, a), replicated(mesh, b),
                             sparsity=replicated(mesh, junk, layout=ttnn.ROW_MAJOR_LAYOUT),
                             indices=replicated(mesh, ids, dtype=ttnn.uint16, layout=ttnn.ROW_MAJOR_LAYOUT),
                             bias=replicated(mesh, bias), compute_kernel_config=HIFI4, program_config=PC)
    chosen = b[0, [3, 0]]  # [2, K, N] in index order
    ref = a[:, :, None, None] @ chosen[None, None, None] + bias[[3, 0], 0][None, None, None, :, None, :]
    _close(ttnn.to_torch(out).float(), ref, a.abs()[:, :, None, None] @ chosen.abs()[None, None, None] + ref.abs())


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(is_input_a_sparse=False, is_input_b_sparse=False), "at least one"),
    (dict(sparsity_shape=(1, 1, 1, E + 1)), "logical_volume"),
    (dict(sparsity_layout=ttnn.TILE_LAYOUT), "ROW_MAJOR"),
    (dict(nnz=3), "nnz"),
    (dict(nnz=0), "nnz"),
    (dict(program_config="mcast_in1"), "mcast_in0"),
    (dict(a_dtype=ttnn.uint16), "floating point"),
])
def test_sparse_matmul_validation(mesh, kwargs, match) -> None:
    a_dtype = kwargs.pop("a_dtype", ttnn.bfloat16)
    shape = kwargs.pop("sparsity_shape", (1, 1, 1, E))
    layout = kwargs.pop("sparsity_layout", ttnn.ROW_MAJOR_LAYOUT)
    kwargs["program_config"] = _program_config(mcast_in0=kwargs.get("program_config") != "mcast_in1")
    sparsity = torch.zeros(shape)
    sparsity.view(-1)[:2] = 1.0  # nnz 2
    kwargs.setdefault("is_input_a_sparse", True)
    with pytest.raises(RuntimeError, match=match):
        ttnn.sparse_matmul(replicated(mesh, _bf16(1, E, M, K, seed=9), dtype=a_dtype), replicated(mesh, _bf16(1, E, K, N, seed=9)),
                           sparsity=replicated(mesh, sparsity, layout=layout), **kwargs)


def _remap_reference(topk: torch.Tensor, mapping: torch.Tensor, meta: torch.Tensor, reduction_size: int):
    """Per device d: weight of local expert j where the token selected it (plain loops)."""
    devices, b, s, _ = topk.shape
    out, red = [], []
    for d in range(devices):
        local = [e for e in range(mapping.shape[2]) if mapping[0, 0, e, d] != 0]
        o = torch.zeros(1, b, s, len(local))
        for i in range(b):
            for t in range(s):
                for j, e in enumerate(local):
                    if e in meta[d, i, t].tolist():
                        o[0, i, t, j] = topk[d, i, t, e]
        flat = o.reshape(-1, reduction_size, len(local))
        out.append(o)
        red.append((flat != 0).any(dim=1).to(torch.int64).unsqueeze(0))
    return torch.stack(out), torch.stack(red)


def test_moe_expert_token_remap_matches_torch() -> None:
    devices, experts, b, s, k = 4, 16, 2, 8, 3
    g = torch.Generator().manual_seed(10)
    topk = torch.rand(devices, b, s, experts, generator=g).bfloat16().float()
    meta = torch.stack([torch.randperm(experts, generator=g)[:k] for _ in range(devices * b * s)]).reshape(devices, b, s, k)
    owner = torch.randperm(experts, generator=g) % devices  # 4 experts each, scattered over the devices
    mapping = torch.zeros(1, 1, experts, devices)
    mapping[0, 0, torch.arange(experts), owner] = 1
    with open_mesh(2, 2) as mesh:
        u16 = dict(dtype=ttnn.uint16, layout=ttnn.ROW_MAJOR_LAYOUT)
        out, reduced = ttnn.moe_expert_token_remap(
            sharded(mesh, topk, 0, layout=ttnn.ROW_MAJOR_LAYOUT), replicated(mesh, mapping, **u16),
            sharded(mesh, meta, 0, **u16), reduction_size=4)
        got, got_reduced = shards(out), shards(reduced)
    ref, ref_reduced = _remap_reference(topk, mapping, meta, 4)
    assert list(out.shape) == [1, b, s, experts // devices] and list(reduced.shape) == [1, b * s // 4, experts // devices]
    assert reduced.dtype == ttnn.uint16
    assert torch.equal(got, ref) and torch.equal(got_reduced, ref_reduced.float())


@pytest.mark.parametrize(("change", "match"), [("reduction_size", "reduction_size"), ("meta_dtype", "uint16"),
                                                ("uneven", "experts / devices")])
def test_moe_expert_token_remap_validation(change, match) -> None:
    mapping = torch.zeros(1, 1, 4, 2)
    mapping[0, 0, :, 0] = 1
    if change != "uneven":
        mapping[0, 0, 2:] = torch.tensor([0.0, 1.0])
    with open_mesh(1, 2) as mesh:
        u16 = dict(dtype=ttnn.uint16, layout=ttnn.ROW_MAJOR_LAYOUT)
        meta_kwargs = dict(layout=ttnn.ROW_MAJOR_LAYOUT, dtype=ttnn.bfloat16) if change == "meta_dtype" else u16
        with pytest.raises(RuntimeError, match=match):
            ttnn.moe_expert_token_remap(replicated(mesh, torch.rand(1, 1, 6, 4), layout=ttnn.ROW_MAJOR_LAYOUT),
                                        replicated(mesh, mapping, **u16), replicated(mesh, torch.zeros(1, 1, 6, 2), **meta_kwargs),
                                        reduction_size=4 if change == "reduction_size" else 3)
