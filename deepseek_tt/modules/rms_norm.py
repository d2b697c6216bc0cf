"""The residual stream's RMSNorm, distributed over mesh columns (:class:`DistributedRMSNorm`).

The gamma is stored as ttnn expects it: bfloat16 ROW_MAJOR ``[1, 1, width / 32, 32]`` (32-wide sticks).
HF key: ``weight`` ``[hidden]``. Input in the residual layout ``[1, 1, T, hidden / C]`` (hidden sharded on
mesh columns). Each device computes its partial sum of squares (``ttnn.rms_norm_pre_all_gather``), the
stats are all-gathered along the columns (cluster_axis=1) and ``ttnn.rms_norm_post_all_gather`` normalises
the local shard with the local slice of gamma. On a single-column mesh it is the plain ``ttnn.rms_norm``.
(MLA's latent norms call ``ttnn.rms_norm`` on their full-width rows directly.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy
from deepseek_tt.config.op_configs import (
    AllGatherConfig,
    RMSNormConfig,
    RMSNormPostAllGatherConfig,
    RMSNormPreAllGatherConfig,
)
from deepseek_tt.config.run_config import FromWeightConfig
from deepseek_tt.modules.base import (
    AbstractModule,
    mesh_shape,
    policy_dtype,
    require_key,
    save_weight,
)
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.kv_cache import USERS_PER_ROW


def _gamma_sticks(weight: torch.Tensor) -> torch.Tensor:
    width = weight.shape[-1]
    if width % ttnn.TILE_SIZE:
        raise ValueError(f"RMSNorm width {width} is not a multiple of {ttnn.TILE_SIZE}")
    return weight.reshape(1, 1, width // ttnn.TILE_SIZE, ttnn.TILE_SIZE)


class DistributedRMSNorm(AbstractModule):
    """RMSNorm of the residual stream, hidden sharded over mesh columns."""

    @classmethod
    def _distributed(cls, mesh_device: Any) -> bool:
        return mesh_shape(mesh_device)[1] > 1

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
        hidden = hf_config.hidden_size
        weight = require_key(state_dict, "weight", (hidden,), where="DistributedRMSNorm").to(torch.float32)
        cols = mesh_shape(mesh_device)[1]
        if hidden % (cols * ttnn.TILE_SIZE):
            raise ValueError(f"hidden_size {hidden} does not split into 32-wide sticks over {cols} mesh columns")
        record = save_weight(
            _gamma_sticks(weight),
            Path(output_path) / "rms_norm.weight",
            mesh_device,
            dtype=policy_dtype(dtype_policy, "norm"),
            layout=ttnn.ROW_MAJOR_LAYOUT,
            shard_dims=(None, 2),
        )
        op = "rms_norm_post_all_gather" if cls._distributed(mesh_device) else "rms_norm"
        return {op: {"weight": record}}

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, *, users_per_row: int = USERS_PER_ROW, dtype_policy: DtypePolicy | str | None = None
    ) -> dict[str, Any]:
        if not cls._distributed(mesh_device):
            plain = RMSNormConfig(
                epsilon=hf_config.rms_norm_eps,
                weight=FromWeightConfig(),
                memory_config=ttnn.DRAM_MEMORY_CONFIG,
            )
            return {"rms_norm": plain}
        return {
            "rms_norm_pre_all_gather": RMSNormPreAllGatherConfig(dtype=ttnn.bfloat16),
            "all_gather": AllGatherConfig(
                dim=3,
                cluster_axis=1,
                memory_config=ttnn.DRAM_MEMORY_CONFIG,
                topology=ttnn.Topology.Linear,
            ),
            "rms_norm_post_all_gather": RMSNormPostAllGatherConfig(
                epsilon=hf_config.rms_norm_eps,
                weight=FromWeightConfig(),
                dtype=ttnn.bfloat16,
                memory_config=ttnn.DRAM_MEMORY_CONFIG,
            ),
        }

    #: the same config serves both modes
    prefill_model_config = decode_model_config = model_config

    @classmethod
    def forward(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """``[1, 1, T, hidden / C]`` -> normalised, same shape and sharding."""
        if "rms_norm" in cfg:
            return ttnn.rms_norm(x, **cfg["rms_norm"])
        stats = ttnn.rms_norm_pre_all_gather(x, **cfg["rms_norm_pre_all_gather"])
        gathered = ttnn.all_gather(stats, **cfg["all_gather"])
        ttnn.deallocate(stats)
        out = ttnn.rms_norm_post_all_gather(x, gathered, **cfg["rms_norm_post_all_gather"])
        ttnn.deallocate(gathered)
        return out

    forward_prefill = forward
    forward_decode = forward
