"""The Hugging Face reference: transformers' built-in ``DeepseekV3ForCausalLM`` and its submodules.

- :func:`build_reference_model`: a preset/config + seed -> a model with realistic random weights.
- :func:`load_reference_model`: a model directory (official fp8 format or plain bf16/fp32) -> a model,
  offline; fp8 weights are dequantized block-wise. With ``dtype=torch.bfloat16`` the router weight and
  ``e_score_correction_bias`` stay fp32, as transformers' ``from_pretrained`` keeps them.
- Submodule getters (``get_attention(model, i)`` ...) and state-dict slices under the official key
  names (``layer_state_dict(model, i)``), for module-level comparison.

Models are built with eager attention (plain matmul + softmax) so the reference is the textbook math.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    DeepseekV3MLP,
    DeepseekV3MoE,
    DeepseekV3RotaryEmbedding,
)

from deepseek_tt.weights import LazyStateDict, load_hf_config
from deepseek_tt.weights.errors import CheckpointError
from reference_models.random_weights import iter_random_weights
from reference_models.state_dict_keys import from_official, is_moe_layer, layer_index, to_official

#: Parameters transformers keeps in fp32 when a model is loaded in bf16.
FP32_KEY_SUFFIXES = ("mlp.gate.weight", "mlp.gate.e_score_correction_bias")
ATTN_IMPLEMENTATION = "eager"


def _model_from_official(config: DeepseekV3Config, official: Mapping[str, torch.Tensor], dtype: torch.dtype) -> DeepseekV3ForCausalLM:
    """Instantiate without initialising (meta device), then assign the given official-key weights."""
    config = copy.deepcopy(config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the in-memory model holds dequantized weights
    config._attn_implementation = ATTN_IMPLEMENTATION
    fused = {}
    for key, tensor in from_official(official).items():
        keep_fp32 = key.endswith(FP32_KEY_SUFFIXES)
        fused[key] = tensor.to(torch.float32 if keep_fp32 else dtype)
    with torch.device("meta"):
        model = DeepseekV3ForCausalLM(config)
    result = model.load_state_dict(fused, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"weights do not match the config: missing {result.missing_keys[:5]}"
            f"{'...' if len(result.missing_keys) > 5 else ''}, unexpected {result.unexpected_keys[:5]}"
        )
    # Non-persistent buffers (RoPE inverse frequencies) were created on meta: rebuild them.
    model.model.rotary_emb = DeepseekV3RotaryEmbedding(config=config)
    model.config.dtype = dtype
    return model.eval()


def build_reference_model(
    config: DeepseekV3Config, seed: int = 0, dtype: torch.dtype = torch.float32
) -> DeepseekV3ForCausalLM:
    """A reference model with realistic random weights (see ``reference_models.random_weights``).

    The weights are exactly those that ``write_checkpoint(config, ..., seed=seed)`` quantizes.
    """
    official = {key: tensor for key, _, tensor in iter_random_weights(config, seed)}
    return _model_from_official(config, official, dtype)


def load_reference_model(model_dir: str | Path, dtype: torch.dtype = torch.float32) -> DeepseekV3ForCausalLM:
    """Load ``model_dir`` (offline) into ``DeepseekV3ForCausalLM``.

    fp8 weights are dequantized with their 128x128 ``weight_scale_inv`` blocks (ragged edge blocks
    handled); keys of layers beyond ``num_hidden_layers`` (the MTP layer) are ignored.

    Why not ``from_pretrained``: transformers 5.24's CPU fp8 dequantization derives the block size as
    rows // scale_rows, so it rejects ragged weights such as the real 576 x 7168 ``kv_a_proj_with_mqa``
    (scale grid 5 x 56) and silently uses a wrong block for e.g. 192 rows (2 scale rows). Where it
    applies (every dim a multiple of 128 or at most 128, as in the ``tiny`` preset) both give identical
    weights, which the unit tests check.
    """
    config = load_hf_config(model_dir)
    state = LazyStateDict(model_dir, dequantize=True, dtype=torch.float32)
    official = {}
    for key in state.keys():
        layer = layer_index(key)
        if layer is not None and layer >= config.num_hidden_layers:
            continue
        official[key] = state[key]
    return _model_from_official(config, official, dtype)


# -- submodules ---------------------------------------------------------------------------------
def _layers(model: DeepseekV3ForCausalLM) -> nn.ModuleList:
    return model.model.layers


def get_layer(model: DeepseekV3ForCausalLM, i: int) -> nn.Module:
    """Decoder layer ``i`` (``DeepseekV3DecoderLayer``)."""
    layers = _layers(model)
    if not 0 <= i < len(layers):
        raise IndexError(f"layer {i} out of range: the model has {len(layers)} decoder layers")
    return layers[i]


def get_attention(model: DeepseekV3ForCausalLM, i: int) -> nn.Module:
    """MLA of layer ``i`` (``DeepseekV3Attention``; call with position_embeddings from ``get_rotary_embedding``)."""
    return get_layer(model, i).self_attn


def get_mlp(model: DeepseekV3ForCausalLM, i: int) -> DeepseekV3MLP:
    """The dense MLP of layer ``i`` (only layers below ``first_k_dense_replace``)."""
    mlp = get_layer(model, i).mlp
    if not isinstance(mlp, DeepseekV3MLP):
        raise ValueError(f"layer {i} is a MoE layer (first_k_dense_replace={model.config.first_k_dense_replace}); use get_moe")
    return mlp


def get_moe(model: DeepseekV3ForCausalLM, i: int) -> DeepseekV3MoE:
    """The MoE block (gate + routed experts + shared experts) of layer ``i``."""
    mlp = get_layer(model, i).mlp
    if not isinstance(mlp, DeepseekV3MoE):
        raise ValueError(f"layer {i} is a dense layer (first_k_dense_replace={model.config.first_k_dense_replace}); use get_mlp")
    return mlp


def get_gate(model: DeepseekV3ForCausalLM, i: int) -> nn.Module:
    """The router (``DeepseekV3TopkRouter``: returns router_logits, topk_weights, topk_indices)."""
    return get_moe(model, i).gate


def get_experts(model: DeepseekV3ForCausalLM, i: int) -> nn.Module:
    """The routed experts (``DeepseekV3Experts``; fused ``gate_up_proj`` / ``down_proj`` in memory)."""
    return get_moe(model, i).experts


def get_shared_experts(model: DeepseekV3ForCausalLM, i: int) -> DeepseekV3MLP:
    return get_moe(model, i).shared_experts


def get_input_norm(model: DeepseekV3ForCausalLM, i: int) -> nn.Module:
    return get_layer(model, i).input_layernorm


def get_post_attention_norm(model: DeepseekV3ForCausalLM, i: int) -> nn.Module:
    return get_layer(model, i).post_attention_layernorm


def get_embedding(model: DeepseekV3ForCausalLM) -> nn.Embedding:
    return model.model.embed_tokens


def get_final_norm(model: DeepseekV3ForCausalLM) -> nn.Module:
    return model.model.norm


def get_lm_head(model: DeepseekV3ForCausalLM) -> nn.Linear:
    return model.lm_head


def get_rotary_embedding(model: DeepseekV3ForCausalLM) -> nn.Module:
    """RoPE (YaRN): ``rotary(x, position_ids) -> (cos, sin)`` as the attention expects them."""
    return model.model.rotary_emb


# -- official-key state dict slices -------------------------------------------------------------
def official_state_dict(model: DeepseekV3ForCausalLM, prefix: str = "") -> dict[str, torch.Tensor]:
    """The model's weights under official checkpoint keys (per-expert), filtered to ``prefix``.

    Keys keep their full names; tensors are detached views of the model's parameters.
    """
    return {k: v.detach() for k, v in to_official(model.state_dict()) if k.startswith(prefix)}


def layer_state_dict(model: DeepseekV3ForCausalLM, i: int) -> dict[str, torch.Tensor]:
    """Official-key weights of decoder layer ``i`` (``model.layers.{i}.self_attn.q_a_proj.weight`` ...)."""
    get_layer(model, i)
    return official_state_dict(model, f"model.layers.{i}.")


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``{"model.layers.0.self_attn.q_a_proj.weight": t}`` -> ``{"q_a_proj.weight": t}`` for prefix ``model.layers.0.self_attn.``."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


__all__ = [
    "build_reference_model",
    "get_attention",
    "get_embedding",
    "get_experts",
    "get_final_norm",
    "get_gate",
    "get_input_norm",
    "get_layer",
    "get_lm_head",
    "get_mlp",
    "get_moe",
    "get_post_attention_norm",
    "get_rotary_embedding",
    "get_shared_experts",
    "is_moe_layer",
    "layer_state_dict",
    "load_reference_model",
    "official_state_dict",
    "strip_prefix",
]
