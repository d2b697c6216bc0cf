"""Named DeepSeek-V3 model presets (docs/DESIGN.md section 4), all defined here and nowhere else.

- ``tiny``: every architectural feature (MLA with q_lora_rank, YaRN, dense + MoE layers, grouped
  routing with n_group/topk_group, shared expert, correction bias, normalised top-k,
  routed_scaling_factor) at dims that run in milliseconds. Its fp8-quantized weights are either at most
  128 or a multiple of 128 in each dim, so transformers' own fp8 loader reads its checkpoints correctly.
- ``galaxy-tiny``: shapes that shard across a 4x8 Galaxy mesh like the real model (hidden and vocab
  divisible by 32 devices x 32, heads divisible by 32, experts divisible by 32 devices, intermediate
  sizes divisible by 8 x 32); the KV down-projection is 128-ragged like the real 576-row one.
- ``full``: the real DeepSeek-V3 dims (docs/HARDWARE.md section 4); use it with few layers.

Presets carry no ``quantization_config``; the checkpoint writer adds the official one. The MTP layer is
not modelled (``num_nextn_predict_layers=0``).
"""

from __future__ import annotations

from typing import Any

from transformers import DeepseekV3Config

#: The official YaRN settings of DeepSeek-V3 (config.json ``rope_scaling``).
OFFICIAL_ROPE_SCALING: dict[str, Any] = {
    "beta_fast": 32,
    "beta_slow": 1,
    "factor": 40,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
    "original_max_position_embeddings": 4096,
    "type": "yarn",
}
OFFICIAL_ROPE_THETA = 10000
OFFICIAL_MAX_POSITION_EMBEDDINGS = 163840

# Fields shared by every preset: the official routing / norm / token settings.
_COMMON: dict[str, Any] = {
    "hidden_act": "silu",
    "n_shared_experts": 1,
    "routed_scaling_factor": 2.5,
    "norm_topk_prob": True,
    "rms_norm_eps": 1e-6,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "num_nextn_predict_layers": 0,
    "max_position_embeddings": OFFICIAL_MAX_POSITION_EMBEDDINGS,
    "rope_theta": OFFICIAL_ROPE_THETA,
    "initializer_range": 0.02,
}

_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "vocab_size": 1024,
        "hidden_size": 128,
        "intermediate_size": 256,
        "moe_intermediate_size": 64,
        "num_hidden_layers": 2,
        "first_k_dense_replace": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "q_lora_rank": 64,
        "kv_lora_rank": 64,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 16,
        "v_head_dim": 16,
        "n_routed_experts": 16,
        "num_experts_per_tok": 4,
        "n_group": 4,
        "topk_group": 2,
    },
    "galaxy-tiny": {
        "vocab_size": 2048,
        "hidden_size": 1024,
        "intermediate_size": 2048,
        "moe_intermediate_size": 256,
        "num_hidden_layers": 2,
        "first_k_dense_replace": 1,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "q_lora_rank": 384,
        "kv_lora_rank": 256,
        "qk_nope_head_dim": 64,
        "qk_rope_head_dim": 64,
        "v_head_dim": 64,
        "n_routed_experts": 64,
        "num_experts_per_tok": 8,
        "n_group": 8,
        "topk_group": 4,
    },
    "full": {
        "vocab_size": 129280,
        "hidden_size": 7168,
        "intermediate_size": 18432,
        "moe_intermediate_size": 2048,
        "num_hidden_layers": 61,
        "first_k_dense_replace": 3,
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "q_lora_rank": 1536,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "n_routed_experts": 256,
        "num_experts_per_tok": 8,
        "n_group": 8,
        "topk_group": 4,
    },
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def preset_fields(name: str) -> dict[str, Any]:
    """The raw config fields of preset ``name`` (a copy); ``ValueError`` for an unknown name."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(PRESET_NAMES)}")
    return {**_COMMON, **_PRESETS[name], "rope_scaling": dict(OFFICIAL_ROPE_SCALING)}


def get_preset(name: str, num_layers: int | None = None) -> DeepseekV3Config:
    """The ``DeepseekV3Config`` of preset ``name``, optionally cut to ``num_layers`` decoder layers.

    ``num_layers`` keeps the preset's ``first_k_dense_replace``, so a value at or below it gives only
    dense layers (``full`` has 3 dense layers first, like the real model).
    """
    fields = preset_fields(name)
    if num_layers is not None:
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        fields["num_hidden_layers"] = int(num_layers)
    config = DeepseekV3Config(**fields)
    # Official config.json fields that transformers keeps as plain attributes.
    config.topk_method = "noaux_tc"
    config.scoring_func = "sigmoid"
    config.architectures = ["DeepseekV3ForCausalLM"]
    return config


__all__ = ["OFFICIAL_ROPE_SCALING", "PRESET_NAMES", "get_preset", "preset_fields"]
