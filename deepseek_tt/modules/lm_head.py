"""LM head, vocab-sharded over mesh columns.

HF key ``weight`` ``[vocab, hidden]``. Per device ``w = weight^T[:, c*V/C:(c+1)*V/C]`` ``[hidden, V / C]``,
replicated over rows. Forward: ``all_gather`` (dim 3, cluster_axis 1) of the residual-layout input
``[1, 1, T, hidden / C]`` to the full hidden, then one linear -> logits ``[1, 1, T, V / C]`` per device
(float32). :meth:`LMHead.logits_to_torch` reassembles ``[T, V]`` (prefill: rows are replicas,
checked identical) or
``[R * U, V]`` (decode: row r holds users r*U ..).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.config.op_configs import AllGatherConfig, LinearConfig
from deepseek_tt.config.run_config import FromWeightConfig
from deepseek_tt.modules.base import AbstractModule, compute_kernel_config, mesh_shape, require_key, save_weight
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.kv_cache import USERS_PER_ROW
from deepseek_tt.modules.layout import replicated_row


class LMHead(AbstractModule):
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
        vocab, hidden = hf_config.vocab_size, hf_config.hidden_size
        cols = mesh_shape(mesh_device)[1]
        if vocab % (cols * ttnn.TILE_SIZE):
            raise ValueError(f"LMHead: vocab_size {vocab} does not split into tiles over {cols} mesh columns")
        weight = require_key(state_dict, "weight", (vocab, hidden), where="LMHead")
        record = save_weight(
            weight.to(torch.float32).T.contiguous(),
            Path(output_path) / "lm_head.weight",
            mesh_device,
            dtype=get_dtype_policy(dtype_policy).dtype("lm_head"),
            shard_dims=(None, 1),
        )
        return {"linear": {"input_tensor_b": record}}

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, *, users_per_row: int = USERS_PER_ROW, dtype_policy: DtypePolicy | str | None = None
    ) -> dict[str, Any]:
        dram = ttnn.DRAM_MEMORY_CONFIG
        cfg: dict[str, Any] = {
            "linear": LinearConfig(
                input_tensor_b=FromWeightConfig(),
                memory_config=dram,
                dtype=ttnn.float32,
                compute_kernel_config=compute_kernel_config(dtype_policy, "lm_head"),
            )
        }
        if mesh_shape(mesh_device)[1] > 1:
            cfg["all_gather"] = AllGatherConfig(dim=3, cluster_axis=1, memory_config=dram, topology=ttnn.Topology.Linear)
        return cfg

    #: the same config serves both modes
    prefill_model_config = decode_model_config = model_config

    @classmethod
    def forward(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """``[1, 1, T, hidden / C]`` -> logits ``[1, 1, T, V / C]`` per device."""
        x_full = ttnn.all_gather(x, **cfg["all_gather"]) if "all_gather" in cfg else x
        logits = ttnn.linear(x_full, **cfg["linear"])
        if x_full is not x:
            ttnn.deallocate(x_full)
        return logits

    forward_prefill = forward
    forward_decode = forward

    @staticmethod
    def logits_to_torch(logits: Any, mesh_device: Any, *, decode: bool) -> torch.Tensor:
        """Per-device ``[1, 1, T, V / C]`` -> ``[R * T, V]`` (decode) or ``[T, V]`` (prefill), float32."""
        rows, cols = mesh_shape(mesh_device)
        full = ttnn.to_torch(
            logits,
            mesh_composer=ttnn.ConcatMesh2dToTensor(mesh_device, mesh_shape=(rows, cols), dims=(0, 3)),
        )  # [R, 1, T, V]
        full = full.to(torch.float32)
        if decode:
            return full.reshape(rows * full.shape[2], full.shape[3])
        return replicated_row(full, "prefill logits")[0]
