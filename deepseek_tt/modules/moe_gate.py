"""MoE gate (router): sigmoid scores, grouped top-k with the correction bias, normalised routing weights.

Semantics (transformers' ``DeepseekV3TopkRouter``, DeepSeek-V3 ``noaux_tc``):

1. ``scores = sigmoid(x @ W^T)`` over the ``E`` routed experts;
2. selection uses ``scores + e_score_correction_bias`` (the bias never reaches the weights);
3. the experts form ``n_group`` groups; a group's score is the sum of its two best biased scores and only
   the ``topk_group`` best groups stay eligible;
4. the ``num_experts_per_tok`` best eligible experts are chosen; their *unbiased* scores are the weights,
   normalised to sum 1 when ``norm_topk_prob``, then multiplied by ``routed_scaling_factor``.

HF keys (relative to the gate): ``weight`` ``[E, hidden]`` and ``e_score_correction_bias`` ``[E]``. Both are
stored float32 (dtype policy kind ``router``), replicated on every device; the router runs in float32
end to end (fp32 sigmoid / top-k) so that expert selection agrees with the float32 reference; ``topk`` on
fp32 input needs a ttnn whose topk accepts float32 (``ttnn.sort`` is the drop-in otherwise).

The matrix engine reads fp32 operands with 10 mantissa bits (TF32), which flips about one token in a
thousand to another expert near a tie. A float32 router weight is therefore stored split,
``W = W_hi + W_lo`` with ``W_hi`` the TF32 truncation of ``W`` and ``W_lo`` the (exact) remainder; the
logits are ``x W_hi^T + x W_lo^T``, two HiFi4 matmuls with fp32 accumulation whose products are exact
for bf16 activations, which leaves an error of about 2^-21 relative instead of 2^-11.

Forward: ``x`` ``[1, 1, T, hidden]`` (the full hidden; the MoE gathers it) -> ``(weights, indices)``, both
``[1, 1, T, K]``: weights bfloat16 (TILE), indices uint16 (TILE). Every device computes the gate of the
tokens it holds; nothing is communicated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.config.op_configs import (
    AddConfig,
    GatherConfig,
    LinearConfig,
    ScatterConfig,
    SumConfig,
    TopKConfig,
    TypecastConfig,
    UnaryConfig,
)
from deepseek_tt.config.run_config import FromWeightConfig
from deepseek_tt.modules.base import AbstractModule, compute_kernel_config, require_key, save_weight
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.kv_cache import USERS_PER_ROW

#: Added to the biased scores of experts in dropped groups: far below any sigmoid score plus bias.
DROPPED_GROUP_PENALTY = -1.0e4
#: transformers' guard against a zero denominator in the weight normalisation.
NORM_EPS = 1e-20


#: Mantissa bits the matrix engine keeps of an fp32 operand (TF32-like source registers).
MATMUL_SOURCE_MANTISSA_BITS = 10


def split_for_matmul(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hi, lo)`` with ``hi`` = ``weight`` truncated to the matrix engine's mantissa and ``lo = weight - hi``."""
    w = weight.to(torch.float32).contiguous()
    mask = -(1 << (23 - MATMUL_SOURCE_MANTISSA_BITS))
    hi = (w.view(torch.int32) & mask).view(torch.float32)
    return hi, w - hi


def router_compute_config(dtype_policy: DtypePolicy | str | None = None) -> Any:
    """The policy's router config (float32 weights in every policy: HiFi4, fp32 accumulation), so the
    router's logits are float32-exact."""
    return compute_kernel_config(dtype_policy, "router")


