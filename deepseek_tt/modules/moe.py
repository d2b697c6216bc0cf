"""The MoE block: gate, all-to-all dispatch, routed experts, combine, weighting, reduce; plus the shared expert.

Layout (mesh R x C, ``D = R * C`` devices, ``El = E / D`` experts per device, ``K`` experts per token):

1. ``x`` ``[1, 1, T, hidden / C]`` (residual layout) -> ``all_gather`` over columns -> ``[1, 1, T, hidden]``.
   Prefill (the sequence is replicated over rows): ``mesh_partition`` splits the tokens over rows, so
   row r routes tokens ``r*T/R .. (r+1)*T/R - 1`` (``T' = T / R``; a T that R does not divide is routed
   whole by every row); decode keeps the row's users (``T' = T``).
2. :class:`MoEGate` -> weights, indices ``[1, 1, T', K]`` (computed on every device of the row).
3. ``all_to_all_dispatch`` along mesh rows (``cluster_axis=0``): within each column, a token goes to the
   devices holding one of its experts -> ``[1, R*T', 1, hidden]`` per device and the all-gathered indices.
   Each column serves its own experts (the tokens are replicated over columns), so no token crosses a
   column.
4. :class:`Experts` on ``[1, El, R*T', hidden]`` (the dispatched rows repeated per local expert).
5. ``all_to_all_combine`` along rows -> ``[K, T', 1, hidden]``: slot k = the token's k-th expert output
   when that expert lives in this column, else zero.
6. Multiply by the routing weights and sum the K slots -> partial ``[1, 1, T', hidden]`` (this column's
   experts only); ``reduce_scatter`` over columns sums the columns' partials and re-shards hidden ->
   ``[1, 1, T', hidden / C]``; prefill ``all_gather``s the row chunks back -> ``[1, 1, T, hidden / C]``.
7. Plus the shared expert (:class:`SharedExpert`, the dense MLP's tensor parallelism) on ``x``.

On a 1-column mesh the column collectives are skipped, on a 1-row mesh the row partition / gather.
HF keys (relative to ``mlp.``): ``gate.*``, ``experts.{e}.{gate,up,down}_proj.weight``, ``shared_experts.*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy
from deepseek_tt.config.op_configs import (
    AddConfig,
    AllGatherConfig,
    AllToAllCombineConfig,
    AllToAllDispatchConfig,
    MeshPartitionConfig,
    MulConfig,
    PermuteConfig,
    ReduceScatterConfig,
    RepeatConfig,
    SumConfig,
)
from deepseek_tt.config.run_config import MESH_DEVICE_KEY, RunConfig
from deepseek_tt.modules.base import AbstractModule, mesh_shape, sub_state_dict
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.kv_cache import USERS_PER_ROW
from deepseek_tt.modules.experts import Experts, experts_per_device, num_devices
from deepseek_tt.modules.mlp import SharedExpert
from deepseek_tt.modules.moe_gate import MoEGate


def expert_mapping(hf_config: Any, mesh_device: Any) -> torch.Tensor:
    """``[1, 1, E, D]`` one-hot: expert e -> device ``e // El`` (row-major device index)."""
    per_device = experts_per_device(hf_config, mesh_device)
    devices = num_devices(mesh_device)
    mapping = torch.eye(devices, dtype=torch.int32).repeat_interleave(per_device, dim=0)
    return mapping.reshape(1, 1, hf_config.n_routed_experts, devices)


