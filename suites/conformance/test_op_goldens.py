"""Emulated ops against real ttnn's golden functions (``ttnn.get_golden_function(op)``).

Each golden runs in fp32 on the very values the emulator holds (inputs already rounded to their ttnn
dtype); the emulator's output must agree within the precision model of NUMERICS.md:
- data movement and selection: bit-exact;
- bf16 elementwise arithmetic (add/sub/mul): within 1 bf16 ulp of the fp32 result (one rounding);
- SFPU functions (exp, silu, sigmoid, tanh, rsqrt, ...), softmax, rms_norm: relative error <= 2^-6;
- matmul / linear / reductions / sdpa: |error| <= 2^-7 * (|A| @ |B|) (the bf16 output rounding plus
  fidelity loss), plus a PCC >= 0.9999 check;
- collectives: the same computation on the gathered shards (sums within the bf16 sum bound).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

pytestmark = pytest.mark.conformance

EXACT, ONE_ULP, SFPU = "exact", "one_ulp", "sfpu"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bf16(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=_gen(seed)) * scale).to(torch.bfloat16).float()


@pytest.fixture(scope="module")
def mesh(emulator):
    device = emulator.open_mesh_device(emulator.MeshShape(1, 1))
    yield device
    emulator.close_mesh_device(device)


def _tt(emulator, mesh, x: torch.Tensor, dtype: str = "bfloat16", layout: str = "TILE_LAYOUT"):
    return emulator.from_torch(x, dtype=getattr(emulator, dtype), layout=getattr(emulator, layout), device=mesh)


def _out(emulator, t) -> torch.Tensor:
    return emulator.to_torch(t).float()


def _golden(real_ttnn, name: str) -> Callable:
    op = real_ttnn
    for part in name.split("."):
        op = getattr(op, part)
    return real_ttnn.get_golden_function(op)


def _check(actual: torch.Tensor, expected: torch.Tensor, rule: str, what: str) -> None:
    expected = expected.float()
    assert actual.shape == expected.shape, f"{what}: shape {list(actual.shape)} vs golden {list(expected.shape)}"
    if rule == EXACT:
        assert torch.equal(actual, expected.to(torch.bfloat16).float()) or torch.equal(actual, expected), what
        return
    if rule == ONE_ULP:
        ulp = torch.pow(2.0, torch.floor(torch.log2(expected.abs().clamp_min(2.0**-126))) - 7)
        bad = (actual - expected).abs() > ulp
    else:  # SFPU-class functions
        bad = (actual - expected).abs() > 2.0**-6 * expected.abs() + 2.0**-10
    assert not bool(bad.any()), (
        f"{what}: {int(bad.sum())} values outside the {rule} bound; worst |err| "
        f"{(actual - expected).abs().max().item():.3g}"
    )


def _pcc(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


ELTWISE_BINARY = ["add", "sub", "mul"]
ELTWISE_UNARY = [
    ("exp", SFPU, 1.0), ("silu", SFPU, 2.0), ("sigmoid", SFPU, 2.0), ("tanh", SFPU, 1.0), ("neg", EXACT, 1.0),
    ("relu", EXACT, 1.0), ("abs", EXACT, 1.0), ("square", ONE_ULP, 1.0),
]


@pytest.mark.parametrize("name", ELTWISE_BINARY)
def test_binary(real_ttnn, emulator, mesh, name):
    a, b = _bf16(64, 96, seed=1), _bf16(64, 96, seed=2)
    result = getattr(emulator, name)(_tt(emulator, mesh, a), _tt(emulator, mesh, b))
    _check(_out(emulator, result), _golden(real_ttnn, name)(a, b), ONE_ULP, name)


def test_binary_broadcast_and_input_activation(real_ttnn, emulator, mesh):
    a, b = _bf16(1, 32, 128, seed=3), _bf16(1, 1, 128, seed=4)
    silu = emulator.UnaryOpType.SILU
    result = emulator.mul(_tt(emulator, mesh, a), _tt(emulator, mesh, b), input_tensor_a_activations=[silu])
    expected = _golden(real_ttnn, "mul")(torch.nn.functional.silu(a).to(torch.bfloat16).float(), b)
    _check(_out(emulator, result), expected, SFPU, "mul with silu(a)")


@pytest.mark.parametrize(("name", "rule", "scale"), ELTWISE_UNARY, ids=[u[0] for u in ELTWISE_UNARY])
def test_unary(real_ttnn, emulator, mesh, name, rule, scale):
    x = _bf16(64, 64, seed=5, scale=scale)
    result = getattr(emulator, name)(_tt(emulator, mesh, x))
    _check(_out(emulator, result), _golden(real_ttnn, name)(x), rule, name)


@pytest.mark.parametrize("name", ["rsqrt", "sqrt", "reciprocal", "log"])
def test_unary_positive_domain(real_ttnn, emulator, mesh, name):
    x = (_bf16(64, 64, seed=6).abs() + 0.05).to(torch.bfloat16).float()
    result = getattr(emulator, name)(_tt(emulator, mesh, x))
    _check(_out(emulator, result), _golden(real_ttnn, name)(x), SFPU, name)


@pytest.mark.parametrize("dim", [-1, 1])
def test_softmax(real_ttnn, emulator, mesh, dim):
    x = _bf16(2, 64, 96, seed=7, scale=3)
    result = emulator.softmax(_tt(emulator, mesh, x), dim=dim)
    _check(_out(emulator, result), _golden(real_ttnn, "softmax")(x, dim=dim), SFPU, f"softmax dim {dim}")


def test_rms_norm(real_ttnn, emulator, mesh):
    x, w = _bf16(1, 1, 32, 256, seed=8, scale=2), _bf16(256, seed=9).add(1).to(torch.bfloat16).float()
    w_tt = emulator.from_torch(w.reshape(1, 1, -1, 32), dtype=emulator.bfloat16, layout=emulator.ROW_MAJOR_LAYOUT,
                               device=mesh)
    result = emulator.rms_norm(_tt(emulator, mesh, x), epsilon=1e-6, weight=w_tt)
    _check(_out(emulator, result), _golden(real_ttnn, "rms_norm")(x, w, epsilon=1e-6), SFPU, "rms_norm")


@pytest.mark.parametrize("name", ["matmul", "linear"])
@pytest.mark.parametrize("b_dtype", ["bfloat16", "bfloat8_b", "bfloat4_b"])
def test_matmul_within_precision_model(real_ttnn, emulator, mesh, name, b_dtype):
    a, b = _bf16(1, 64, 256, seed=10), torch.randn(256, 96, generator=_gen(11)) * 0.1
    b_tt = _tt(emulator, mesh, b, b_dtype)
    b_held = _out(emulator, b_tt)  # the quantized weight the device holds
    kwargs = {}
    if name == "linear":
        bias = _bf16(1, 96, seed=12)
        kwargs["bias"] = _tt(emulator, mesh, bias)
    config = emulator.WormholeComputeKernelConfig(math_fidelity=emulator.MathFidelity.HiFi4, fp32_dest_acc_en=True)
    result = _out(emulator, getattr(emulator, name)(_tt(emulator, mesh, a), b_tt, compute_kernel_config=config, **kwargs))
    gold = _golden(real_ttnn, name)(a, b_held, **({"bias": kwargs and bias} if name == "linear" else {}))
    bound = 2.0**-7 * (a.abs() @ b_held.abs()) + 2.0**-7 * (bias.abs() if name == "linear" else 0) + 1e-6
    assert ((result - gold).abs() <= bound).all(), f"{name}: worst |err| {(result - gold).abs().max().item():.3g}"
    assert _pcc(result, gold) >= 0.9999


@pytest.mark.parametrize(("name", "dims"), [("sum", -1), ("mean", -1), ("max", -1), ("sum", 1)])
def test_reductions(real_ttnn, emulator, mesh, name, dims):
    x = _bf16(2, 64, 96, seed=13)
    result = _out(emulator, getattr(emulator, name)(_tt(emulator, mesh, x), dim=dims, keepdim=True))
    gold = _golden(real_ttnn, name)(x, dims, keepdim=True)
    if name == "max":
        _check(result, gold, EXACT, name)
    else:
        scale = x.abs().sum(dim=dims, keepdim=True) / (x.shape[dims] if name == "mean" else 1)
        assert ((result - gold).abs() <= 2.0**-7 * scale + 1e-6).all(), f"{name} dim {dims}"


def test_topk_and_argmax(real_ttnn, emulator, mesh):
    g = _gen(14)  # distinct per row and exact in bf16: no ties, so the index order is defined
    x = torch.stack([torch.randperm(256, generator=g) for _ in range(64)]).reshape(1, 1, 64, 256).float() - 128
    values, indices = emulator.topk(_tt(emulator, mesh, x), k=8, dim=-1)
    gold_values, gold_indices = _golden(real_ttnn, "topk")(x, 8, -1)
    _check(_out(emulator, values), gold_values, EXACT, "topk values")
    assert torch.equal(emulator.to_torch(indices).to(torch.int64), gold_indices.to(torch.int64)), "topk indices"
    am = emulator.argmax(_tt(emulator, mesh, x, layout="ROW_MAJOR_LAYOUT"), dim=-1)
    assert torch.equal(emulator.to_torch(am).to(torch.int64).flatten(),
                       _golden(real_ttnn, "argmax")(x, -1).to(torch.int64).flatten()), "argmax"


DATA_MOVEMENT: list[tuple[str, Callable[[Any, Any], Any], Callable[[Callable, torch.Tensor], torch.Tensor]]] = [
    ("permute", lambda tt, t: tt.permute(t, (0, 2, 1, 3)), lambda g, x: g(x, (0, 2, 1, 3))),
    ("transpose", lambda tt, t: tt.transpose(t, -2, -1), lambda g, x: g(x, -2, -1)),
    ("reshape", lambda tt, t: tt.reshape(t, (1, 2, 32, 128)), lambda g, x: g(x, (1, 2, 32, 128))),
    ("slice", lambda tt, t: tt.slice(t, [0, 0, 32, 0], [1, 2, 64, 64]), lambda g, x: x[0:1, 0:2, 32:64, 0:64]),
    ("concat", lambda tt, t: tt.concat([t, t], dim=-1), lambda g, x: g([x, x], dim=-1)),
    ("repeat", lambda tt, t: tt.repeat(t, (1, 2, 1, 1)), lambda g, x: g(x, (1, 2, 1, 1))),
    ("pad", lambda tt, t: tt.pad(t, [(0, 0), (0, 0), (0, 0), (0, 32)], value=0.0),
     lambda g, x: torch.nn.functional.pad(x, (0, 32))),
]


@pytest.mark.parametrize(("name", "call", "golden_call"), DATA_MOVEMENT, ids=[d[0] for d in DATA_MOVEMENT])
def test_data_movement_bit_exact(real_ttnn, emulator, mesh, name, call, golden_call):
    x = _bf16(1, 2, 64, 64, seed=15)
    result = _out(emulator, call(emulator, _tt(emulator, mesh, x)))
    _check(result, golden_call(_golden(real_ttnn, name), x), EXACT, name)


def test_embedding_and_typecast(real_ttnn, emulator, mesh):
    weight = _bf16(100, 64, seed=16)
    ids = torch.randint(0, 100, (1, 32), generator=_gen(17))
    w_tt = emulator.from_torch(weight, dtype=emulator.bfloat16, layout=emulator.ROW_MAJOR_LAYOUT, device=mesh)
    ids_tt = emulator.from_torch(ids, dtype=emulator.uint32, layout=emulator.ROW_MAJOR_LAYOUT, device=mesh)
    _check(_out(emulator, emulator.embedding(ids_tt, w_tt)), _golden(real_ttnn, "embedding")(ids, weight), EXACT, "embedding")
    x = torch.randn(32, 64, generator=_gen(18))
    cast = emulator.typecast(_tt(emulator, mesh, x, "float32"), emulator.bfloat16)
    assert torch.equal(emulator.to_torch(cast), x.to(torch.bfloat16)), "typecast float32 -> bfloat16 rounds RNE"


def test_causal_sdpa(real_ttnn, emulator, mesh):
    q, k, v = (_bf16(1, 4, 64, 64, seed=s) for s in (19, 20, 21))
    result = _out(emulator, emulator.transformer.scaled_dot_product_attention(
        _tt(emulator, mesh, q), _tt(emulator, mesh, k), _tt(emulator, mesh, v), is_causal=True, scale=0.125))
    gold = _golden(real_ttnn, "transformer.scaled_dot_product_attention")(q, k, v, is_causal=True, scale=0.125)
    assert _pcc(result, gold) >= 0.999 and (result - gold).abs().max() <= 0.03


@pytest.fixture(scope="module")
def mesh_2x4(emulator):
    device = emulator.open_mesh_device(emulator.MeshShape(2, 4))
    yield device
    emulator.close_mesh_device(device)


def _sharded(emulator, mesh, x: torch.Tensor, dims: tuple):
    return emulator.from_torch(x, dtype=emulator.bfloat16, layout=emulator.TILE_LAYOUT, device=mesh,
                               mesh_mapper=emulator.ShardTensor2dMesh(mesh, tuple(mesh.shape), dims))


def _per_device(emulator, t) -> list[torch.Tensor]:
    return [emulator.to_torch(s).float() for s in emulator.get_device_tensors(t)]


def _compose(per_device: list[torch.Tensor], mesh_shape: tuple[int, int], dims: tuple) -> torch.Tensor:
    """Compose as ttnn's golden does: concat along a sharded mesh axis; a replicated axis must agree."""
    rows, cols = mesh_shape
    row_values = []
    for r in range(rows):
        values = per_device[r * cols : (r + 1) * cols]
        if dims[1] is None:
            assert all(torch.equal(v, values[0]) for v in values), "replicas along mesh axis 1 differ"
            row_values.append(values[0])
        else:
            row_values.append(torch.cat(values, dim=dims[1]))
    if dims[0] is None:
        assert all(torch.equal(v, row_values[0]) for v in row_values), "replicas along mesh axis 0 differ"
        return row_values[0]
    return torch.cat(row_values, dim=dims[0])


