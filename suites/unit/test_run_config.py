"""The run-config merge: placeholders are replaced, every other collision raises naming the key path."""

from __future__ import annotations

import json

import pytest

from deepseek_tt.config.dtype_policy import DEFAULT_POLICY, HIGH_PRECISION_POLICY, get_dtype_policy
from deepseek_tt.config.op_configs import AllGatherConfig, LinearConfig, MulConfig, config_fingerprint_text
from deepseek_tt.config.run_config import (
    FromWeightConfig,
    RunConfigError,
    WeightRecord,
    create_run_config,
)
from deepseek_tt.weights.weight_config_json import weight_config_from_json, weight_config_to_json

pytestmark = pytest.mark.unit




def test_op_config_expands_only_set_fields():
    cfg = LinearConfig(input_tensor_b="W", memory_config="DRAM")
    assert dict(**cfg) == {"input_tensor_b": "W", "memory_config": "DRAM"}
    assert MulConfig().keys() == ()


def test_state_merge_takes_the_device_and_runtime_objects(mesh):
    model = {"all_gather": AllGatherConfig(dim=3, cluster_axis=1), "n": 3}
    state = {"mesh_device": mesh, "cache": "KV"}
    run = create_run_config(model, {}, state)
    assert run["mesh_device"] is mesh and run["cache"] == "KV" and run["n"] == 3
    assert run["all_gather"].cluster_axis == 1


def test_conflicts_name_the_key_path(mesh):
    with pytest.raises(RunConfigError, match=r"^a\.b: both"):
        create_run_config({"a": {"b": 1}}, {}, {"a": {"b": 2}})
    with pytest.raises(RunConfigError, match=r"^w1\.input_tensor_b: FromWeightConfig has no WeightRecord"):
        create_run_config({"w1": LinearConfig(input_tensor_b=FromWeightConfig())}, {}, {"mesh_device": mesh})
    with pytest.raises(RunConfigError, match=r"^w9: the weight config has an entry"):
        create_run_config({"w1": LinearConfig()}, {"w9": WeightRecord("x")}, {"mesh_device": mesh})


def test_missing_weight_file_is_named(tmp_path, mesh):
    model = {"w1": LinearConfig(input_tensor_b=FromWeightConfig())}
    weights = {"w1": {"input_tensor_b": WeightRecord("w1.tensorbin")}}
    with pytest.raises(RunConfigError, match=r"w1\.input_tensor_b: weight file .*w1\.tensorbin does not exist"):
        create_run_config(model, weights, {"mesh_device": mesh}, weight_root=tmp_path)


def test_weight_config_json_round_trip(tmp_path):
    wc = {"mlp": {"w1": {"input_tensor_b": WeightRecord(str(tmp_path / "mlp" / "w1.tensorbin"))}}, "layers": [None]}
    data = weight_config_to_json(wc, root=tmp_path)
    assert json.loads(json.dumps(data)) == data
    back = weight_config_from_json(data)
    assert back["mlp"]["w1"]["input_tensor_b"] == WeightRecord("mlp/w1.tensorbin")


def test_dtype_policies():
    assert get_dtype_policy(None) is DEFAULT_POLICY
    assert get_dtype_policy("high-precision") is HIGH_PRECISION_POLICY
    assert DEFAULT_POLICY.expert_gate_up == "bfloat4_b" and DEFAULT_POLICY.attention == "bfloat8_b"
    high = HIGH_PRECISION_POLICY.to_json()
    assert high.pop("router") == DEFAULT_POLICY.router == "float32"  # the router stays fp32 (exact top-k)
    assert set(high.values()) == {"high_precision", "bfloat16"}
    with pytest.raises(ValueError, match="unknown dtype policy 'fp64'"):
        get_dtype_policy("fp64")


def test_config_json_is_deterministic():
    a = {"x": LinearConfig(dtype=None, transpose_b=True), "y": [1, 2]}
    assert config_fingerprint_text(a) == config_fingerprint_text(dict(a))
    assert '"transpose_b":true' in config_fingerprint_text(a)
