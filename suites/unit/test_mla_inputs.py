"""MLA turns bad weights and configs into one clear error (deepseek_tt.modules.mla)."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.modules.mla import HF_KEYS, MLA
from reference_models.presets import get_preset

pytestmark = [pytest.mark.unit, pytest.mark.quick]


@pytest.fixture
def config():
    return get_preset("tiny", num_layers=1)


@pytest.fixture
def state_dict(config):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention

    return DeepseekV3Attention(config, layer_idx=0).state_dict()


def test_state_dict_keys_are_the_transformers_names(state_dict) -> None:
    assert set(state_dict) == set(HF_KEYS)


def test_missing_weight_is_named(config, state_dict, mesh, tmp_path) -> None:
    del state_dict["kv_b_proj.weight"]
    with pytest.raises(KeyError, match="kv_b_proj.weight"):
        MLA.convert_weights(config, state_dict, tmp_path, mesh)
    assert not any(tmp_path.iterdir()), "nothing may be written before the inputs are checked"


def test_wrong_shape_is_named(config, state_dict, mesh, tmp_path) -> None:
    state_dict["o_proj.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"o_proj.weight.*\(3, 3\)"):
        MLA.convert_weights(config, state_dict, tmp_path, mesh)


def test_heads_must_split_over_columns(config, mesh) -> None:
    device = ttnn.open_mesh_device(ttnn.MeshShape(1, 8))  # tiny has 4 heads
    try:
        with pytest.raises(ValueError, match="4 attention heads do not split over 8 mesh columns"):
            MLA.prefill_model_config(config, device)
    finally:
        ttnn.close_mesh_device(device)


def test_q_proj_only_config_is_refused(config, mesh) -> None:
    config.q_lora_rank = None
    with pytest.raises(ValueError, match="q_lora_rank"):
        MLA.decode_model_config(config, mesh)


def test_create_state_needs_a_paged_config(config, mesh) -> None:
    with pytest.raises(ValueError, match="paged_config"):
        MLA.create_state(config, mesh)
