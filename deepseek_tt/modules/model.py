"""The full DeepSeek-V3 model: embedding, N decoder blocks, final norm, LM head.

HF keys (full checkpoint names): ``model.embed_tokens.weight``, ``model.layers.{i}.*``,
``model.norm.weight``, ``lm_head.weight``. Sub-configs: ``embedding``, ``blocks`` (the block class of
every decoder layer, :func:`~deepseek_tt.modules.decoder_block.block_for_layer`), ``layers`` (a list, one
config per decoder layer), ``norm``, ``lm_head``. The state holds the device and every layer's KVPE cache;
the page table is not part of it: it travels in the call's context.

Inputs: tokens as produced by ``Embedding.prefill_input`` / ``decode_input``; a
:class:`~deepseek_tt.modules.forward_context.ForwardContext` with the RoPE tensors (``rope.RotarySetup``),
the device page table (``kv_cache.create_page_table``) and the user id (prefill) or the decode positions
(``kv_cache.decode_positions_tensor``). Output: logits ``[1, 1, T, V / C]`` per device
(``LMHead.logits_to_torch`` reassembles them). The model hands the stages ``embedding``, ``norm`` and
``logits`` (and, through the blocks, each layer's) to the context's observer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from deepseek_tt.config.dtype_policy import DtypePolicy
from deepseek_tt.config.run_config import MESH_DEVICE_KEY
from deepseek_tt.modules.base import AbstractModule, sub_state_dict
from deepseek_tt.modules.decoder_block import block_for_layer
from deepseek_tt.modules.embedding import Embedding
from deepseek_tt.modules.forward_context import ForwardContext, require_context
from deepseek_tt.modules.kv_cache import USERS_PER_ROW, PagedConfig
from deepseek_tt.modules.lm_head import LMHead
from deepseek_tt.modules.rms_norm import DistributedRMSNorm


class Model(AbstractModule):
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
        """Convert every weight, one layer at a time (a lazy state dict is read only layer by layer)."""
        out = Path(output_path)
        num_layers = hf_config.num_hidden_layers
        steps = tqdm(total=num_layers + 3, desc="converting weights", unit="part", disable=not progress)
        weights: dict[str, Any] = {}
        weights["embedding"] = Embedding.convert_weights(
            hf_config, sub_state_dict(state_dict, "model.embed_tokens."), out / "embedding", mesh_device, dtype_policy=dtype_policy
        )
        steps.update()
        layers = []
        for i in range(num_layers):
            steps.set_postfix_str(f"layer {i}")
            block = block_for_layer(hf_config, i)
            layers.append(
                block.convert_weights(
                    hf_config,
                    sub_state_dict(state_dict, f"model.layers.{i}."),
                    out / f"layers.{i}",
                    mesh_device,
                    dtype_policy=dtype_policy,
                    progress=progress,
                )
            )
            steps.update()
        weights["layers"] = layers
        weights["norm"] = DistributedRMSNorm.convert_weights(
            hf_config, sub_state_dict(state_dict, "model.norm."), out / "norm", mesh_device, dtype_policy=dtype_policy
        )
        steps.update()
        weights["lm_head"] = LMHead.convert_weights(
            hf_config, sub_state_dict(state_dict, "lm_head."), out / "lm_head", mesh_device, dtype_policy=dtype_policy
        )
        steps.update()
        steps.close()
        return weights

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, mode: str, *, users_per_row: int = USERS_PER_ROW,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        method = f"{mode}_model_config"
        blocks = tuple(block_for_layer(hf_config, i) for i in range(hf_config.num_hidden_layers))
        return {
            "embedding": getattr(Embedding, method)(hf_config, mesh_device),
            "blocks": blocks,
            "layers": [
                getattr(block, method)(hf_config, mesh_device, users_per_row=users_per_row, dtype_policy=dtype_policy) for block in blocks
            ],
            "norm": getattr(DistributedRMSNorm, method)(hf_config, mesh_device),
            "lm_head": getattr(LMHead, method)(hf_config, mesh_device, dtype_policy=dtype_policy),
        }

    @classmethod
    def create_state(
        cls,
        hf_config: Any,
        mesh_device: Any,
        paged_config: PagedConfig | None = None,
        *,
        caches: list[torch.Tensor | None] | None = None,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        """Device and one KVPE cache per layer (zeros, or ``caches[i]`` as ``kv_cache.pack_user_caches``
        lays them out)."""
        if paged_config is None:
            raise ValueError("Model.create_state needs a paged_config (kv_cache.paged_config_for(...))")
        num_layers = hf_config.num_hidden_layers
        if caches is not None and len(caches) != num_layers:
            raise ValueError(f"Model.create_state: {len(caches)} layer caches for {num_layers} layers")
        return {
            MESH_DEVICE_KEY: mesh_device,
            "layers": [
                block_for_layer(hf_config, i).create_state(
                    hf_config, mesh_device, paged_config, caches=None if caches is None else caches[i], dtype_policy=dtype_policy
                )
                for i in range(num_layers)
            ],
        }

    @classmethod
    def finalize_run_config(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["layers"] = [block.finalize_run_config(layer) for block, layer in zip(cfg["blocks"], cfg["layers"])]
        return cfg

    @classmethod
    def forward_prefill(cls, tokens: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """One user's tokens (uint32 ``[1, S]`` replicated) -> logits ``[1, 1, S, V / C]``; fills the KV pages
        of user ``ctx.user_id``."""
        ctx = require_context(ctx, "prefill", "Model")
        return cls.head(cls.run_layers(cls.embed(tokens, cfg, ctx), cfg, ctx), cfg, ctx)

    @classmethod
    def forward_decode(cls, tokens: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """One token per user (uint32 ``[1, U]`` per row) -> logits ``[1, 1, U, V / C]``."""
        ctx = require_context(ctx, "decode", "Model")
        return cls.head(cls.run_layers(cls.embed(tokens, cfg, ctx), cfg, ctx), cfg, ctx)

    @classmethod
    def run_layers(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext, first_layer: int = 0) -> Any:
        """The hidden state through the decoder layers of ``cfg`` (``cfg["blocks"]`` / ``cfg["layers"]``),
        the first being model layer ``first_layer`` (a pipeline stage's first)."""
        for i, (block, layer_cfg) in enumerate(zip(cfg["blocks"], cfg["layers"]), start=first_layer):
            layer_ctx = ctx.at_layer(i)
            x = (block.forward_decode if ctx.is_decode else block.forward_prefill)(x, layer_cfg, layer_ctx)
        return x

    @classmethod
    def embed(cls, tokens: Any, cfg: dict[str, Any], ctx: ForwardContext) -> Any:
        """Tokens -> the residual stream (``cfg["embedding"]``), observed as stage ``embedding``."""
        x = (Embedding.forward_decode if ctx.is_decode else Embedding.forward_prefill)(tokens, cfg["embedding"], ctx)
        ctx.observe("embedding", x)
        return x

    @classmethod
    def head(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext) -> Any:
        """Final norm and LM head (``cfg["norm"]`` / ``cfg["lm_head"]``) -> logits; ``x`` is deallocated."""
        from deepseek_tt.backend import ttnn

        norm = DistributedRMSNorm.forward_decode if ctx.is_decode else DistributedRMSNorm.forward_prefill
        with ctx.empty_slots_skipped():
            normed = norm(x, cfg["norm"], ctx)
            ttnn.deallocate(x)
            ctx.observe("norm", normed)
            logits = (LMHead.forward_decode if ctx.is_decode else LMHead.forward_prefill)(normed, cfg["lm_head"], ctx)
        ttnn.deallocate(normed)
        ctx.observe("logits", logits)
        return logits
