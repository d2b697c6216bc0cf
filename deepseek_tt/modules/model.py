"""The full DeepSeek-V3 model: embedding, N decoder blocks, final norm, LM head.

HF keys (full checkpoint names): ``model.embed_tokens.weight``, ``model.layers.{i}.*``,
``model.norm.weight``, ``lm_head.weight``. Sub-configs: ``embedding``, ``layers`` (a list, one per
decoder layer: :class:`DecoderBlock` for the first ``first_k_dense_replace``, then
:class:`MoEDecoderBlock`), ``norm``, ``lm_head``. The state holds the device, every layer's KVPE cache
and the shared page table (``page_table``).

Inputs: tokens as produced by ``Embedding.prefill_input`` / ``decode_input``; RoPE tensors from
``rope.RotarySetup``; decode positions from ``kv_cache.decode_positions_tensor``. Output: logits
``[1, 1, T, V / C]`` per device (``LMHead.logits_to_torch`` reassembles them).
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
from deepseek_tt.modules.kv_cache import USERS_PER_ROW, PagedConfig, create_page_table
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
    def _model_config(cls, hf_config: Any, mesh_device: Any, mode: str, users_per_row: int, dtype_policy: Any) -> dict[str, Any]:
        method = f"{mode}_model_config"
        return {
            "embedding": getattr(Embedding, method)(hf_config, mesh_device),
            "layers": [
                getattr(block_for_layer(hf_config, i), method)(hf_config, mesh_device, users_per_row=users_per_row, dtype_policy=dtype_policy)
                for i in range(hf_config.num_hidden_layers)
            ],
            "norm": getattr(DistributedRMSNorm, method)(hf_config, mesh_device),
            "lm_head": getattr(LMHead, method)(hf_config, mesh_device, dtype_policy=dtype_policy),
        }

    @classmethod
    def prefill_model_config(
        cls, hf_config: Any, mesh_device: Any, *, users_per_row: int = USERS_PER_ROW, dtype_policy: DtypePolicy | str | None = None
    ) -> dict[str, Any]:
        return cls._model_config(hf_config, mesh_device, "prefill", users_per_row, dtype_policy)

    @classmethod
    def decode_model_config(
        cls, hf_config: Any, mesh_device: Any, *, users_per_row: int = USERS_PER_ROW, dtype_policy: DtypePolicy | str | None = None
    ) -> dict[str, Any]:
        return cls._model_config(hf_config, mesh_device, "decode", users_per_row, dtype_policy)

    @classmethod
    def create_state(
        cls,
        hf_config: Any,
        mesh_device: Any,
        paged_config: PagedConfig | None = None,
        *,
        page_table: torch.Tensor | None = None,
        caches: list[torch.Tensor | None] | None = None,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        """Device, one KVPE cache per layer (zeros, or ``caches[i]`` as ``kv_cache.pack_user_caches``
        lays them out), and the page table (``page_table``: a torch one to use, else the default)."""
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
            "page_table": create_page_table(paged_config, mesh_device, page_table),
        }

    @classmethod
    def finalize_run_config(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["layers"] = [block.finalize_run_config(layer) for block, layer in zip(cls._blocks(cfg), cfg["layers"])]
        return cfg

    @classmethod
    def forward_prefill(cls, tokens: Any, user_id: int, rope_tensors: dict[str, Any], cfg: dict[str, Any]) -> Any:
        """One user's tokens (uint32 ``[1, S]`` replicated) -> logits ``[1, 1, S, V / C]``; fills its KV pages."""
        x = Embedding.forward_prefill(tokens, cfg["embedding"])
        for layer_cfg, block in zip(cfg["layers"], cls._blocks(cfg)):
            x = block.forward_prefill(x, user_id, rope_tensors, cfg["page_table"], layer_cfg)
        return cls._head(x, cfg, decode=False)

    @classmethod
    def forward_decode(cls, tokens: Any, position_idxs: Any, rope_tensors: dict[str, Any], cfg: dict[str, Any]) -> Any:
        """One token per user (uint32 ``[1, U]`` per row) -> logits ``[1, 1, U, V / C]``."""
        x = Embedding.forward_decode(tokens, cfg["embedding"])
        for layer_cfg, block in zip(cfg["layers"], cls._blocks(cfg)):
            x = block.forward_decode(x, position_idxs, rope_tensors, cfg["page_table"], layer_cfg)
        return cls._head(x, cfg, decode=True)

    @classmethod
    def _blocks(cls, cfg: dict[str, Any]) -> list[Any]:
        from deepseek_tt.modules.decoder_block import DecoderBlock, MoEDecoderBlock

        return [MoEDecoderBlock if layer["is_moe"] else DecoderBlock for layer in cfg["layers"]]

    @classmethod
    def _head(cls, x: Any, cfg: dict[str, Any], *, decode: bool) -> Any:
        from deepseek_tt.backend import ttnn

        norm = DistributedRMSNorm.forward_decode if decode else DistributedRMSNorm.forward_prefill
        normed = norm(x, cfg["norm"])
        ttnn.deallocate(x)
        logits = (LMHead.forward_decode if decode else LMHead.forward_prefill)(normed, cfg["lm_head"])
        ttnn.deallocate(normed)
        return logits
