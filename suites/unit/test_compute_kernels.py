"""Compute-kernel configs follow the dtype policy in every module (deepseek_tt.config.compute_kernels)."""

from __future__ import annotations

import pytest

from deepseek_tt.backend import ttnn
from deepseek_tt.config.compute_kernels import ROLES, compute_kernel_config
from deepseek_tt.config.dtype_policy import DTYPE_POLICIES
from deepseek_tt.modules.decoder_block import DecoderBlock
from deepseek_tt.modules.lm_head import LMHead
from deepseek_tt.modules.mla import MLA
from deepseek_tt.modules.mlp import MLP
from reference_models.presets import get_preset

pytestmark = [pytest.mark.unit, pytest.mark.quick]

EXPECTED = {"bfloat16": "HiFi4", "float32": "HiFi4", "bfloat8_b": "HiFi2", "bfloat4_b": "LoFi"}


@pytest.mark.parametrize("policy", sorted(DTYPE_POLICIES))
@pytest.mark.parametrize("role", [r for r in ROLES if r != "sdpa"])
def test_fidelity_is_the_one_paired_with_the_policy_dtype(policy, role) -> None:
    cfg = compute_kernel_config(policy, role)
    assert cfg.math_fidelity == getattr(ttnn.MathFidelity, EXPECTED[getattr(DTYPE_POLICIES[policy], role)])
    assert cfg.fp32_dest_acc_en and not cfg.math_approx_mode


def test_unknown_role_is_named() -> None:
    with pytest.raises(KeyError, match="softmax"):
        compute_kernel_config("default", "softmax")


@pytest.mark.parametrize("mode", ["prefill", "decode"])
@pytest.mark.parametrize("policy, fidelity", [("default", "HiFi2"), ("high_precision", "HiFi4")])
def test_mla_projections_follow_the_attention_dtype(mesh, mode, policy, fidelity) -> None:
    config = get_preset("tiny", num_layers=1)
    cfg = getattr(MLA, f"{mode}_model_config")(config, mesh, dtype_policy=policy)
    kernels = {name: c.compute_kernel_config for name, c in cfg.items() if hasattr(c, "input_tensor_b")}
    assert kernels, "MLA has linear configs"
    assert {k.math_fidelity for k in kernels.values()} == {getattr(ttnn.MathFidelity, fidelity)}, kernels


@pytest.mark.parametrize("policy, fidelity", [("default", "HiFi2"), ("high_precision", "HiFi4")])
def test_decoder_block_passes_its_policy_to_attention_and_mlp(mesh, policy, fidelity) -> None:
    config = get_preset("tiny", num_layers=1)
    cfg = DecoderBlock.prefill_model_config(config, mesh, dtype_policy=policy)
    expected = getattr(ttnn.MathFidelity, fidelity)
    mla = {c.compute_kernel_config.math_fidelity for c in cfg["mla"].values() if hasattr(c, "input_tensor_b")}
    assert mla == {expected}
    assert cfg["mlp"]["w1"].compute_kernel_config.math_fidelity == expected
    assert MLP.model_config(config, mesh, dtype_policy=policy)["w2"].compute_kernel_config.math_fidelity == expected
    head = LMHead.model_config(config, mesh, dtype_policy=policy)
    assert {c.compute_kernel_config.math_fidelity for c in head.values() if hasattr(c, "compute_kernel_config")} == {expected}
