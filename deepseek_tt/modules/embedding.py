"""Token embedding, the table sharded on hidden across mesh columns.

HF key ``weight`` ``[vocab, hidden]``. Each device holds ``[vocab, hidden / C]`` (bfloat16 ROW_MAJOR, as
``ttnn.embedding`` wants its table), replicated over rows, so the lookup directly produces the residual
layout ``[1, 1, T, hidden / C]`` with no collective.

Token inputs (``prefill_input`` / ``decode_input``): uint32 ROW_MAJOR ``[1, T]`` per device. Prefill: one
user's sequence replicated everywhere. Decode: ``R * U`` tokens, row ``r`` gets tokens ``r*U .. r*U+U-1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy
from deepseek_tt.config.op_configs import EmbeddingConfig
from deepseek_tt.config.run_config import FromWeightConfig
from deepseek_tt.modules.base import AbstractModule, mesh_shape, policy_dtype, require_key, save_weight
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.kv_cache import USERS_PER_ROW


class Embedding(AbstractModule):
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
        shape = (hf_config.vocab_size, hf_config.hidden_size)
        weight = require_key(state_dict, "weight", shape, where="Embedding")
        record = save_weight(
            weight.to(torch.float32),
            Path(output_path) / "embedding.weight",
            mesh_device,
            dtype=policy_dtype(dtype_policy, "embedding"),
            layout=ttnn.ROW_MAJOR_LAYOUT,
            shard_dims=(None, 1),
        )
        return {"embedding": {"weight": record}}

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, *, users_per_row: int = USERS_PER_ROW, dtype_policy: DtypePolicy | str | None = None
    ) -> dict[str, Any]:
        return {
            "embedding": EmbeddingConfig(
                weight=FromWeightConfig(),
                layout=ttnn.TILE_LAYOUT,
                dtype=ttnn.bfloat16,
                memory_config=ttnn.DRAM_MEMORY_CONFIG,
            ),
            "hidden_per_device": hf_config.hidden_size // mesh_shape(mesh_device)[1],
        }

    #: the same config serves both modes
    prefill_model_config = decode_model_config = model_config

    @classmethod
    def forward(cls, tokens: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """uint32 ``[1, T]`` per device -> ``[1, 1, T, hidden / C]`` bfloat16 TILE."""
        out = ttnn.embedding(tokens, **cfg["embedding"])
        num_tokens = int(tokens.shape[-1])
        return ttnn.reshape(out, (1, 1, num_tokens, cfg["hidden_per_device"]))

    forward_prefill = forward
    forward_decode = forward

    # --- host inputs -----------------------------------------------------------------------------

    @staticmethod
    def prefill_input(tokens: torch.Tensor, mesh_device: Any, *, on_device: bool = True) -> Any:
        """One user's tokens ``[T]`` -> uint32 ``[1, T]`` replicated on every device."""
        tokens = tokens.reshape(1, -1).to(torch.int64)
        return ttnn.from_torch(
            tokens,
            dtype=ttnn.uint32,
            layout=ttnn.ROW_MAJOR_LAYOUT,
            device=mesh_device if on_device else None,
            mesh_mapper=ttnn.ReplicateTensorToMesh(mesh_device),
        )

    @staticmethod
    def decode_input(tokens: torch.Tensor, mesh_device: Any, *, on_device: bool = True) -> Any:
        """``R * U`` tokens -> uint32 ``[1, U]`` per device, row ``r`` holding users ``r*U .. r*U+U-1``."""
        rows, cols = mesh_shape(mesh_device)
        tokens = tokens.reshape(-1).to(torch.int64)
        if tokens.numel() % rows:
            raise ValueError(f"decode batch {tokens.numel()} does not split over {rows} mesh rows")
        return ttnn.from_torch(
            tokens.reshape(rows, -1),
            dtype=ttnn.uint32,
            layout=ttnn.ROW_MAJOR_LAYOUT,
            device=mesh_device if on_device else None,
            mesh_mapper=ttnn.ShardTensor2dMesh(mesh_device, mesh_shape=(rows, cols), dims=(0, None)),
        )
