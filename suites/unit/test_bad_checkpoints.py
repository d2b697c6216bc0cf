"""Bad model directories give one clear error naming the file or key (docs/DESIGN.md section 8)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from deepseek_tt.weights import CheckpointError, LazyStateDict, load_hf_config
from reference_models.reference import load_reference_model

pytestmark = pytest.mark.unit

KEY = "model.layers.0.self_attn.q_b_proj.weight"


@pytest.fixture
def broken(preset_checkpoint, tmp_path):
    """A fresh copy of the tiny checkpoint to damage."""
    target = tmp_path / "model"
    shutil.copytree(preset_checkpoint("tiny"), target)
    return target


def _index(path):
    return json.loads((path / "model.safetensors.index.json").read_text())


def _rewrite_shard(path, key, change):
    shard = path / _index(path)["weight_map"][key]
    tensors = load_file(str(shard))
    change(tensors)
    save_file(tensors, str(shard), metadata={"format": "pt"})


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model directory '.*nowhere' does not exist"):
        LazyStateDict(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_hf_config(tmp_path / "nowhere")


def test_missing_index(broken):
    (broken / "model.safetensors.index.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors\.index\.json"):
        LazyStateDict(broken)


def test_missing_shard(broken):
    shard = _index(broken)["weight_map"][KEY]
    (broken / shard).unlink()
    lazy = LazyStateDict(broken)
    with pytest.raises(FileNotFoundError, match=rf"{shard}: shard missing .*{KEY}"):
        lazy[KEY]
    with pytest.raises(FileNotFoundError, match="shard missing"):
        load_reference_model(broken)


def test_fp8_weight_without_scale(broken):
    index = _index(broken)
    del index["weight_map"][KEY + "_scale_inv"]
    (broken / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=rf"fp8 weight '{KEY}' has no scale '{KEY}_scale_inv'"):
        LazyStateDict(broken, dequantize=True)[KEY]
    with pytest.raises(CheckpointError, match="has no scale"):
        LazyStateDict(broken).validate()


def test_scale_of_the_wrong_shape(broken):
    _rewrite_shard(broken, KEY, lambda t: t.update({KEY + "_scale_inv": torch.ones(2, 2)}))
    with pytest.raises(CheckpointError, match=rf"'{KEY}_scale_inv' has shape \(2, 2\), expected \(1, 1\)"):
        LazyStateDict(broken, dequantize=True)[KEY]
    with pytest.raises(CheckpointError, match="expected"):
        LazyStateDict(broken).validate()


@pytest.mark.parametrize("field", ["kv_lora_rank", "n_group", "rope_scaling"])
def test_config_missing_a_required_field(broken, field):
    config = json.loads((broken / "config.json").read_text())
    del config[field]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"config\.json: missing required field.*{field}"):
        load_hf_config(broken)


def test_config_not_deepseek_and_not_json(broken):
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="model_type is 'llama', expected 'deepseek_v3'"):
        load_hf_config(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_hf_config(broken)


def test_unknown_key_names_the_directory(broken):
    with pytest.raises(KeyError, match="model.layers.9.mlp"):
        LazyStateDict(broken)["model.layers.9.mlp.gate.weight"]
