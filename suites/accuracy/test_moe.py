"""MoE gate, routed experts and the MoE block against transformers, galaxy-tiny, emulated 1x1 and 4x8 meshes.

- Gate (``DeepseekV3TopkRouter``): the exact expert indices after a stable sort; the routing weights in
  absolute terms (PCC, relative error, norm ratio against the reference's weights, and under
  ``norm_topk_prob`` every token's weights sum to ``routed_scaling_factor``).
- Routed experts (``DeepseekV3Experts``): every expert's output on the same tokens (expert parallel: each
  device computes its own experts); every expert is checked (PCC and magnitude), the worst one recorded.
- MoE block (``DeepseekV3MoE``: gate, dispatch, experts, combine, weighting, reduce, shared expert):
  prefill (one user, seq 128 and 1024) and decode (32 users per mesh row).

The layer's weights are converted once per mesh shape (module-scoped) with the default dtype policy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek_tt.accuracy.checks import check_against_reference, compare
from deepseek_tt.accuracy.thresholds import GATE_WEIGHT_SUM_TOLERANCE
from deepseek_tt.backend import ttnn
from deepseek_tt.modules.base import mesh_shape
from deepseek_tt.modules.experts import Experts, experts_per_device
from deepseek_tt.modules.layout import replicated_row, residual_to_device, residual_to_torch
from deepseek_tt.modules.moe import MoE
from deepseek_tt.modules.moe_gate import MoEGate
from reference_models.reference import get_experts, get_gate, get_moe
from suites.accuracy.model_lib import MESHES, USERS_PER_ROW, activations, layer_weights, mesh_name, reference_model

pytestmark = pytest.mark.accuracy

MOE_LAYER = 1
CASES = [
    pytest.param("prefill", 128, marks=pytest.mark.quick, id="prefill-seq128"),
    pytest.param("prefill", 1024, id="prefill-seq1024"),
    pytest.param("decode", 1, marks=pytest.mark.quick, id="decode-users32"),
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], dict[str, Any]]:
    """Weight configs of the MoE layer per mesh shape, converted on first use (files are host dumps)."""
    return {"root": tmp_path_factory.mktemp("moe_weights")}


def moe_weight_config(converted: dict, mesh_device: Any) -> dict[str, Any]:
    shape = mesh_shape(mesh_device)
    if shape not in converted:
        model = reference_model()
        weights = layer_weights(model, MOE_LAYER, "mlp.")
        converted[shape] = MoE.convert_weights(model.config, weights, Path(converted["root"]) / mesh_name(mesh_device), mesh_device, progress=False)
    return converted[shape]


def _tokens(mode: str, seq_len: int, mesh_device: Any) -> int:
    return seq_len if mode == "prefill" else USERS_PER_ROW * mesh_shape(mesh_device)[0]


def _check(record_result, module: str, mode: str, expected: torch.Tensor, actual: torch.Tensor, mesh_device: Any, seq_len: int,
           policy: str = "default", **extra: Any) -> None:
    """PCC + magnitude of ``actual`` against the table, recorded and asserted."""
    batch = 1 if mode == "prefill" else USERS_PER_ROW * mesh_shape(mesh_device)[0]
    check_against_reference(module, mode, policy, expected, actual, record_result, what=f"{module} {mode} ({policy}) on {mesh_name(mesh_device)}",
                            seq_len=seq_len, batch=batch, mesh=mesh_name(mesh_device), **extra)


def _full_hidden_to_device(x: torch.Tensor, mesh_device: Any, *, decode: bool) -> Any:
    """``[tokens, hidden]`` -> ``[1, 1, T, hidden]`` per device, replicated over columns (the gate's input);
    decode: row r holds users r*U .. r*U+U-1; prefill: every row holds the sequence."""
    rows, cols = mesh_shape(mesh_device)
    stacked = x.reshape(rows, 1, -1, x.shape[-1]) if decode else x.reshape(1, 1, *x.shape)
    return ttnn.from_torch(
        stacked.contiguous(),
        dtype=ttnn.bfloat16,
        layout=ttnn.TILE_LAYOUT,
        device=mesh_device,
        mesh_mapper=ttnn.ShardTensor2dMesh(mesh_device, mesh_shape=(rows, cols), dims=(0 if decode else None, None)),
    )


def _rows_to_torch(t: Any, mesh_device: Any, *, decode: bool) -> torch.Tensor:
    """``[1, 1, T, K]`` per device (replicated over columns) -> ``[tokens, K]`` (prefill: device 0, every device checked equal)."""
    rows, cols = mesh_shape(mesh_device)
    full = ttnn.to_torch(t, mesh_composer=ttnn.ConcatMesh2dToTensor(mesh_device, mesh_shape=(rows, cols), dims=(0, 1)))
    if not decode:  # every device holds the whole sequence's result: all must agree
        return replicated_row(full.flatten(0, 1), "MoE gate prefill (every device)").reshape(-1, full.shape[-1])
    full = full[:, :1]  # one column
    return full.reshape(-1, full.shape[-1])


@pytest.mark.parametrize("mesh_device", MESHES, indirect=True)
@pytest.mark.parametrize("mode, seq_len", CASES)
def test_moe_gate(mesh_device, mode, seq_len, tmp_path, record_result):
    model = reference_model()
    config, decode = model.config, mode == "decode"
    weights = layer_weights(model, MOE_LAYER, "mlp.gate.")
    wc = MoEGate.convert_weights(config, weights, tmp_path / "gate", mesh_device)
    mc = (MoEGate.decode_model_config if decode else MoEGate.prefill_model_config)(config, mesh_device)
    cfg = MoEGate.run_config(mc, wc, MoEGate.create_state(config, mesh_device))

    x = activations(_tokens(mode, seq_len, mesh_device), config.hidden_size, seed=seq_len).to(torch.bfloat16)
    tt_weights, tt_indices = MoEGate.forward_decode(_full_hidden_to_device(x, mesh_device, decode=decode), cfg) if decode else MoEGate.forward_prefill(
        _full_hidden_to_device(x, mesh_device, decode=decode), cfg
    )
    tt_weights = _rows_to_torch(tt_weights, mesh_device, decode=decode).float()
    tt_indices = _rows_to_torch(tt_indices, mesh_device, decode=decode).long()
    with torch.no_grad():
        _, ref_weights, ref_indices = get_gate(model, MOE_LAYER)(x.float())

    # Compare expert sets (stable sort of the ids) and each expert's weight.
    ref_sorted, ref_order = torch.sort(ref_indices, dim=-1, stable=True)
    tt_sorted, tt_order = torch.sort(tt_indices, dim=-1, stable=True)
    mismatched = int((ref_sorted != tt_sorted).any(dim=-1).sum())
    record_result(module="moe_gate", mode=mode, metric="tokens_with_other_experts", value=mismatched, threshold=0, seq_len=seq_len,
                  mesh=mesh_name(mesh_device), higher_is_better=False)
    # Each row's weights sum to routed_scaling_factor under norm_topk_prob (bf16 output: a few ulps).
    assert config.norm_topk_prob, "galaxy-tiny normalises its routing weights; the sum check below relies on it"
    sums = tt_weights.double().sum(-1)
    scale = float(config.routed_scaling_factor)
    sum_error = float(((sums - scale).abs() / scale).max())
    record_result(module="moe_gate", mode=mode, metric="weight_sum_relative_error", value=sum_error, threshold=GATE_WEIGHT_SUM_TOLERANCE,
                  seq_len=seq_len, mesh=mesh_name(mesh_device), higher_is_better=False, routed_scaling_factor=scale)
    assert mismatched == 0, f"gate {mode} on {mesh_name(mesh_device)}: {mismatched} of {len(x)} tokens chose other experts"
    _check(record_result, "moe_gate", mode, ref_weights.gather(1, ref_order), tt_weights.gather(1, tt_order), mesh_device, seq_len)
    worst = int(((sums - scale).abs()).argmax())
    assert sum_error <= GATE_WEIGHT_SUM_TOLERANCE, (
        f"gate {mode} on {mesh_name(mesh_device)}: token {worst}'s routing weights sum to {float(sums[worst]):.5f}, "
        f"expected routed_scaling_factor {scale} (relative error {sum_error:.2e} > {GATE_WEIGHT_SUM_TOLERANCE})"
    )


@pytest.mark.parametrize("mesh_device", MESHES, indirect=True)
@pytest.mark.parametrize("mode", [pytest.param("prefill", marks=pytest.mark.quick), "decode"])
def test_routed_experts(mesh_device, mode, converted, record_result):
    """Every expert on the same N tokens: N = 128 (prefill) or R * 32 (the rows a decode dispatch gathers)."""
    model = reference_model()
    config, decode = model.config, mode == "decode"
    wc = moe_weight_config(converted, mesh_device)["experts"]
    mc = (Experts.decode_model_config if decode else Experts.prefill_model_config)(config, mesh_device)
    cfg = Experts.run_config(mc, wc, Experts.create_state(config, mesh_device))
    per_device = experts_per_device(config, mesh_device)

    tokens = _tokens(mode, 128, mesh_device)
    x = activations(tokens, config.hidden_size, seed=7).to(torch.bfloat16)
    tt_x = ttnn.from_torch(
        x.reshape(1, 1, tokens, -1).expand(1, per_device, tokens, -1).contiguous(),
        dtype=ttnn.bfloat16,
        layout=ttnn.TILE_LAYOUT,
        device=mesh_device,
        memory_config=cfg["w1"].memory_config,
        mesh_mapper=ttnn.ReplicateTensorToMesh(mesh_device),
    )
    forward = Experts.forward_decode if decode else Experts.forward_prefill
    out = ttnn.to_torch(forward(tt_x, cfg), mesh_composer=ttnn.ConcatMeshToTensor(mesh_device, dim=1)).float()[0]  # [E, N, H]

    experts = get_experts(model, MOE_LAYER)
    with torch.no_grad():
        pairs = [(experts(x.float(), torch.full((tokens, 1), e), torch.ones(tokens, 1)), out[e]) for e in range(config.n_routed_experts)]
    values = [compare(expected, actual)["pcc"] for expected, actual in pairs]
    worst_expert = int(torch.tensor(values).argmin())
    # The worst expert recorded and checked first (its row carries the id), then every expert.
    _check(record_result, "experts", mode, *pairs[worst_expert], mesh_device, tokens, worst_expert=worst_expert)
    for e, (expected, actual) in enumerate(pairs):
        _check(None, "experts", mode, expected, actual, mesh_device, tokens)


@pytest.mark.parametrize("mesh_device", MESHES, indirect=True)
@pytest.mark.parametrize("mode, seq_len", CASES)
def test_moe(mesh_device, mode, seq_len, converted, record_result):
    model = reference_model()
    config, decode = model.config, mode == "decode"
    wc = moe_weight_config(converted, mesh_device)
    mc = (MoE.decode_model_config if decode else MoE.prefill_model_config)(config, mesh_device)
    cfg = MoE.run_config(mc, wc, MoE.create_state(config, mesh_device))

    x = activations(_tokens(mode, seq_len, mesh_device), config.hidden_size, seed=seq_len + 1)
    forward = MoE.forward_decode if decode else MoE.forward_prefill
    tt_x = residual_to_device(x, mesh_device, decode=decode)
    start = time.perf_counter()
    out = forward(tt_x, cfg)
    tt_seconds = time.perf_counter() - start
    actual = residual_to_torch(out, mesh_device, decode=decode)
    if not decode:  # every row must hold the whole sequence's output
        rows, cols = mesh_shape(mesh_device)
        full = ttnn.to_torch(out, mesh_composer=ttnn.ConcatMesh2dToTensor(mesh_device, mesh_shape=(rows, cols), dims=(0, 3)))
        assert all(torch.equal(full[0], full[r]) for r in range(rows)), "MoE prefill: mesh rows disagree"
    start = time.perf_counter()
    with torch.no_grad():
        expected = get_moe(model, MOE_LAYER)(x.to(torch.bfloat16).float()[None])[0]
    ref_seconds = time.perf_counter() - start
    record_result(module="moe", mode=mode, metric="forward_time_vs_reference", value=tt_seconds / ref_seconds, seq_len=seq_len,
                  mesh=mesh_name(mesh_device), higher_is_better=False, tt_s=round(tt_seconds, 3), reference_s=round(ref_seconds, 3))
    _check(record_result, "moe", mode, expected, actual, mesh_device, seq_len)


@pytest.mark.parametrize("mesh_device", [pytest.param((4, 8), id="mesh4x8")], indirect=True)
def test_moe_prefill_length_not_split_by_rows(mesh_device, converted, record_result):
    """Seq 100 on 4 rows: every row routes the whole sequence (no row partition) and must still match."""
    model = reference_model()
    cfg = MoE.run_config(MoE.prefill_model_config(model.config, mesh_device), moe_weight_config(converted, mesh_device),
                         MoE.create_state(model.config, mesh_device))
    x = activations(100, model.config.hidden_size, seed=100)
    actual = residual_to_torch(MoE.forward_prefill(residual_to_device(x, mesh_device, decode=False), cfg), mesh_device, decode=False)
    with torch.no_grad():
        expected = get_moe(model, MOE_LAYER)(x.to(torch.bfloat16).float()[None])[0]
    _check(record_result, "moe", "prefill", expected, actual, mesh_device, 100)


@pytest.mark.parametrize("mesh_device", [pytest.param((4, 8), id="mesh4x8")], indirect=True)
@pytest.mark.parametrize("mode", ["prefill", "decode"])
def test_moe_high_precision(mesh_device, mode, tmp_path, record_result):
    """The ``high_precision`` dtype policy (bf16 experts, fp32 router): the MoE at its threshold."""
    model = reference_model()
    config, decode, policy = model.config, mode == "decode", "high_precision"
    weights = MoE.convert_weights(config, layer_weights(model, MOE_LAYER, "mlp."), tmp_path / "moe", mesh_device, dtype_policy=policy, progress=False)
    mc = (MoE.decode_model_config if decode else MoE.prefill_model_config)(config, mesh_device, dtype_policy=policy)
    cfg = MoE.run_config(mc, weights, MoE.create_state(config, mesh_device))
    x = activations(_tokens(mode, 128, mesh_device), config.hidden_size, seed=5)
    out = (MoE.forward_decode if decode else MoE.forward_prefill)(residual_to_device(x, mesh_device, decode=decode), cfg)
    actual = residual_to_torch(out, mesh_device, decode=decode)
    with torch.no_grad():
        expected = get_moe(model, MOE_LAYER)(x.to(torch.bfloat16).float()[None])[0]
    _check(record_result, "moe", mode, expected, actual, mesh_device, 128 if not decode else 1, policy=policy)
