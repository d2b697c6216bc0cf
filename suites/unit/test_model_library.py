"""Model-library contracts that need no accuracy run: configs serialize, bad weights and bad inputs are
refused with one clear message, and the facade's shapes."""

from __future__ import annotations

import json

import pytest
import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.layers import is_moe_layer
from deepseek_tt.config.op_configs import config_fingerprint_text, config_to_json
from deepseek_tt.modules.decoder_block import DecoderBlock, MoEDecoderBlock, block_for_layer
from deepseek_tt.modules.forward_context import ForwardContext, require_context
from deepseek_tt.modules.mlp import MLP
from deepseek_tt.modules.model import Model
from deepseek_tt.modules.rms_norm import DistributedRMSNorm
from deepseek_tt.runtime.tt_model import TtModel
from reference_models.presets import get_preset

pytestmark = pytest.mark.unit


@pytest.fixture
def galaxy_mesh():
    device = ttnn.open_mesh_device(ttnn.MeshShape(4, 8))
    yield device
    ttnn.close_mesh_device(device)


def test_model_configs_serialize_to_json(galaxy_mesh):
    config = get_preset("galaxy-tiny")
    for mode in ("prefill", "decode"):
        model_config = getattr(Model, f"{mode}_model_config")(config, galaxy_mesh)
        text = config_fingerprint_text(model_config)
        assert json.loads(text) == config_to_json(model_config)
        assert text == config_fingerprint_text(getattr(Model, f"{mode}_model_config")(config, galaxy_mesh))
        assert len(model_config["layers"]) == config.num_hidden_layers
    decode = Model.decode_model_config(config, galaxy_mesh)
    assert decode["blocks"] == (DecoderBlock, MoEDecoderBlock)
    dense, moe = decode["layers"]
    assert dense["mlp"]["all_gather"].cluster_axis == 1 and dense["mlp"]["reduce_scatter"].dim == 3


def test_single_column_mesh_skips_the_collectives(mesh):
    config = get_preset("galaxy-tiny")
    assert "all_gather" not in MLP.decode_model_config(config, mesh)
    assert "rms_norm" in DistributedRMSNorm.decode_model_config(config, mesh)


def test_missing_or_misshapen_weights_are_named(mesh, tmp_path):
    config = get_preset("tiny", num_layers=1)
    good = {
        "gate_proj.weight": torch.zeros(config.intermediate_size, config.hidden_size),
        "up_proj.weight": torch.zeros(config.intermediate_size, config.hidden_size),
        "down_proj.weight": torch.zeros(config.hidden_size, config.intermediate_size),
    }
    with pytest.raises(KeyError, match="MLP: missing weight 'up_proj.weight'"):
        MLP.convert_weights(config, {k: v for k, v in good.items() if k != "up_proj.weight"}, tmp_path, mesh)
    with pytest.raises(ValueError, match=r"MLP: weight 'down_proj.weight' has shape \(3, 4\)"):
        MLP.convert_weights(config, {**good, "down_proj.weight": torch.zeros(3, 4)}, tmp_path, mesh)


def test_dims_that_do_not_split_over_the_mesh_are_refused(galaxy_mesh):
    config = get_preset("tiny")  # hidden 128: not 32-wide sticks over 8 columns
    with pytest.raises(ValueError, match="must split into tiles over 8 mesh columns"):
        MLP.decode_model_config(config, galaxy_mesh)


@pytest.fixture
def tiny_model(mesh, tmp_path):
    # galaxy-tiny's dense layer: the tiny preset's 16-wide RoPE head is below the 32 ttnn's rotary needs
    config = get_preset("galaxy-tiny", num_layers=1)
    return TtModel.load(None, mesh, tmp_path / "cache", random_weights=True, hf_config=config, max_seq_len=64, progress=False)


def test_facade_shapes_and_bad_inputs(tiny_model):
    model = tiny_model
    assert (model.max_batch_size, model.max_seq_len, model.vocab_size) == (32, 64, 2048)
    logits = model.prefill(torch.arange(5), user_id=3)
    assert logits.shape == (5, model.vocab_size) and torch.isfinite(logits).all()
    positions = torch.full((32,), -1)
    positions[3] = 5
    out = model.decode(torch.zeros(32, dtype=torch.long), positions)
    assert out.shape == (32, model.vocab_size) and torch.isfinite(out[3]).all()
    with pytest.raises(ValueError, match="decode expects 32 tokens and positions"):
        model.decode(torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"prefill: token id 5000 outside the vocabulary \[0, vocab_size=2048\)"):
        model.prefill(torch.tensor([1, 5000]), user_id=0)
    with pytest.raises(ValueError, match="length 65 must be in"):
        model.prefill(torch.zeros(65, dtype=torch.long), user_id=0)
    with pytest.raises(ValueError, match="user_id 32 out of range"):
        model.prefill(torch.zeros(4, dtype=torch.long), user_id=32)