@pytest.mark.parametrize("cluster_axis", [0, 1])
def test_all_gather(real_ttnn, emulator, mesh_2x4, cluster_axis):
    x = _bf16(1, 1, 64, 256, seed=22)
    dims = (2, 3)
    out = emulator.all_gather(_sharded(emulator, mesh_2x4, x, dims), dim=dims[cluster_axis], cluster_axis=cluster_axis)
    inputs = _per_device(emulator, _sharded(emulator, mesh_2x4, x, dims))
    gold = _golden(real_ttnn, "all_gather")(inputs, dims[cluster_axis], cluster_axis=cluster_axis,
                                            _ttnn_golden_mesh_shape=(2, 4), _ttnn_golden_mesh_shard_dims=dims)
    out_dims = tuple(None if i == cluster_axis else d for i, d in enumerate(dims))
    _check(_compose(_per_device(emulator, out), (2, 4), out_dims), gold, EXACT, "all_gather")


@pytest.mark.parametrize("name", ["all_reduce", "reduce_scatter"])
def test_reducing_collectives(real_ttnn, emulator, mesh_2x4, name):
    x = _bf16(1, 1, 32, 4 * 128, seed=23)
    per_device_inputs = [x * (i + 1) for i in range(8)]  # distinct per device
    tensor = emulator.from_torch(torch.cat(per_device_inputs, dim=0), dtype=emulator.bfloat16, layout=emulator.TILE_LAYOUT,
                                 device=mesh_2x4, mesh_mapper=emulator.ShardTensorToMesh(mesh_2x4, dim=0))
    held = _per_device(emulator, tensor)
    if name == "all_reduce":
        out = emulator.all_reduce(tensor, cluster_axis=1)
        gold = _golden(real_ttnn, name)(held, cluster_axis=1, _ttnn_golden_mesh_shape=(2, 4),
                                        _ttnn_golden_mesh_shard_dims=(0, None))
        composed = _compose(_per_device(emulator, out), (2, 4), (0, None))
    else:
        out = emulator.reduce_scatter(tensor, dim=3, cluster_axis=1)
        gold = _golden(real_ttnn, name)(held, 3, cluster_axis=1, _ttnn_golden_mesh_shape=(2, 4),
                                        _ttnn_golden_mesh_shard_dims=(0, None))
        composed = _compose(_per_device(emulator, out), (2, 4), (0, 3))
    sum_of_magnitudes = torch.stack(held).abs().sum(0).max()
    err = (composed - gold).abs()
    assert composed.shape == gold.shape, f"{name}: shape {list(composed.shape)} vs golden {list(gold.shape)}"
    assert (err <= 2.0**-7 * sum_of_magnitudes).all(), f"{name}: worst |err| {err.max().item():.3g}"


