"""Dense MLP (``down(silu(gate(x)) * up(x))``), tensor-parallel over mesh columns; also the shared expert.

HF keys: ``gate_proj.weight`` / ``up_proj.weight`` ``[I, hidden]``, ``down_proj.weight`` ``[hidden, I]``.

Per device (mesh R x C): ``w1`` = gate^T and ``w3`` = up^T ``[hidden, I / C]`` (column-parallel),
``w2`` = down^T ``[I / C, hidden]`` (row-parallel); replicated over mesh rows.

Forward, input and output in the residual layout ``[1, 1, T, hidden / C]``:
``all_gather`` (dim 3, cluster_axis 1) -> ``[.., hidden]``; ``w1``, ``w3`` -> ``[.., I / C]``;
``mul`` with SiLU fused on the first input; ``w2`` -> partial sums ``[.., hidden]``; ``reduce_scatter``
(dim 3, cluster_axis 1) -> ``[.., hidden / C]``. Rows never communicate: in decode each row holds its own
users. On a single-column mesh both collectives are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.config.op_configs import AllGatherConfig, LinearConfig, MulConfig, ReduceScatterConfig
from deepseek_tt.config.run_config import FromWeightConfig
from deepseek_tt.modules.base import (
    AbstractModule,
    compute_kernel_config,
    mesh_shape,
    require_key,
    save_weight,
)
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.kv_cache import USERS_PER_ROW


class MLP(AbstractModule):
    """The dense MLP of the first ``first_k_dense_replace`` layers."""

    #: DtypePolicy kind of the three projections.
    WEIGHT_KIND = "dense_mlp"

    @classmethod
    def intermediate_size(cls, hf_config: Any) -> int:
        return hf_config.intermediate_size

    @classmethod
    def _check_dims(cls, hf_config: Any, mesh_device: Any) -> None:
        cols = mesh_shape(mesh_device)[1]
        inter = cls.intermediate_size(hf_config)
        if inter % (cols * ttnn.TILE_SIZE) or hf_config.hidden_size % (cols * ttnn.TILE_SIZE):
            raise ValueError(
                f"{cls.__name__}: intermediate {inter} / hidden {hf_config.hidden_size} must split into tiles over {cols} mesh columns"
            )

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
        cls._check_dims(hf_config, mesh_device)
        hidden, inter = hf_config.hidden_size, cls.intermediate_size(hf_config)
        dtype = get_dtype_policy(dtype_policy).dtype(cls.WEIGHT_KIND)
        where = cls.__name__
        out = Path(output_path)
        gate = require_key(state_dict, "gate_proj.weight", (inter, hidden), where=where)
        up = require_key(state_dict, "up_proj.weight", (inter, hidden), where=where)
        down = require_key(state_dict, "down_proj.weight", (hidden, inter), where=where)
        weights = {}
        for name, hf_weight, dim in (("w1", gate, 1), ("w3", up, 1), ("w2", down, 0)):
            torch_weight = hf_weight.to(torch.float32).T.contiguous()
            weights[name] = {
                "input_tensor_b": save_weight(torch_weight, out / f"{name}.weight", mesh_device, dtype=dtype, shard_dims=(None, dim))
            }
        return weights

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, *, users_per_row: int = USERS_PER_ROW, dtype_policy: DtypePolicy | str | None = None
    ) -> dict[str, Any]:
        cls._check_dims(hf_config, mesh_device)
        compute = compute_kernel_config(dtype_policy, cls.WEIGHT_KIND)
        dram = ttnn.DRAM_MEMORY_CONFIG
        cfg: dict[str, Any] = {
            name: LinearConfig(
                input_tensor_b=FromWeightConfig(), memory_config=dram, dtype=ttnn.bfloat16, compute_kernel_config=compute
            )
            for name in ("w1", "w3", "w2")
        }
        cfg["mul"] = MulConfig(memory_config=dram, dtype=ttnn.bfloat16, input_tensor_a_activations=[ttnn.UnaryOpType.SILU])
        if mesh_shape(mesh_device)[1] > 1:
            topology = ttnn.Topology.Linear
            cfg["all_gather"] = AllGatherConfig(dim=3, cluster_axis=1, memory_config=dram, topology=topology)
            cfg["reduce_scatter"] = ReduceScatterConfig(dim=3, cluster_axis=1, memory_config=dram, topology=topology)
        return cfg

    #: the same config serves both modes
    prefill_model_config = decode_model_config = model_config

    @classmethod
    def forward(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """``[1, 1, T, hidden / C]`` -> ``[1, 1, T, hidden / C]``."""
        x_full = ttnn.all_gather(x, **cfg["all_gather"]) if "all_gather" in cfg else x
        gate = ttnn.linear(x_full, **cfg["w1"])
        up = ttnn.linear(x_full, **cfg["w3"])
        if x_full is not x:
            ttnn.deallocate(x_full)
        activated = ttnn.mul(gate, up, **cfg["mul"])
        ttnn.deallocate(gate)
        ttnn.deallocate(up)
        partial = ttnn.linear(activated, **cfg["w2"])
        ttnn.deallocate(activated)
        if "reduce_scatter" not in cfg:
            return partial
        out = ttnn.reduce_scatter(partial, **cfg["reduce_scatter"])
        ttnn.deallocate(partial)
        return out

    forward_prefill = forward
    forward_decode = forward


class SharedExpert(MLP):
    """The MoE layers' shared expert: an MLP of width ``moe_intermediate_size * n_shared_experts``."""

    WEIGHT_KIND = "shared_expert"

    @classmethod
    def intermediate_size(cls, hf_config: Any) -> int:
        return hf_config.moe_intermediate_size * max(1, int(getattr(hf_config, "n_shared_experts", 1) or 1))
