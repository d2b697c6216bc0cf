"""LazyStateDict returns exactly what safetensors stores, opens only the shards it needs, and
dequantizes fp8 blocks as transformers (and DeepSeek's kernel) do."""

import json

import pytest
import torch
from safetensors import safe_open
from transformers.integrations.finegrained_fp8 import Fp8Dequantize

from deepseek_tt.weights import LazyStateDict, dequantize_fp8_blocks, quantize_fp8_blocks, scale_grid_shape

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tiny_dir(preset_checkpoint):
    return preset_checkpoint("tiny")


def test_every_key_equals_safetensors(tiny_dir):
    index = json.loads((tiny_dir / "model.safetensors.index.json").read_text())["weight_map"]
    lazy = LazyStateDict(tiny_dir)
    assert list(lazy) == list(index) and len(lazy) == len(index)
    for shard in sorted(set(index.values())):
        with safe_open(str(tiny_dir / shard), framework="pt") as f:
            for key in f.keys():
                got = lazy[key]
                expected = f.get_tensor(key)
                assert got.dtype == expected.dtype and torch.equal(got.view(torch.uint8), expected.view(torch.uint8)), key


def test_keys_read_nothing_and_a_tensor_opens_only_its_shard(tiny_dir):
    lazy = LazyStateDict(tiny_dir)
    keys = list(lazy.keys())
    assert keys and lazy.opened_shards == frozenset()
    key = "model.layers.1.mlp.experts.9.up_proj.weight"
    lazy[key]
    assert lazy.opened_shards == {lazy.shard_of(key)}
    assert len(set(map(lazy.shard_of, keys))) > 2  # the check above is meaningful
    with lazy:
        lazy["model.norm.weight"]
    assert lazy.opened_shards == frozenset()
    assert lazy["model.norm.weight"].shape == (128,)  # reopens on demand


def test_prefix_views_and_layer_filters(tiny_dir):
    lazy = LazyStateDict(tiny_dir)
    attn = lazy.view("model.layers.0.self_attn")
    assert "q_a_proj.weight" in attn and "model.layers.0.self_attn.q_a_proj.weight" not in attn
    assert torch.equal(attn["kv_b_proj.weight"].view(torch.uint8), lazy["model.layers.0.self_attn.kv_b_proj.weight"].view(torch.uint8))
    assert set(attn.view("q_a_proj")) == {"weight", "weight_scale_inv"}
    layer1 = lazy.select_layers([1])
    assert layer1 and all(k.startswith("model.layers.1.") for k in layer1)
    assert "model.embed_tokens.weight" in lazy.select_layers([1], keep_non_layer_keys=True)
    with pytest.raises(KeyError, match="model.layers.0"):
        layer1["model.layers.0.input_layernorm.weight"]


def test_dequantized_view_hides_scales_and_returns_floats(tiny_dir):
    lazy = LazyStateDict(tiny_dir, dequantize=True, dtype=torch.bfloat16)
    assert not any(k.endswith("_scale_inv") for k in lazy)
    assert lazy["model.layers.0.self_attn.o_proj.weight"].dtype == torch.bfloat16
    assert lazy["model.layers.1.mlp.gate.e_score_correction_bias"].dtype == torch.float32  # stored dtype kept


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dequantization_equals_transformers(tiny_dir, dtype):
    raw = LazyStateDict(tiny_dir)
    ours = LazyStateDict(tiny_dir, dequantize=True, dtype=dtype)
    theirs = Fp8Dequantize(hf_quantizer=None)
    checked = 0
    for key in raw:
        if raw.stored_dtype(key) != "F8_E4M3":
            continue
        expected = theirs._dequantize_one(raw[key], raw[key + "_scale_inv"], output_dtype=dtype)
        assert torch.equal(ours[key], expected), key
        checked += 1
    assert checked > 50


@pytest.mark.parametrize("shape", [(576, 7168 // 8), (320, 1024), (128, 100), (300, 260), (1, 1)])
def test_ragged_blocks_follow_deepseeks_weight_dequant(shape):
    weight = torch.randn(shape) * torch.logspace(-3, 1, shape[1])  # very different column scales
    q, scale = quantize_fp8_blocks(weight)
    assert scale.shape == scale_grid_shape(shape)
    expected = torch.empty(shape)
    for i in range(scale.shape[0]):  # DeepSeek's kernel: block (i, j) uses s[i, j], edge blocks cut short
        for j in range(scale.shape[1]):
            rows, cols = slice(i * 128, (i + 1) * 128), slice(j * 128, (j + 1) * 128)
            expected[rows, cols] = q[rows, cols].float() * scale[i, j]
    assert torch.equal(dequantize_fp8_blocks(q, scale), expected)
    assert torch.allclose(expected, weight, rtol=2**-4, atol=scale.max().item() * 2**-9)


def test_dequantization_never_builds_a_full_size_scale(monkeypatch):
    q, scale = quantize_fp8_blocks(torch.randn(512, 300))  # 4 x 3 blocks, ragged last column block
    factors = []
    original = torch.Tensor.mul_

    def spy(self, other):
        factors.append(other.numel() if isinstance(other, torch.Tensor) else 1)
        return original(self, other)

    monkeypatch.setattr(torch.Tensor, "mul_", spy)
    out = dequantize_fp8_blocks(q, scale)
    monkeypatch.undo()
    assert factors and max(factors) <= scale.shape[1]  # at most one scale row at a time, never 512 x 300
    assert torch.equal(out[:128, 256:], q[:128, 256:].float() * scale[0, 2])


def test_zero_block_round_trips():
    weight = torch.zeros(130, 130)
    weight[0, 0] = 1.0
    q, scale = quantize_fp8_blocks(weight)
    assert torch.equal(dequantize_fp8_blocks(q, scale), weight)