def _sparse_program_config(emulator):
    return emulator.MatmulMultiCoreReuseMultiCast1DProgramConfig(
        compute_with_storage_grid_size=emulator.CoreCoord(8, 8), in0_block_w=1, out_subblock_h=1, out_subblock_w=1,
        per_core_M=1, per_core_N=1, fuse_batch=False, fused_activation=None, mcast_in0=True)


SPARSE_MODES = [  # (is_input_a_sparse, is_input_b_sparse, a shape, sparsity shape) from ttnn's table, E = 4
    (True, True, (1, 4, 32, 64), (1, 1, 1, 4)),
    (False, True, (2, 3, 32, 64), (2, 3, 1, 4)),
    (True, False, (3, 4, 32, 64), (1, 1, 3, 4)),
]


@pytest.mark.parametrize(("a_sparse", "b_sparse", "a_shape", "s_shape"), SPARSE_MODES, ids=["both", "b_only", "a_only"])
def test_sparse_matmul(real_ttnn, emulator, mesh, a_sparse, b_sparse, a_shape, s_shape):
    a, b = _bf16(*a_shape, seed=40), _bf16(1, 4, 64, 32, seed=41)
    sparsity = (torch.rand(*s_shape, generator=_gen(42)) > 0.5).float()
    sparsity.view(-1)[0] = 1.0
    config = emulator.WormholeComputeKernelConfig(math_fidelity=emulator.MathFidelity.HiFi4, fp32_dest_acc_en=True)
    result = _out(emulator, emulator.sparse_matmul(
        _tt(emulator, mesh, a), _tt(emulator, mesh, b), sparsity=_tt(emulator, mesh, sparsity, layout="ROW_MAJOR_LAYOUT"),
        program_config=_sparse_program_config(emulator), is_input_a_sparse=a_sparse, is_input_b_sparse=b_sparse,
        compute_kernel_config=config))
    golden = _golden(real_ttnn, "sparse_matmul")
    gold = golden(a, b, sparsity=sparsity, is_input_a_sparse=a_sparse, is_input_b_sparse=b_sparse)
    scale = golden(a.abs(), b.abs(), sparsity=sparsity, is_input_a_sparse=a_sparse, is_input_b_sparse=b_sparse)
    assert result.shape == gold.shape, f"shape {list(result.shape)} vs golden {list(gold.shape)}"
    assert ((result - gold).abs() <= 2.0**-7 * scale + 1e-6).all(), f"worst |err| {(result - gold).abs().max().item():.3g}"
    assert bool(((gold == 0) <= (result == 0)).all()), "skipped pairs read zero"


