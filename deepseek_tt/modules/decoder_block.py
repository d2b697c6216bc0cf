"""Decoder blocks: ``x + MLA(norm(x))`` then ``+ FFN(norm(.))``, FFN the dense MLP or the MoE.

HF keys relative to the layer (``model.layers.{i}.``): ``input_layernorm.weight``, ``self_attn.*``,
``post_attention_layernorm.weight``, ``mlp.*``. Input and output in the residual layout
``[1, 1, T, hidden / C]``; both norms are :class:`DistributedRMSNorm` and the residual adds are local
(no collective). The sub-configs live under ``input_norm``, ``mla``, ``post_attention_norm``, ``mlp``.

- :class:`DecoderBlock`: dense FFN (:class:`~deepseek_tt.modules.mlp.MLP`), the first
  ``first_k_dense_replace`` layers.
- :class:`MoEDecoderBlock`: FFN = ``deepseek_tt.modules.moe.MoE`` (gate, routed experts, shared expert).

:func:`block_for_layer` picks the class of a layer (:func:`~deepseek_tt.weights.hf_config.is_moe_layer`);
the model keeps the chosen classes in its config (``blocks``). Forward: ``forward_*(x, cfg, ctx)`` with the
call's :class:`~deepseek_tt.modules.forward_context.ForwardContext`; each block hands its stages
(``attention`` and ``mlp`` / ``moe`` outputs before their residual adds, and its own output ``block``) to
the context's observer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy
from deepseek_tt.config.op_configs import AddConfig
from deepseek_tt.config.run_config import MESH_DEVICE_KEY
from deepseek_tt.modules.base import AbstractModule, sub_state_dict
from deepseek_tt.modules.forward_context import ForwardContext, require_context
from deepseek_tt.modules.kv_cache import USERS_PER_ROW, PagedConfig
from deepseek_tt.modules.mla import MLA
from deepseek_tt.modules.mlp import MLP
from deepseek_tt.modules.rms_norm import DistributedRMSNorm
from deepseek_tt.config.layers import is_moe_layer


class DecoderBlock(AbstractModule):
    """Dense decoder block."""

    IS_MOE = False
    #: drill-down stage name of the FFN output
    FFN_STAGE = "mlp"

    @classmethod
    def ffn(cls) -> Any:
        """The FFN namespace class of this block."""
        return MLP

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
        """Convert the norms, MLA and FFN; ``progress`` shows the routed experts' bar (MoE blocks)."""
        out = Path(output_path)
        parts = (
            ("input_norm", DistributedRMSNorm, "input_layernorm."),
            ("mla", MLA, "self_attn."),
            ("post_attention_norm", DistributedRMSNorm, "post_attention_layernorm."),
            ("mlp", cls.ffn(), "mlp."),
        )
        return {
            name: module.convert_weights(
                hf_config,
                sub_state_dict(state_dict, prefix),
                out / name,
                mesh_device,
                dtype_policy=dtype_policy,
                progress=progress,
            )
            for name, module, prefix in parts
        }

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, mode: str, *, users_per_row: int = USERS_PER_ROW,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        method = f"{mode}_model_config"
        return {
            "input_norm": getattr(DistributedRMSNorm, method)(hf_config, mesh_device),
            "mla": getattr(MLA, method)(hf_config, mesh_device, users_per_row=users_per_row, dtype_policy=dtype_policy),
            "post_attention_norm": getattr(DistributedRMSNorm, method)(hf_config, mesh_device),
            "mlp": getattr(cls.ffn(), method)(hf_config, mesh_device, users_per_row=users_per_row, dtype_policy=dtype_policy),
            "residual_add": AddConfig(memory_config=ttnn.DRAM_MEMORY_CONFIG, dtype=ttnn.bfloat16),
        }

    @classmethod
    def create_state(
        cls,
        hf_config: Any,
        mesh_device: Any,
        paged_config: PagedConfig | None = None,
        *,
        caches: torch.Tensor | None = None,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        """The device and this layer's KVPE cache (``caches``: prefilled pages, see ``MLA.create_state``)."""
        return {
            MESH_DEVICE_KEY: mesh_device,
            "mla": MLA.create_state(hf_config, mesh_device, paged_config, caches=caches, dtype_policy=dtype_policy),
            "mlp": cls.ffn().create_state(hf_config, mesh_device, paged_config, dtype_policy=dtype_policy),
        }

    @classmethod
    def finalize_run_config(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["mla"] = MLA.finalize_run_config(cfg["mla"])
        cfg["mlp"] = cls.ffn().finalize_run_config(cfg["mlp"])
        return cfg

    @classmethod
    def forward_prefill(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """One user's ``[1, 1, S, hidden / C]`` -> same; fills the user's KVPE pages of this layer."""
        ctx = require_context(ctx, "prefill", cls.__name__)
        attn_in = DistributedRMSNorm.forward_prefill(x, cfg["input_norm"], ctx)
        attn_out = MLA.forward_prefill(attn_in, cfg["mla"], ctx)
        ttnn.deallocate(attn_in)
        ctx.observe("attention", attn_out)
        return cls._ffn_residual(cls._add(x, attn_out, cfg), cfg, ctx, decode=False)

    @classmethod
    def forward_decode(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """One token per user ``[1, 1, U, hidden / C]`` -> same; writes each user's KVPE at its position."""
        ctx = require_context(ctx, "decode", cls.__name__)
        with ctx.empty_slots_skipped():
            attn_in = DistributedRMSNorm.forward_decode(x, cfg["input_norm"], ctx)
            attn_out = MLA.forward_decode(attn_in, cfg["mla"], ctx)
            ttnn.deallocate(attn_in)
            ctx.observe("attention", attn_out)
            return cls._ffn_residual(cls._add(x, attn_out, cfg), cfg, ctx, decode=True)

    @classmethod
    def _add(cls, residual: Any, update: Any, cfg: dict[str, Any]) -> Any:
        out = ttnn.add(residual, update, **cfg["residual_add"])
        ttnn.deallocate(update)
        return out

    @classmethod
    def _ffn_residual(cls, h: Any, cfg: dict[str, Any], ctx: ForwardContext, *, decode: bool) -> Any:
        norm = DistributedRMSNorm.forward_decode if decode else DistributedRMSNorm.forward_prefill
        ffn_in = norm(h, cfg["post_attention_norm"], ctx)
        ffn = cls.ffn().forward_decode if decode else cls.ffn().forward_prefill
        ffn_out = ffn(ffn_in, cfg["mlp"], ctx)
        ttnn.deallocate(ffn_in)
        ctx.observe(cls.FFN_STAGE, ffn_out)
        out = cls._add(h, ffn_out, cfg)
        ctx.observe("block", out)
        return out


class MoEDecoderBlock(DecoderBlock):
    """MoE decoder block (layers from ``first_k_dense_replace`` on)."""

    IS_MOE = True
    FFN_STAGE = "moe"

    @classmethod
    def ffn(cls) -> Any:
        from deepseek_tt.modules.moe import MoE

        return MoE


def block_for_layer(hf_config: Any, layer: int) -> type[DecoderBlock]:
    """The block class of decoder layer ``layer``."""
    return MoEDecoderBlock if is_moe_layer(hf_config, layer) else DecoderBlock
