"""Official DeepSeek-V3 checkpoint key names, and the mapping to transformers' in-memory layout.

The official checkpoint (and transformers' ``save_pretrained``) stores one tensor per routed expert,
``model.layers.{i}.mlp.experts.{e}.{gate,up,down}_proj.weight``; transformers 5.x keeps the experts in
memory as two fused 3-D parameters, ``experts.gate_up_proj`` [E, 2*I, H] (gate rows first, then up)
and ``experts.down_proj`` [E, H, I]. Users of this project only ever see the official names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from transformers import DeepseekV3Config

from deepseek_tt.config.layers import is_moe_layer

#: Weight kinds (they decide the random init and the checkpoint dtype).
LINEAR, NORM, EMBEDDING, ROUTER, ROUTER_BIAS, LM_HEAD = "linear", "norm", "embedding", "router", "router_bias", "lm_head"

_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")
_EXPERT_RE = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
_FUSED_RE = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)\.(gate_up_proj|down_proj)$")


@dataclass(frozen=True)
class WeightSpec:
    """One official checkpoint tensor: its shape and kind (``LINEAR`` weights are ``[out, in]``)."""

    shape: tuple[int, ...]
    kind: str

    @property
    def fan_in(self) -> int:
        return self.shape[-1]


def layer_index(key: str) -> int | None:
    """``model.layers.3.self_attn...`` -> 3; None for keys outside the decoder layers."""
    match = _LAYER_RE.match(key)
    return int(match.group(1)) if match else None


def layer_weight_specs(config: DeepseekV3Config, layer: int) -> dict[str, WeightSpec]:
    """The official tensors of decoder layer ``layer``, in checkpoint order."""
    c = config
    p = f"model.layers.{layer}."
    qk_head = c.qk_nope_head_dim + c.qk_rope_head_dim
    specs: dict[str, WeightSpec] = {p + "input_layernorm.weight": WeightSpec((c.hidden_size,), NORM)}
    attn = p + "self_attn."
    if c.q_lora_rank is None:
        specs[attn + "q_proj.weight"] = WeightSpec((c.num_attention_heads * qk_head, c.hidden_size), LINEAR)
    else:
        specs[attn + "q_a_proj.weight"] = WeightSpec((c.q_lora_rank, c.hidden_size), LINEAR)
        specs[attn + "q_a_layernorm.weight"] = WeightSpec((c.q_lora_rank,), NORM)
        specs[attn + "q_b_proj.weight"] = WeightSpec((c.num_attention_heads * qk_head, c.q_lora_rank), LINEAR)
    specs[attn + "kv_a_proj_with_mqa.weight"] = WeightSpec((c.kv_lora_rank + c.qk_rope_head_dim, c.hidden_size), LINEAR)
    specs[attn + "kv_a_layernorm.weight"] = WeightSpec((c.kv_lora_rank,), NORM)
    specs[attn + "kv_b_proj.weight"] = WeightSpec(
        (c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank), LINEAR
    )
    specs[attn + "o_proj.weight"] = WeightSpec((c.hidden_size, c.num_attention_heads * c.v_head_dim), LINEAR)
    specs[p + "post_attention_layernorm.weight"] = WeightSpec((c.hidden_size,), NORM)

    def mlp(prefix: str, inter: int) -> None:
        specs[prefix + "gate_proj.weight"] = WeightSpec((inter, c.hidden_size), LINEAR)
        specs[prefix + "up_proj.weight"] = WeightSpec((inter, c.hidden_size), LINEAR)
        specs[prefix + "down_proj.weight"] = WeightSpec((c.hidden_size, inter), LINEAR)

    if is_moe_layer(c, layer):
        specs[p + "mlp.gate.weight"] = WeightSpec((c.n_routed_experts, c.hidden_size), ROUTER)
        specs[p + "mlp.gate.e_score_correction_bias"] = WeightSpec((c.n_routed_experts,), ROUTER_BIAS)
        for e in range(c.n_routed_experts):
            mlp(f"{p}mlp.experts.{e}.", c.moe_intermediate_size)
        mlp(p + "mlp.shared_experts.", c.moe_intermediate_size * c.n_shared_experts)
    else:
        mlp(p + "mlp.", c.intermediate_size)
    return specs


def official_weight_specs(config: DeepseekV3Config) -> dict[str, WeightSpec]:
    """Every tensor of the official checkpoint of ``config`` (no MTP layer), in checkpoint order."""
    specs = {"model.embed_tokens.weight": WeightSpec((config.vocab_size, config.hidden_size), EMBEDDING)}
    for layer in range(config.num_hidden_layers):
        specs.update(layer_weight_specs(config, layer))
    specs["model.norm.weight"] = WeightSpec((config.hidden_size,), NORM)
    specs["lm_head.weight"] = WeightSpec((config.vocab_size, config.hidden_size), LM_HEAD)
    return specs


def to_official(state_dict: Mapping[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """transformers in-memory state dict -> official (per-expert) keys; tensors are views, not copies."""
    for key, tensor in state_dict.items():
        match = _FUSED_RE.match(key)
        if not match:
            yield key, tensor
            continue
        prefix, name = match.groups()
        for e in range(tensor.shape[0]):
            if name == "down_proj":
                yield f"{prefix}.{e}.down_proj.weight", tensor[e]
            else:
                gate, up = tensor[e].chunk(2, dim=0)
                yield f"{prefix}.{e}.gate_proj.weight", gate
                yield f"{prefix}.{e}.up_proj.weight", up


def from_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (per-expert) keys -> transformers' in-memory keys with fused expert tensors."""
    out: dict[str, torch.Tensor] = {}
    experts: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for key in state_dict.keys():
        match = _EXPERT_RE.match(key)
        if match:
            prefix, e, name = match.groups()
            experts.setdefault(prefix, {}).setdefault(int(e), {})[name] = state_dict[key]
        else:
            out[key] = state_dict[key]
    for prefix, by_expert in experts.items():
        ids = sorted(by_expert)
        if ids != list(range(len(ids))):
            raise KeyError(f"{prefix}: expert indices are not 0..{len(ids) - 1} (found {ids[:8]}...)")
        for e in ids:
            missing = {"gate_proj", "up_proj", "down_proj"} - set(by_expert[e])
            if missing:
                raise KeyError(f"{prefix}.{e}: missing {', '.join(sorted(missing))}.weight")
        out[f"{prefix}.gate_up_proj"] = torch.stack(
            [torch.cat([by_expert[e]["gate_proj"], by_expert[e]["up_proj"]], dim=0) for e in ids]
        )
        out[f"{prefix}.down_proj"] = torch.stack([by_expert[e]["down_proj"] for e in ids])
    return out


__all__ = [
    "EMBEDDING",
    "LINEAR",
    "LM_HEAD",
    "NORM",
    "ROUTER",
    "ROUTER_BIAS",
    "WeightSpec",
    "from_official",
    "is_moe_layer",
    "layer_index",
    "layer_weight_specs",
    "official_weight_specs",
    "to_official",
]
