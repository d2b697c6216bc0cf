"""RoPE / YaRN helpers of deepseek_tt.modules.rope against transformers' DeepSeek-V3 rotary code."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DeepseekV3Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    DeepseekV3Attention,
    DeepseekV3RotaryEmbedding,
    apply_rotary_pos_emb_interleave,
)

from deepseek_tt.modules import rope
from reference_models.presets import get_preset, preset_fields

pytestmark = [pytest.mark.unit, pytest.mark.quick]


def _config(preset: str = "galaxy-tiny", **rope_scaling_changes) -> DeepseekV3Config:
    fields = preset_fields(preset)
    if rope_scaling_changes.get("off"):
        fields["rope_scaling"] = None
    else:
        fields["rope_scaling"].update(rope_scaling_changes)
    return DeepseekV3Config(**fields)


CONFIGS = {
    "yarn-official": lambda: get_preset("galaxy-tiny"),
    "yarn-full-dims": lambda: get_preset("full", num_layers=1),
    "yarn-mscale-differs": lambda: _config(mscale=0.707, mscale_all_dim=1.0, factor=8),
    "yarn-off": lambda: _config(off=True),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_frequencies_and_cos_sin_match_transformers(name: str) -> None:
    config = CONFIGS[name]()
    reference = DeepseekV3RotaryEmbedding(config)
    inv_freq, attention_factor = rope.inv_freq_and_attention_factor(config)
    torch.testing.assert_close(inv_freq, reference.inv_freq, rtol=1e-6, atol=0)
    assert attention_factor == pytest.approx(reference.attention_scaling, rel=1e-7)

    positions = torch.tensor([0, 1, 7, 100, 4095, 4096, 50_000, 163_839])
    ref_cos, ref_sin = reference(torch.zeros(1, dtype=torch.float32), positions[None])
    cos, sin = rope.cos_sin_interleaved(config, positions)
    half = cos.shape[-1] // 2
    # transformers computes the angle in fp32 (ours in fp64): allow its rounding, 2 ulp of the angle.
    angle = positions[:, None].double() * inv_freq[None].double()
    allowed = (1e-6 + 2 * angle * 2.0**-24).float()
    # HF lays cos out as [t0..t(d/2-1) | t0..t(d/2-1)]; ours repeats each angle per pair.
    for ours, ref in ((cos[:, 0::2], ref_cos), (cos[:, 1::2], ref_cos), (sin[:, 0::2], ref_sin), (sin[:, 1::2], ref_sin)):
        assert ((ours - ref[0, :, :half]).abs() <= allowed * max(attention_factor, 1.0)).all()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_softmax_scale_matches_transformers(name: str) -> None:
    config = CONFIGS[name]()
    attention = DeepseekV3Attention(copy.deepcopy(config), layer_idx=0)
    assert rope.softmax_scale(config) == pytest.approx(attention.scaling, rel=1e-7)


def test_official_softmax_scale_figure() -> None:
    # docs/HARDWARE.md section 4: 192^-0.5 x (0.1 ln 40 + 1)^2 = 0.13523 for the real DeepSeek-V3 config.
    assert rope.softmax_scale(get_preset("full", num_layers=1)) == pytest.approx(0.13523, abs=5e-6)


def test_yarn_changes_frequencies_and_scale() -> None:
    on, off = get_preset("galaxy-tiny"), _config(off=True)
    assert rope.softmax_scale(on) / rope.softmax_scale(off) == pytest.approx((0.1 * torch.log(torch.tensor(40.0)).item() + 1) ** 2)
    inv_on, _ = rope.inv_freq_and_attention_factor(on)
    inv_off, _ = rope.inv_freq_and_attention_factor(off)
    assert torch.equal(inv_on[:4], inv_off[:4])  # high frequencies extrapolate unchanged
    torch.testing.assert_close(inv_on[-1], inv_off[-1] / 40)  # low frequencies are interpolated by `factor`


def test_interleaved_rotation_equals_transformers_up_to_the_halves_permutation() -> None:
    config = get_preset("galaxy-tiny")
    torch.manual_seed(0)
    seq, heads, dim = 40, 3, config.qk_rope_head_dim
    q = torch.randn(1, heads, seq, dim)
    k = torch.randn(1, 1, seq, dim)
    positions = torch.arange(1000, 1000 + seq)
    ref_cos, ref_sin = DeepseekV3RotaryEmbedding(config)(q, positions[None])
    ref_q, ref_k = apply_rotary_pos_emb_interleave(q, k, ref_cos, ref_sin)

    # The same (fp32) angles as transformers, in the pair layout: this checks the rotation alone.
    half = dim // 2
    cos = ref_cos[0, :, :half].repeat_interleave(2, dim=-1)
    sin = ref_sin[0, :, :half].repeat_interleave(2, dim=-1)
    ours_q = rope.apply_rope_interleaved(q, cos, sin)
    ours_k = rope.apply_rope_interleaved(k, cos, sin)
    torch.testing.assert_close(rope.interleaved_to_halves(ours_q), ref_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rope.interleaved_to_halves(ours_k), ref_k, rtol=1e-5, atol=1e-5)
    # Scores are invariant: the permutation is the same for q and k.
    torch.testing.assert_close(ours_q @ ours_k.transpose(-1, -2), ref_q @ ref_k.transpose(-1, -2), rtol=1e-4, atol=1e-4)


def test_rotation_matrix_is_the_pair_swap() -> None:
    x = torch.randn(5, 32)
    swapped = x @ rope.rotation_matrix()[0, 0]
    torch.testing.assert_close(swapped[:, 0::2], -x[:, 1::2])
    torch.testing.assert_close(swapped[:, 1::2], x[:, 0::2])
    # The torch stand-in of rotary_embedding_llama uses exactly x @ T.
    cos, sin = torch.rand(32), torch.rand(32)
    torch.testing.assert_close(rope.apply_rope_interleaved(x, cos, sin), x * cos + swapped * sin)


def test_layout_permutations_are_inverse() -> None:
    x = torch.randn(2, 64)
    torch.testing.assert_close(rope.halves_to_interleaved(rope.interleaved_to_halves(x)), x)
    assert rope.interleaved_to_halves(torch.arange(6.0)).tolist() == [0, 2, 4, 1, 3, 5]


def test_unsupported_rope_type_is_named() -> None:
    config = get_preset("galaxy-tiny")
    config.rope_parameters = {"rope_type": "longrope", "rope_theta": 10000}
    with pytest.raises(ValueError, match="longrope"):
        rope.inv_freq_and_attention_factor(config)