def test_sparse_matmul_compact_and_indexed(real_ttnn, emulator, mesh):
    a, b = _bf16(1, 4, 32, 64, seed=43), _bf16(1, 4, 64, 32, seed=44)
    sparsity = torch.tensor([0.0, 1.0, 0.0, 1.0]).reshape(1, 1, 1, 4)
    cfg = _sparse_program_config(emulator)
    hifi4 = emulator.WormholeComputeKernelConfig(math_fidelity=emulator.MathFidelity.HiFi4, fp32_dest_acc_en=True)
    compact = _tt(emulator, mesh, torch.zeros(1, 2, 32, 32))
    emulator.sparse_matmul(_tt(emulator, mesh, a), _tt(emulator, mesh, b), sparsity=_tt(emulator, mesh, sparsity, layout="ROW_MAJOR_LAYOUT"),
                           program_config=cfg, nnz=2, is_input_a_sparse=True, optional_output_tensor=compact,
                           compute_kernel_config=hifi4)
    golden = _golden(real_ttnn, "sparse_matmul")
    gold = golden(a, b, sparsity=sparsity, nnz=2, is_input_a_sparse=True, optional_output_tensor=torch.zeros(1, 2, 32, 32))
    assert ((_out(emulator, compact) - gold).abs() <= 2.0**-7 * (a.abs()[:, [1, 3]] @ b.abs()[:, [1, 3]]) + 1e-6).all()
    ids = torch.tensor([[2, 0, 3]])
    a2 = _bf16(2, 1, 32, 64, seed=45)
    indexed = _out(emulator, emulator.sparse_matmul(
        _tt(emulator, mesh, a2), _tt(emulator, mesh, b), sparsity=_tt(emulator, mesh, torch.zeros(2, 1, 1, 4), layout="ROW_MAJOR_LAYOUT"),
        program_config=cfg, indices=_tt(emulator, mesh, ids, "uint16", "ROW_MAJOR_LAYOUT"), compute_kernel_config=hifi4))
    gold = golden(a2, b, sparsity=torch.zeros(2, 1, 1, 4), indices=ids)
    scale = golden(a2.abs(), b.abs(), sparsity=torch.zeros(2, 1, 1, 4), indices=ids)
    assert indexed.shape == gold.shape and ((indexed - gold).abs() <= 2.0**-7 * scale + 1e-6).all()