class MoEGate(AbstractModule):
    """The DeepSeek-V3 router (see module docstring)."""

    @classmethod
    def check_config(cls, hf_config: Any) -> None:
        """One clear error for a routing config this gate does not implement."""
        e, g, kg, k = hf_config.n_routed_experts, hf_config.n_group, hf_config.topk_group, hf_config.num_experts_per_tok
        if getattr(hf_config, "scoring_func", "sigmoid") != "sigmoid":
            raise ValueError(f"MoEGate: scoring_func {hf_config.scoring_func!r} is not supported (expected 'sigmoid')")
        if e % g or e // g < 2:
            raise ValueError(f"MoEGate: n_routed_experts={e} must split into n_group={g} groups of at least 2 experts")
        if not 1 <= kg <= g or not 1 <= k <= kg * (e // g):
            raise ValueError(f"MoEGate: topk_group={kg} / num_experts_per_tok={k} do not fit {g} groups of {e // g} experts")

    @classmethod
    def convert_weights(
        cls,
        hf_config: Any,
        state_dict: Mapping[str, torch.Tensor],
        output_path: Path,
        mesh_device: Any,
        *,
        dtype_policy: DtypePolicy | str | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        cls.check_config(hf_config)
        e, hidden = hf_config.n_routed_experts, hf_config.hidden_size
        dtype = get_dtype_policy(dtype_policy).dtype("router")
        weight = require_key(state_dict, "weight", (e, hidden), where="MoEGate")
        bias = require_key(state_dict, "e_score_correction_bias", (e,), where="MoEGate")
        out = Path(output_path)
        w_t = weight.to(torch.float32).T.contiguous().reshape(1, 1, hidden, e)
        hi, lo = split_for_matmul(w_t) if cls.split_router(dtype_policy) else (w_t, None)
        weights = {
            "gate_proj": {"input_tensor_b": save_weight(hi, out / "gate_proj.weight", mesh_device, dtype=dtype)},
            "e_score_correction_bias": save_weight(
                bias.to(torch.float32).reshape(1, 1, 1, e), out / "e_score_correction_bias", mesh_device, dtype=dtype
            ),
        }
        if lo is not None:
            weights["gate_proj_residual"] = {"input_tensor_b": save_weight(lo, out / "gate_proj_residual.weight", mesh_device, dtype=dtype)}
        return weights

    @classmethod
    def split_router(cls, dtype_policy: DtypePolicy | str | None) -> bool:
        """A float32 router weight is stored as TF32 head + remainder (see module docstring)."""
        return get_dtype_policy(dtype_policy).router == "float32"

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, mode: str, *, users_per_row: int = USERS_PER_ROW,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        memory_config = ttnn.DRAM_MEMORY_CONFIG if mode == "prefill" else ttnn.L1_MEMORY_CONFIG
        cls.check_config(hf_config)
        mem = memory_config
        linear = LinearConfig(
            input_tensor_b=FromWeightConfig(), memory_config=mem, dtype=ttnn.float32, compute_kernel_config=router_compute_config(dtype_policy)
        )
        cfg: dict[str, Any] = {"gate_proj": linear}
        if cls.split_router(dtype_policy):
            cfg["gate_proj_residual"] = replace(linear)
            cfg["add_residual"] = AddConfig(memory_config=mem, dtype=ttnn.float32)
        return cfg | {
            "e_score_correction_bias": FromWeightConfig(),
            "sigmoid": UnaryConfig(memory_config=mem),
            "add_bias": AddConfig(memory_config=mem, dtype=ttnn.float32),
            "add_penalty": AddConfig(memory_config=mem, dtype=ttnn.float32),
            "topk_within_group": TopKConfig(k=2, dim=-1, largest=True, sorted=True, memory_config=mem),
            "sum_group": SumConfig(dim=-1, keepdim=True, memory_config=mem),
            "topk_groups": TopKConfig(k=hf_config.topk_group, dim=-1, largest=True, sorted=True, memory_config=mem),
            "scatter_groups": ScatterConfig(dim=-1, memory_config=mem),
            "topk_experts": TopKConfig(k=hf_config.num_experts_per_tok, dim=-1, largest=True, sorted=True, memory_config=mem),
            "gather_scores": GatherConfig(dim=-1, memory_config=mem),
            "sum_weights": SumConfig(dim=-1, keepdim=True, memory_config=mem),
            "output_typecast": TypecastConfig(dtype=ttnn.bfloat16, memory_config=mem),
            "n_group": hf_config.n_group,
            "n_routed_experts": hf_config.n_routed_experts,
            "norm_topk_prob": bool(hf_config.norm_topk_prob),
            "routed_scaling_factor": float(hf_config.routed_scaling_factor),
        }

    @classmethod
    def forward(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> tuple[Any, Any]:
        """``[1, 1, T, hidden]`` -> ``(weights [1, 1, T, K] bf16, indices [1, 1, T, K] uint16)``."""
        tokens = x.shape[-2]
        groups, experts = cfg["n_group"], cfg["n_routed_experts"]

        logits = ttnn.linear(x, **cfg["gate_proj"])
        if "gate_proj_residual" in cfg:
            residual = ttnn.linear(x, **cfg["gate_proj_residual"])
            logits = ttnn.add(logits, residual, **cfg["add_residual"])
            ttnn.deallocate(residual)
        scores = ttnn.sigmoid(logits, **cfg["sigmoid"])
        ttnn.deallocate(logits)
        biased = ttnn.add(scores, cfg["e_score_correction_bias"], **cfg["add_bias"])

        # Group scores: the sum of each group's two best biased scores.
        grouped = ttnn.reshape(biased, (1, tokens, groups, experts // groups))
        ttnn.deallocate(biased)
        best_two, best_two_idx = ttnn.topk(grouped, **cfg["topk_within_group"])
        ttnn.deallocate(best_two_idx)
        group_scores = ttnn.sum(best_two, **cfg["sum_group"])  # [1, T, G, 1]
        ttnn.deallocate(best_two)
        group_scores = ttnn.reshape(group_scores, (1, 1, tokens, groups))

        # Keep mask of the topk_group best groups, as 0 (kept) / penalty (dropped) per group.
        _, kept_groups = ttnn.topk(group_scores, **cfg["topk_groups"])
        dropped = ttnn.full_like(group_scores, DROPPED_GROUP_PENALTY)
        zeros = ttnn.zeros_like(kept_groups, dtype=group_scores.dtype)
        ttnn.deallocate(group_scores)
        penalty = ttnn.scatter(dropped, index=kept_groups, src=zeros, **cfg["scatter_groups"])
        ttnn.deallocate(kept_groups)
        ttnn.deallocate(dropped)
        ttnn.deallocate(zeros)
        penalty = ttnn.reshape(penalty, (1, tokens, groups, 1))
        eligible = ttnn.add(grouped, penalty, **cfg["add_penalty"])  # broadcast over the group's experts
        ttnn.deallocate(grouped)
        ttnn.deallocate(penalty)
        eligible = ttnn.reshape(eligible, (1, 1, tokens, experts))

        # The best eligible experts; their unbiased scores are the routing weights.
        _, indices = ttnn.topk(eligible, **cfg["topk_experts"])
        ttnn.deallocate(eligible)
        weights = ttnn.gather(scores, index=indices, **cfg["gather_scores"])
        ttnn.deallocate(scores)
        if cfg["norm_topk_prob"]:
            denominator = ttnn.add(ttnn.sum(weights, **cfg["sum_weights"]), NORM_EPS)
            weights = ttnn.div(weights, denominator)
            ttnn.deallocate(denominator)
        weights = ttnn.mul(weights, cfg["routed_scaling_factor"])
        weights = ttnn.typecast(weights, **cfg["output_typecast"])
        return weights, indices

    forward_prefill = forward
    forward_decode = forward
