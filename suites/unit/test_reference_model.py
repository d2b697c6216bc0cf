"""The random reference is realistic (features matter) and its submodules come with official key names."""

import copy

import pytest
import torch
from transformers import DeepseekV3ForCausalLM

from reference_models.presets import get_preset
from reference_models.reference import (
    build_reference_model,
    get_attention,
    get_embedding,
    get_experts,
    get_gate,
    get_layer,
    get_mlp,
    get_moe,
    get_rotary_embedding,
    get_shared_experts,
    layer_state_dict,
    official_state_dict,
)
from reference_models.state_dict_keys import official_weight_specs

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tiny_model():
    return build_reference_model(get_preset("tiny"), seed=0)


def test_same_seed_same_weights_other_seed_other_weights(tiny_model):
    again = build_reference_model(get_preset("tiny"), seed=0)
    other = build_reference_model(get_preset("tiny"), seed=1)
    key = "model.layers.0.self_attn.q_a_proj.weight"
    assert torch.equal(official_state_dict(tiny_model)[key], official_state_dict(again)[key])
    assert not torch.equal(official_state_dict(tiny_model)[key], official_state_dict(other)[key])


def test_a_layer_does_not_depend_on_the_layer_count(tiny_model):
    one = build_reference_model(get_preset("tiny", num_layers=1), seed=0)
    for key, value in layer_state_dict(one, 0).items():
        assert torch.equal(value, layer_state_dict(tiny_model, 0)[key])


def test_getters_return_the_modules(tiny_model):
    assert get_mlp(tiny_model, 0) is get_layer(tiny_model, 0).mlp
    assert get_gate(tiny_model, 1) is get_moe(tiny_model, 1).gate
    assert get_experts(tiny_model, 1).gate_up_proj.shape == (16, 2 * 64, 128)
    assert get_shared_experts(tiny_model, 1).down_proj.weight.shape == (128, 64)
    with pytest.raises(ValueError, match="MoE layer"):
        get_mlp(tiny_model, 1)
    with pytest.raises(ValueError, match="dense layer"):
        get_moe(tiny_model, 0)
    with pytest.raises(IndexError, match="out of range"):
        get_layer(tiny_model, 2)


def test_layer_state_dict_uses_official_keys(tiny_model):
    sd = layer_state_dict(tiny_model, 1)
    expected = {k for k in official_weight_specs(tiny_model.config) if k.startswith("model.layers.1.")}
    assert set(sd) == expected
    fused = get_experts(tiny_model, 1).gate_up_proj[3]
    assert torch.equal(sd["model.layers.1.mlp.experts.3.gate_proj.weight"], fused[:64])
    assert torch.equal(sd["model.layers.1.mlp.experts.3.up_proj.weight"], fused[64:])


def test_official_keys_are_what_save_pretrained_writes(tiny_model, tmp_path):
    from safetensors import safe_open

    tiny_model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(official_weight_specs(tiny_model.config))
        key = "model.layers.1.mlp.experts.5.up_proj.weight"
        assert torch.equal(f.get_tensor(key), official_state_dict(tiny_model)[key])


def test_attention_is_far_from_uniform(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (1, 32))
    with torch.no_grad():
        out = tiny_model(ids, output_attentions=True)
    probs = out.attentions[0][0, :, -1, :]  # last query over 32 keys, per head
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    assert entropy.max() < 0.85 * torch.log(torch.tensor(32.0))


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("feature", ["correction_bias", "yarn", "grouped_routing", "shared_experts", "norm"])
def test_turning_a_feature_off_moves_the_outputs(tiny_model, feature):
    ids = torch.randint(0, tiny_model.config.vocab_size, (1, 24))
    base = _logits(tiny_model, ids)
    if feature == "yarn":
        config = copy.deepcopy(tiny_model.config)
        config.rope_parameters = {"rope_type": "default", "rope_theta": 10000}
        other = build_reference_model(config, seed=0)
    else:
        other = copy.deepcopy(tiny_model)
        moe = get_moe(other, 1)
        if feature == "correction_bias":
            moe.gate.e_score_correction_bias.zero_()
        elif feature == "grouped_routing":
            moe.gate.topk_group = moe.gate.num_group
        elif feature == "shared_experts":
            moe.shared_experts.down_proj.weight.data.zero_()
        elif feature == "norm":
            get_layer(other, 0).input_layernorm.weight.data.fill_(1.0)
    moved = (base - _logits(other, ids)).abs().max()
    assert moved > 1e-2 * base.abs().max(), f"turning off {feature} barely changed the logits ({moved})"


def test_router_keeps_fp32_in_a_bf16_model():
    model = build_reference_model(get_preset("tiny"), seed=0, dtype=torch.bfloat16)
    assert get_gate(model, 1).weight.dtype == torch.float32
    assert get_gate(model, 1).e_score_correction_bias.dtype == torch.float32
    assert get_attention(model, 0).q_b_proj.weight.dtype == torch.bfloat16
    assert get_embedding(model).weight.dtype == torch.bfloat16
    assert isinstance(model, DeepseekV3ForCausalLM) and get_rotary_embedding(model).inv_freq.dtype == torch.float32
