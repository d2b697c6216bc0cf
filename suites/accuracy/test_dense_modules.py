"""RMSNorm (distributed), embedding, dense MLP, shared expert and LM head against transformers.

Galaxy-tiny, same weights on both sides; prefill (one user, seq 128 and 1024) and decode (32 users per
mesh row) on the emulated 1x1 and 4x8 meshes. Thresholds from ``deepseek_tt.accuracy.thresholds``;
PCC, relative error and norm ratio are asserted and recorded.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from deepseek_tt.accuracy.checks import check_against_reference
from deepseek_tt.modules.embedding import Embedding
from deepseek_tt.modules.layout import residual_to_device, residual_to_torch
from deepseek_tt.modules.lm_head import LMHead
from deepseek_tt.modules.mlp import MLP, SharedExpert
from deepseek_tt.modules.rms_norm import DistributedRMSNorm
from reference_models.reference import get_embedding, get_input_norm, get_lm_head, get_mlp, get_shared_experts
from suites.accuracy.model_lib import (
    MESHES,
    activations,
    build,
    decode_users,
    layer_weights,
    mesh_name,
    model_weights,
    reference_model,
    spread_activations,
)

pytestmark = pytest.mark.accuracy

MODES = [pytest.param("prefill", id="prefill"), pytest.param("decode", id="decode")]
#: (mode, sequence length): prefill at 128 and 1024 tokens; decode one token for each of 32 users per row.
CASES = [
    pytest.param("prefill", 128, marks=pytest.mark.quick, id="prefill-seq128"),
    pytest.param("prefill", 1024, id="prefill-seq1024"),
    pytest.param("decode", 1, marks=pytest.mark.quick, id="decode-users32"),
]


def _tokens(mode: str, seq_len: int, mesh_device: Any) -> int:
    return seq_len if mode == "prefill" else decode_users(mesh_device)


def _check(record_result, module: str, mode: str, expected: torch.Tensor, actual: torch.Tensor, mesh_device: Any, seq_len: int) -> None:
    batch = 1 if mode == "prefill" else decode_users(mesh_device)
    check_against_reference(module, mode, "default", expected, actual, record_result, what=f"{module} {mode} on {mesh_name(mesh_device)}",
                            seq_len=seq_len, batch=batch, mesh=mesh_name(mesh_device))


def _residual_module(module, reference, weights, mode, seq_len, mesh_device, tmp_path, record_result, name, inputs=activations):
    model = reference_model()
    cfg = build(module, model.config, weights, mesh_device, tmp_path / name, mode)
    decode = mode == "decode"
    x = inputs(_tokens(mode, seq_len, mesh_device), model.config.hidden_size, seed=seq_len)
    forward = module.forward_decode if decode else module.forward_prefill
    actual = residual_to_torch(forward(residual_to_device(x, mesh_device, decode=decode), cfg), mesh_device, decode=decode)
    with torch.no_grad():
        expected = reference(x)
    _check(record_result, name, mode, expected, actual, mesh_device, seq_len)


@pytest.mark.parametrize("mesh_device", MESHES, indirect=True)
@pytest.mark.parametrize("mode, seq_len", CASES)
def test_distributed_rms_norm(mesh_device, mode, seq_len, tmp_path, record_result):
    """Inputs with per-token RMS over 1e-3..1e2 (``spread_activations``). Bugs it exists to catch: a norm
    that does not normalise (PCC ~0.4 over the spread tokens), a wrong epsilon (0.1 for 1e-6: the small
    tokens shrink), a stats all-gather over the wrong axis or a missing one on 4x8."""
    model = reference_model()
    _residual_module(
        DistributedRMSNorm, get_input_norm(model, 0), layer_weights(model, 0, "input_layernorm."), mode, seq_len, mesh_device, tmp_path,
        record_result, "distributed_rms_norm", inputs=spread_activations,
    )


@pytest.mark.parametrize("mesh_device", MESHES, indirect=True)
@pytest.mark.parametrize("mode, seq_len", CASES)
def test_mlp(mesh_device, mode, seq_len, tmp_path, record_result):
    model = reference_model()
    _residual_module(MLP, get_mlp(model, 0), layer_weights(model, 0, "mlp."), mode, seq_len, mesh_device, tmp_path, record_result, "mlp")


@pytest.mark.quick
@pytest.mark.parametrize("mesh_device", MESHES, indirect=True)
@pytest.mark.parametrize("mode", MODES)
def test_shared_expert(mesh_device, mode, tmp_path, record_result):
    model = reference_model()
    _residual_module(
        SharedExpert, get_shared_experts(model, 1), layer_weights(model, 1, "mlp.shared_experts."), mode, 128, mesh_device, tmp_path, record_result, "shared_expert"
    )


@pytest.mark.parametrize("mesh_device", MESHES, indirect=True)
@pytest.mark.parametrize("mode, seq_len", CASES)
def test_embedding(mesh_device, mode, seq_len, tmp_path, record_result):
    model = reference_model()
    cfg = build(Embedding, model.config, model_weights(model, "model.embed_tokens."), mesh_device, tmp_path / "emb", mode)
    count = _tokens(mode, seq_len, mesh_device)
    tokens = torch.randint(0, model.config.vocab_size, (count,), generator=torch.Generator().manual_seed(count))
    decode = mode == "decode"
    tt_tokens = (Embedding.decode_input if decode else Embedding.prefill_input)(tokens, mesh_device)
    actual = residual_to_torch(Embedding.forward(tt_tokens, cfg), mesh_device, decode=decode)
    with torch.no_grad():
        expected = get_embedding(model)(tokens)
    _check(record_result, "embedding", mode, expected, actual, mesh_device, seq_len)


@pytest.mark.parametrize("mesh_device", MESHES, indirect=True)
@pytest.mark.parametrize("mode, seq_len", CASES)
def test_lm_head(mesh_device, mode, seq_len, tmp_path, record_result):
    model = reference_model()
    cfg = build(LMHead, model.config, model_weights(model, "lm_head."), mesh_device, tmp_path / "lm_head", mode)
    decode = mode == "decode"
    x = activations(_tokens(mode, seq_len, mesh_device), model.config.hidden_size, seed=7)
    logits = (LMHead.forward_decode if decode else LMHead.forward_prefill)(residual_to_device(x, mesh_device, decode=decode), cfg)
    actual = LMHead.logits_to_torch(logits, mesh_device, decode=decode)
    with torch.no_grad():
        expected = get_lm_head(model)(x)
    _check(record_result, "lm_head", mode, expected, actual, mesh_device, seq_len)
