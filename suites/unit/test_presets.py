"""Presets keep every DeepSeek-V3 feature, shard like the real model, and reject unknown names."""

import pytest

from reference_models.presets import PRESET_NAMES, get_preset

pytestmark = pytest.mark.unit


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="unknown preset 'huge'.*tiny, galaxy-tiny, full"):
        get_preset("huge")


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_keeps_every_feature(name):
    c = get_preset(name)
    assert c.q_lora_rank and c.kv_lora_rank and c.qk_rope_head_dim and c.qk_nope_head_dim
    assert c.rope_parameters["rope_type"] == "yarn" and c.rope_parameters["factor"] == 40
    assert 1 <= c.first_k_dense_replace < c.num_hidden_layers  # dense and MoE layers
    assert c.n_group > 1 and 1 <= c.topk_group < c.n_group and c.n_routed_experts % c.n_group == 0
    assert c.num_experts_per_tok <= c.topk_group * c.n_routed_experts // c.n_group
    assert c.n_shared_experts == 1 and c.norm_topk_prob and c.routed_scaling_factor == 2.5
    assert (c.bos_token_id, c.eos_token_id) == (0, 1)


def test_galaxy_tiny_shards_across_a_4x8_mesh():
    c = get_preset("galaxy-tiny")
    devices, tile = 32, 32
    assert c.hidden_size % (devices * tile) == 0 and c.vocab_size % (devices * tile) == 0
    assert c.num_attention_heads % devices == 0
    assert c.n_routed_experts % devices == 0
    assert c.moe_intermediate_size % (8 * tile) == 0 and c.intermediate_size % (8 * tile) == 0


def test_full_has_the_real_dims():
    c = get_preset("full")
    assert (c.hidden_size, c.num_hidden_layers, c.first_k_dense_replace, c.vocab_size) == (7168, 61, 3, 129280)
    assert (c.n_routed_experts, c.num_experts_per_tok, c.n_group, c.topk_group) == (256, 8, 8, 4)
    assert (c.q_lora_rank, c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim) == (1536, 512, 128, 64, 128)
    assert (c.intermediate_size, c.moe_intermediate_size, c.num_attention_heads) == (18432, 2048, 128)


def test_num_layers_cuts_the_model():
    assert get_preset("full", num_layers=2).num_hidden_layers == 2
    with pytest.raises(ValueError, match="num_layers"):
        get_preset("tiny", num_layers=0)