def test_moe_expert_token_remap(real_ttnn, emulator):
    devices, experts, b, s, k = 4, 8, 2, 8, 2
    g = _gen(46)
    topk = torch.rand(devices, b, s, experts, generator=g).to(torch.bfloat16).float()
    meta = torch.stack([torch.randperm(experts, generator=g)[:k] for _ in range(devices * b * s)]).reshape(devices, b, s, k)
    mapping = torch.zeros(1, 1, experts, devices)
    mapping[0, 0, torch.arange(experts), torch.tensor([3, 0, 2, 1, 0, 3, 1, 2])] = 1
    device = emulator.open_mesh_device(emulator.MeshShape(2, 2))
    try:
        shard0 = emulator.ShardTensorToMesh(device, dim=0)
        rm = dict(layout=emulator.ROW_MAJOR_LAYOUT, device=device)
        out, reduced = emulator.moe_expert_token_remap(
            emulator.from_torch(topk, dtype=emulator.bfloat16, mesh_mapper=shard0, **rm),
            emulator.from_torch(mapping, dtype=emulator.uint16, mesh_mapper=emulator.ReplicateTensorToMesh(device), **rm),
            emulator.from_torch(meta, dtype=emulator.uint16, mesh_mapper=shard0, **rm), reduction_size=4)
        compose = emulator.ConcatMeshToTensor(device, dim=0)
        got, got_reduced = emulator.to_torch(out, mesh_composer=compose).float(), emulator.to_torch(reduced, mesh_composer=compose)
    finally:
        emulator.close_mesh_device(device)
    gold, gold_reduced = _golden(real_ttnn, "moe_expert_token_remap")(topk, mapping, meta, reduction_size=4)
    _check(got, gold.float(), EXACT, "moe_expert_token_remap mapping")
    assert torch.equal(got_reduced.to(torch.int64), gold_reduced.reshape(got_reduced.shape).to(torch.int64)), "reduced"