def test_prefill_is_independent_of_padding_and_other_users(tiny_model):
    """A user's logits do not depend on the tile padding of its prompt nor on another user's prefill."""
    model = tiny_model
    prompt = torch.arange(10, 40)
    first = model.prefill(prompt, user_id=0)
    model.prefill(torch.arange(100, 164), user_id=1)
    again = model.prefill(prompt[:20], user_id=0)
    assert torch.equal(first[:20], again)


@pytest.mark.parametrize("progress", [False, True])
def test_weight_conversion_progress_bars_follow_the_flag(mesh, tmp_path, capsys, progress):
    """``progress=False`` silences every bar, the MoE layer's routed experts included."""
    from deepseek_tt.weights.convert import RandomStateDict

    config = get_preset("tiny")  # layer 1 is a MoE layer
    Model.convert_weights(config, RandomStateDict(config, 0), tmp_path, mesh, progress=progress)
    err = capsys.readouterr().err
    assert ("experts -> experts" in err) is progress
    assert ("converting weights" in err) is progress


def test_one_moe_layer_rule_for_the_model_and_the_checkpoint_keys():
    """The model's blocks and the reference checkpoint's keys follow the same ``is_moe_layer``, which
    honours ``first_k_dense_replace`` and ``moe_layer_freq``."""
    import copy

    from reference_models.state_dict_keys import layer_weight_specs

    config = copy.deepcopy(get_preset("tiny"))
    config.num_hidden_layers, config.first_k_dense_replace = 5, 1
    for freq, expected in ((1, [False, True, True, True, True]), (2, [False, False, True, False, True])):
        config.moe_layer_freq = freq
        assert [is_moe_layer(config, i) for i in range(5)] == expected
        assert [block_for_layer(config, i).IS_MOE for i in range(5)] == expected
        assert [any(".mlp.gate.weight" in k for k in layer_weight_specs(config, i)) for i in range(5)] == expected
    config.n_routed_experts = 0
    assert not any(is_moe_layer(config, i) for i in range(5))


def test_forward_context_is_checked_and_names_stages():
    seen = []
    ctx = ForwardContext.prefill({"cos_matrix": None}, "table", 3, observer=lambda stage, out, c: seen.append((stage, out, c.layer)))
    with pytest.raises(ValueError, match="needs the positions tensor"):
        ForwardContext.decode({}, "table", None)
    with pytest.raises(ValueError, match="got a prefill ForwardContext"):
        require_context(ctx, "decode", "MLA")
    with pytest.raises(TypeError, match="MLA.forward_prefill needs a ForwardContext"):
        require_context(None, "prefill", "MLA")
    ctx.at_layer(2).observe("attention", "a")
    ctx.at_layer(2).observe("norm", "n")  # a model-level stage keeps its plain name
    ctx.observe("embedding", "e")
    assert seen == [("layers.2.attention", "a", 2), ("norm", "n", 2), ("embedding", "e", None)]
    assert ctx.at_layer(2).page_table == "table" and ctx.at_layer(2).user_id == 3


def test_decode_inputs_are_built_on_the_host(tiny_model):
    """One decode step's inputs come back as host tensors (no device round trip) and match the device ones."""
    from deepseek_tt.modules import kv_cache

    model = tiny_model
    positions = torch.full((32,), -1)
    positions[:3] = torch.tensor([0, 7, 63])
    host = model.decode_host_inputs(torch.arange(32), positions)
    assert all(ttnn.is_tensor_storage_on_device(t) is False for t in host)
    on_device = (kv_cache.decode_positions_tensor(positions, model.mesh_device), *model.rope.decode_tensors(positions).values())
    for h, d in zip(host[1:], on_device):
        assert torch.equal(ttnn.to_torch(h), ttnn.to_torch(ttnn.from_device(d)))
    with pytest.raises(ValueError, match="decode: token id 2048 outside the vocabulary"):
        model.decode_host_inputs(torch.full((32,), 2048), positions)


def test_every_module_implements_the_declared_contract():
    """Every module accepts every argument ``AbstractModule`` declares (parents call children uniformly)."""
    import inspect

    import deepseek_tt.modules.moe  # noqa: F401  (registers MoE, Experts, MoEGate)
    import deepseek_tt.modules.pipeline  # noqa: F401
    from deepseek_tt.modules.base import AbstractModule

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    modules = list(subclasses(AbstractModule))
    assert {"MLA", "MoE", "Experts", "MoEGate", "DecoderBlock", "Model", "PipelinedModel"} <= {m.__name__ for m in modules}
    for module in modules:
        for stage in ("convert_weights", "prefill_model_config", "decode_model_config", "create_state", "forward_prefill", "forward_decode"):
            declared = list(inspect.signature(getattr(AbstractModule, stage)).parameters)
            if stage.startswith("forward_"):
                declared = declared[1:]  # the input may be named x or tokens
            own = inspect.signature(getattr(module, stage)).parameters
            assert not [p for p in declared if p not in own], f"{module.__name__}.{stage} lacks {[p for p in declared if p not in own]}"