class MoE(AbstractModule):
    """One MoE layer's feed-forward (see module docstring)."""

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
        out = Path(output_path)
        return {
            "gate": MoEGate.convert_weights(hf_config, sub_state_dict(state_dict, "gate."), out / "gate", mesh_device, dtype_policy=dtype_policy),
            "experts": Experts.convert_weights(
                hf_config, sub_state_dict(state_dict, "experts."), out / "experts", mesh_device, dtype_policy=dtype_policy, progress=progress
            ),
            "shared_expert": SharedExpert.convert_weights(
                hf_config, sub_state_dict(state_dict, "shared_experts."), out / "shared_expert", mesh_device, dtype_policy=dtype_policy
            ),
        }

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, mode: str, *, users_per_row: int = USERS_PER_ROW,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        rows, cols = mesh_shape(mesh_device)
        per_device = experts_per_device(hf_config, mesh_device)
        if hf_config.hidden_size % (cols * ttnn.TILE_SIZE):
            raise ValueError(f"MoE: hidden_size {hf_config.hidden_size} does not split into tiles over {cols} mesh columns")
        decode = mode == "decode"
        mem = ttnn.L1_MEMORY_CONFIG if decode else ttnn.DRAM_MEMORY_CONFIG
        sub = (MoEGate, Experts, SharedExpert)
        gate, experts, shared = (
            (m.decode_model_config if decode else m.prefill_model_config)(hf_config, mesh_device, dtype_policy=dtype_policy) for m in sub
        )
        cfg: dict[str, Any] = {
            "gate": gate,
            "experts": experts,
            "shared_expert": shared,
            "dispatch": AllToAllDispatchConfig(cluster_axis=0, memory_config=mem, output_concat_dim=1),
            "combine": AllToAllCombineConfig(cluster_axis=0, memory_config=mem),
            "repeat_per_expert": RepeatConfig(repeat_dims=(1, per_device, 1, 1), memory_config=mem),
            "weights_to_slots": PermuteConfig(dims=(3, 1, 2, 0), memory_config=mem),
            "mul_weights": MulConfig(memory_config=mem, dtype=ttnn.bfloat16),
            "sum_slots": SumConfig(dim=0, keepdim=True, memory_config=mem),
            "add_shared": AddConfig(memory_config=mem, dtype=ttnn.bfloat16),
            "hidden_size": hf_config.hidden_size,
            "num_experts_per_tok": hf_config.num_experts_per_tok,
            "experts_per_device": per_device,
            "mesh_rows": rows,
        }
        if cols > 1:
            topology = ttnn.Topology.Linear
            cfg["gather_hidden"] = AllGatherConfig(dim=3, cluster_axis=1, memory_config=mem, topology=topology)
            cfg["reduce_scatter_hidden"] = ReduceScatterConfig(dim=3, cluster_axis=1, memory_config=mem, topology=topology)
        if rows > 1 and not decode:
            cfg["partition_tokens"] = MeshPartitionConfig(dim=2, cluster_axis=0, memory_config=mem)
            cfg["gather_tokens"] = AllGatherConfig(dim=2, cluster_axis=0, memory_config=mem, topology=ttnn.Topology.Linear)
        return cfg

    @classmethod
    def create_state(
        cls,
        hf_config: Any,
        mesh_device: Any,
        paged_config: Any = None,
        *,
        caches: Any = None,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        """The device and the replicated expert-mapping tensor (uint16, ROW_MAJOR)."""
        mapping = ttnn.from_torch(
            expert_mapping(hf_config, mesh_device),
            dtype=ttnn.uint16,
            layout=ttnn.ROW_MAJOR_LAYOUT,
            device=mesh_device,
            memory_config=ttnn.DRAM_MEMORY_CONFIG,
            mesh_mapper=ttnn.ReplicateTensorToMesh(mesh_device),
        )
        return {MESH_DEVICE_KEY: mesh_device, "expert_mapping": mapping}

    @classmethod
    def finalize_run_config(cls, cfg: RunConfig) -> RunConfig:
        """Stack the loaded expert slots (also when the MoE is part of a decoder block / model run config)."""
        Experts.stack_weights(cfg["experts"])
        return cfg

    @classmethod
    def forward_routed(cls, x_full: Any, cfg: RunConfig) -> Any:
        """Routed experts of the tokens a row holds: ``[1, 1, T', hidden]`` -> partial ``[1, 1, T', hidden]``
        (the sum over this column's experts; columns are summed by the caller)."""
        tokens, hidden, k = x_full.shape[-2], cfg["hidden_size"], cfg["num_experts_per_tok"]
        weights, indices = MoEGate.forward(x_full, cfg["gate"])

        x_rm = ttnn.reshape(ttnn.to_layout(x_full, ttnn.ROW_MAJOR_LAYOUT), (tokens, 1, 1, hidden))
        idx_rm = ttnn.reshape(ttnn.to_layout(indices, ttnn.ROW_MAJOR_LAYOUT), (tokens, 1, 1, k))
        ttnn.deallocate(indices)
        dispatched, metadata = ttnn.all_to_all_dispatch(x_rm, idx_rm, cfg["expert_mapping"], **cfg["dispatch"])
        ttnn.deallocate(x_rm)
        ttnn.deallocate(idx_rm)
        group_tokens = dispatched.shape[1]  # R * T'
        expert_in = ttnn.reshape(dispatched, (1, 1, group_tokens, hidden))
        expert_in = ttnn.repeat(expert_in, **cfg["repeat_per_expert"])
        expert_in = ttnn.to_layout(expert_in, ttnn.TILE_LAYOUT)
        ttnn.deallocate(dispatched)

        expert_out = Experts.forward(expert_in, cfg["experts"])  # [1, El, R*T', hidden]
        ttnn.deallocate(expert_in)
        expert_out = ttnn.to_layout(expert_out, ttnn.ROW_MAJOR_LAYOUT)
        expert_out = ttnn.reshape(expert_out, (cfg["experts_per_device"], group_tokens, 1, hidden))
        # Slots whose expert sits in another column receive nothing: start from zeros (as tt-metal does).
        zeros = ttnn.zeros(
            (k, tokens, 1, hidden), dtype=ttnn.bfloat16, layout=ttnn.ROW_MAJOR_LAYOUT, device=x_full.device(),
            memory_config=cfg["combine"].memory_config,
        )
        combined = ttnn.all_to_all_combine(
            expert_out, metadata, cfg["expert_mapping"], output_tensor=zeros, **cfg["combine"]
        )  # [K, T', 1, H]
        ttnn.deallocate(expert_out)
        ttnn.deallocate(metadata)
        combined = ttnn.to_layout(ttnn.reshape(combined, (k, 1, tokens, hidden)), ttnn.TILE_LAYOUT)

        slot_weights = ttnn.permute(weights, **cfg["weights_to_slots"])  # [K, 1, T', 1]
        ttnn.deallocate(weights)
        weighted = ttnn.mul(combined, slot_weights, **cfg["mul_weights"])
        ttnn.deallocate(combined)
        ttnn.deallocate(slot_weights)
        partial = ttnn.sum(weighted, **cfg["sum_slots"])  # [1, 1, T', hidden]
        ttnn.deallocate(weighted)
        return partial

    @classmethod
    def forward(cls, x: Any, cfg: RunConfig, ctx: ForwardContext | None = None) -> Any:
        """``[1, 1, T, hidden / C]`` -> ``[1, 1, T, hidden / C]`` (routed + shared experts)."""
        x_full = ttnn.all_gather(x, **cfg["gather_hidden"]) if "gather_hidden" in cfg else x
        # Prefill splits the sequence over the rows; a length that does not split evenly is routed whole
        # by every row (correct, R times the expert work).
        split_rows = "partition_tokens" in cfg and x_full.shape[-2] % cfg["mesh_rows"] == 0
        routed_in = ttnn.mesh_partition(x_full, **cfg["partition_tokens"]) if split_rows else x_full
        routed = cls.forward_routed(routed_in, cfg)
        if routed_in is not x_full:
            ttnn.deallocate(routed_in)
        if x_full is not x:
            ttnn.deallocate(x_full)
        if "reduce_scatter_hidden" in cfg:
            routed = ttnn.reduce_scatter(routed, **cfg["reduce_scatter_hidden"])
        if split_rows:
            routed = ttnn.all_gather(routed, **cfg["gather_tokens"])
        shared = SharedExpert.forward(x, cfg["shared_expert"])
        out = ttnn.add(routed, shared, **cfg["add_shared"])
        ttnn.deallocate(routed)
        ttnn.deallocate(shared)
        return out

    forward_prefill = forward
    forward_decode = forward