@pytest.mark.parametrize("name", ["eq", "ne"])
def test_comparison_and_tensor_operators(real_ttnn, emulator, mesh, name):
    a = torch.round(_bf16(32, 64, seed=47) * 2) / 2
    b = torch.round(_bf16(32, 64, seed=48) * 2) / 2
    ta, tb = _tt(emulator, mesh, a), _tt(emulator, mesh, b)
    gold = _golden(real_ttnn, name)(a, b)
    _check(_out(emulator, getattr(emulator, name)(ta, tb)), gold.float(), EXACT, name)
    _check(_out(emulator, (ta == tb) if name == "eq" else (ta != tb)), gold.float(), EXACT, f"Tensor operator {name}")


def test_rdiv_and_divide(real_ttnn, emulator, mesh):
    x = (_bf16(32, 64, seed=49).abs() + 0.25).to(torch.bfloat16).float()
    t = _tt(emulator, mesh, x, "float32")
    _check(_out(emulator, emulator.rdiv(t, 3.0)), _golden(real_ttnn, "rdiv")(x, 3.0), ONE_ULP, "rdiv")
    _check(_out(emulator, 3.0 / t), _golden(real_ttnn, "rdiv")(x, 3.0), ONE_ULP, "Tensor.__rtruediv__")
    y = (_bf16(32, 64, seed=50).abs() + 0.5).to(torch.bfloat16).float()
    _check(_out(emulator, emulator.divide(t, _tt(emulator, mesh, y, "float32"))), _golden(real_ttnn, "divide")(x, y),
           ONE_ULP, "divide")
