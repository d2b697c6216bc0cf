"""Written checkpoints have the official DeepSeek-V3 layout and load in transformers offline."""

import json
import math
import os
import socket

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, DeepseekV3ForCausalLM

from deepseek_tt.weights import LazyStateDict, dequantize_fp8_blocks, load_hf_config
from reference_models.checkpoint import write_checkpoint, write_checkpoint_from_model
from reference_models.presets import get_preset
from reference_models.reference import build_reference_model, load_reference_model, official_state_dict

pytestmark = pytest.mark.unit


@pytest.fixture
def offline(monkeypatch):
    """No network: the hub is offline and any socket connection fails."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def tiny_dir(preset_checkpoint):
    return preset_checkpoint("tiny")


def test_config_json_is_official_style(tiny_dir):
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["quantization_config"] == {
        "activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]
    }
    assert config["rope_scaling"]["type"] == "yarn" and config["rope_scaling"]["factor"] == 40
    assert config["rope_theta"] == 10000 and "rope_parameters" not in config
    assert config["topk_method"] == "noaux_tc" and config["scoring_func"] == "sigmoid"
    assert load_hf_config(tiny_dir).rope_parameters["rope_type"] == "yarn"


def test_weights_are_stored_like_the_real_checkpoint(tiny_dir):
    index = json.loads((tiny_dir / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    dtypes = {}
    for shard in shards:
        with safe_open(str(tiny_dir / shard), framework="pt") as f:
            for key in f.keys():
                dtypes[key] = f.get_slice(key).get_dtype()
                if key.endswith("_scale_inv"):
                    rows, cols = f.get_slice(key[: -len("_scale_inv")]).get_shape() if key[: -len("_scale_inv")] in f.keys() else (None, None)
                    if rows is not None:
                        assert tuple(f.get_slice(key).get_shape()) == (math.ceil(rows / 128), math.ceil(cols / 128))
    assert set(dtypes) == set(index["weight_map"])
    assert dtypes["model.layers.0.self_attn.q_a_proj.weight"] == "F8_E4M3"
    assert dtypes["model.layers.1.mlp.experts.7.down_proj.weight"] == "F8_E4M3"
    assert dtypes["model.layers.1.mlp.experts.7.down_proj.weight_scale_inv"] == "F32"
    assert dtypes["model.embed_tokens.weight"] == dtypes["lm_head.weight"] == "BF16"
    assert dtypes["model.layers.0.input_layernorm.weight"] == dtypes["model.layers.1.mlp.gate.weight"] == "BF16"
    assert dtypes["model.layers.1.mlp.gate.e_score_correction_bias"] == "F32"


def test_ragged_edge_blocks_are_written_and_read(tmp_path):
    config = get_preset("galaxy-tiny", num_layers=1)
    path = write_checkpoint(config, tmp_path / "g", tokenizer=None)
    raw = LazyStateDict(path)
    key = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"  # 320 x 1024: 3 row blocks, the last of 64 rows
    assert raw.stored_shape(key) == (320, 1024) and raw.stored_shape(key + "_scale_inv") == (3, 8)
    original = official_state_dict(build_reference_model(config, seed=0))[key]
    restored = LazyStateDict(path, dequantize=True)[key]
    # fp8 e4m3 keeps 3 mantissa bits: relative error at most 2^-4 of each block's values (plus subnormals).
    assert torch.allclose(restored, original, rtol=2**-4, atol=raw[key + "_scale_inv"].max().item() * 2**-9)


def test_loads_in_transformers_offline_with_the_reference_logits(tiny_dir, offline):
    ours = load_reference_model(tiny_dir)
    theirs = DeepseekV3ForCausalLM.from_pretrained(tiny_dir, local_files_only=True, attn_implementation="eager", dtype=torch.float32)
    ids = torch.randint(0, ours.config.vocab_size, (2, 20))
    with torch.no_grad():
        assert torch.equal(theirs(ids).logits, ours(ids).logits)


def test_bf16_load_matches_transformers_and_keeps_the_router_fp32(tiny_dir, offline):
    ours = load_reference_model(tiny_dir, dtype=torch.bfloat16)
    theirs = DeepseekV3ForCausalLM.from_pretrained(tiny_dir, local_files_only=True, attn_implementation="eager", dtype=torch.bfloat16)
    for key, value in theirs.state_dict().items():
        assert value.dtype == ours.state_dict()[key].dtype, key
        assert torch.equal(value, ours.state_dict()[key]), key
    assert theirs.model.layers[1].mlp.gate.weight.dtype == torch.float32


def test_greedy_generation_works(tiny_dir, offline):
    model = DeepseekV3ForCausalLM.from_pretrained(tiny_dir, local_files_only=True, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir), local_files_only=True)
    prompt = tokenizer("def main():", return_tensors="pt")
    assert prompt.input_ids[0, 0].item() == 0  # BOS like DeepSeek's
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False, min_new_tokens=8)
    assert out.shape[1] == prompt.input_ids.shape[1] + 8
    # greedy: each new token is the argmax of the logits given the tokens before it
    with torch.no_grad():
        logits = model(out[:, :-1]).logits
    assert torch.equal(logits[0, prompt.input_ids.shape[1] - 1 :].argmax(-1), out[0, prompt.input_ids.shape[1] :])


def test_write_from_model_round_trips_through_fp8(tmp_path):
    model = build_reference_model(get_preset("tiny"), seed=3)
    path = write_checkpoint_from_model(model, tmp_path / "trained", tokenizer_dir=None)
    raw = LazyStateDict(path)
    loaded = official_state_dict(load_reference_model(path))
    for key, original in official_state_dict(model).items():
        if raw.stored_dtype(key) == "F8_E4M3":
            expected = dequantize_fp8_blocks(raw[key], raw[key + "_scale_inv"])
            assert (loaded[key] - original).abs().max() <= original.abs().max() * 2**-4
        else:
            expected = original.to(raw[key].dtype).float()
        assert torch.equal(loaded[key], expected), key


def test_never_overwrites_a_non_empty_directory(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_checkpoint("tiny", target, tokenizer=None)
    assert (target / "precious.txt").read_text() == "keep me"
    write_checkpoint("tiny", target, tokenizer=None, overwrite=True)
    assert not (target / "precious.txt").exists() and (target / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary leftovers


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        write_checkpoint("tiny", tmp_path / "model", tokenizer="deepseek-v3")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_holds_the_built_reference_weights(tiny_dir):
    """write_checkpoint(preset, seed) stores build_reference_model(preset, seed) (bf16 / fp8-rounded)."""
    built = official_state_dict(build_reference_model(get_preset("tiny"), seed=0))
    raw = LazyStateDict(tiny_dir)
    for key in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.1.mlp.gate.weight", "model.norm.weight"):
        assert torch.equal(raw[key], built[key].to(torch.bfloat16)), key
    bias = "model.layers.1.mlp.gate.e_score_correction_bias"
    assert torch.equal(raw[bias], built[bias])
    key = "model.layers.1.mlp.experts.2.gate_proj.weight"
    from deepseek_tt.weights import quantize_fp8_blocks

    q, scale = quantize_fp8_blocks(built[key])
    assert torch.equal(raw[key].view(torch.uint8), q.view(torch.uint8)) and torch.equal(raw[key + "_scale_inv"], scale)


def test_bf16_generation_equals_rounded_fp32():
    from reference_models.random_weights import ROWS_PER_CHUNK, random_tensor
    from reference_models.state_dict_keys import EMBEDDING, WeightSpec

    spec = WeightSpec((ROWS_PER_CHUNK + 5, 8), EMBEDDING)  # two chunks
    assert torch.equal(random_tensor("k", spec, 0, torch.bfloat16), random_tensor("k", spec, 0).to(torch.bfloat16))
    assert not torch.equal(random_tensor("k", spec, 0), random_tensor("k", spec, 1))


def test_a_plain_save_pretrained_directory_loads_too(tmp_path):
    """bf16/fp32 checkpoints without an index (one model.safetensors, rope_parameters) load as they are."""
    model = build_reference_model(get_preset("tiny"), seed=5)
    model.save_pretrained(tmp_path)
    lazy = LazyStateDict(tmp_path, dequantize=True)
    assert "model.layers.1.mlp.experts.0.gate_proj.weight" in lazy
    loaded = load_reference_model(tmp_path)
    ids = torch.randint(0, model.config.vocab_size, (1, 10))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
