"""The MoE block at the real DeepSeek-V3 dims (hidden 7168, moe_intermediate 2048, K = 8, shared expert,
random weights) with a reduced expert count, on an emulated 1x1 mesh, against transformers.

16 routed experts instead of 256 (host memory: the fp32 reference holds 16 x 3 x 7168 x 2048 weights,
2.8 GB); groups adjusted so that routing still chooses 8 of 12 eligible experts (n_group 4, topk_group 3).
The TT side converts from a lazy random state dict, streamed. Marked ``slow``: about 5 minutes here.
"""

from __future__ import annotations

import time

import pytest
import torch
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

from deepseek_tt.accuracy.checks import check_against_reference
from deepseek_tt.modules.layout import residual_to_device, residual_to_torch
from deepseek_tt.modules.moe import MoE
from deepseek_tt.weights.convert import RandomStateDict
from reference_models.presets import get_preset
from reference_models.random_weights import random_tensor
from reference_models.state_dict_keys import layer_weight_specs

pytestmark = [pytest.mark.accuracy, pytest.mark.slow]

SEED = 11
EXPERTS = 16
PREFIX = "model.layers.0.mlp."


def full_dims_moe_config():
    config = get_preset("full", num_layers=1)
    config.first_k_dense_replace = 0
    config.n_routed_experts = EXPERTS
    config.num_local_experts = EXPERTS
    config.n_group, config.topk_group = 4, 3
    config.vocab_size = 1024  # the embedding plays no part here
    return config


def reference_moe(config) -> DeepseekV3MoE:
    """transformers' MoE (fp32) with the random weights ``RandomStateDict(config, SEED)`` also yields; the
    fused expert tensors are filled expert by expert (one copy of the weights in memory)."""
    specs = {k[len(PREFIX):]: (k, s) for k, s in layer_weight_specs(config, 0).items() if k.startswith(PREFIX)}
    hidden, inter = config.hidden_size, config.moe_intermediate_size
    gate_up = torch.empty(EXPERTS, 2 * inter, hidden)
    down = torch.empty(EXPERTS, hidden, inter)
    weights = {}
    for key, (full, spec) in specs.items():
        tensor = random_tensor(full, spec, SEED)
        if key.startswith("experts."):
            _, e, name, _ = key.split(".")
            target = down[int(e)] if name == "down_proj" else gate_up[int(e), (0 if name == "gate_proj" else inter) :][:inter]
            target.copy_(tensor)
        else:
            weights[key] = tensor
    weights |= {"experts.gate_up_proj": gate_up, "experts.down_proj": down}
    with torch.device("meta"):
        moe = DeepseekV3MoE(config)
    result = moe.load_state_dict(weights, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    return moe.eval()


@pytest.mark.parametrize("mesh_device", [pytest.param((1, 1), id="mesh1x1")], indirect=True)
def test_moe_full_dims_reduced_experts(mesh_device, tmp_path, record_result):
    config = full_dims_moe_config()
    inputs = {
        "prefill": torch.randn(128, config.hidden_size, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16).float(),
        "decode": torch.randn(32, config.hidden_size, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16).float(),
    }
    moe = reference_moe(config)
    with torch.no_grad():
        expected = {mode: moe(x[None])[0] for mode, x in inputs.items()}
    del moe  # free the fp32 reference before converting

    start = time.perf_counter()
    weights = MoE.convert_weights(config, RandomStateDict(config, SEED).view(PREFIX), tmp_path / "moe", mesh_device, progress=False)
    convert_s = time.perf_counter() - start
    failures = []
    for mode, x in inputs.items():
        decode = mode == "decode"
        model_config = (MoE.decode_model_config if decode else MoE.prefill_model_config)(config, mesh_device)
        cfg = MoE.run_config(model_config, weights, MoE.create_state(config, mesh_device))
        start = time.perf_counter()
        out = (MoE.forward_decode if decode else MoE.forward_prefill)(residual_to_device(x, mesh_device, decode=decode), cfg)
        actual = residual_to_torch(out, mesh_device, decode=decode)
        forward_s = time.perf_counter() - start
        try:  # both modes recorded before either fails
            check_against_reference(
                "moe", mode, "default", expected[mode], actual, record_result, what=f"full-dims MoE {mode}", seq_len=len(x) if not decode else 1,
                batch=1 if not decode else len(x), mesh="1x1", preset="full", routed_experts=EXPERTS,
                convert_s=round(convert_s, 1), forward_s=round(forward_s, 2),
            )
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)
