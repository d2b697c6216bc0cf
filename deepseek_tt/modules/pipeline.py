"""The row-pipelined DeepSeek-V3 model (``--generator pp``): decoder layers split over the mesh rows.

An ``R x C`` mesh is cut into R stage submeshes of ``1 x C`` (``mesh_device.create_submeshes``), one per
row. Stage r owns a contiguous run of decoder layers (:func:`assign_stages`; the layers keep the model's
order, so the dense layers come first), and only its submesh converts, loads and keeps those layers'
weights and KV caches; stage 0 also holds the embedding, stage R-1 the final norm and the LM head.
Inside a stage every module runs as it does on a ``1 x C`` mesh (hidden split over the columns,
experts over the row's C devices). Between stages the hidden states ``[1, 1, T, hidden / C]`` travel
over a mesh socket pair (``ttnn.create_socket_pair`` + ``ttnn.experimental.send_async`` /
``recv_async``) whose C connections link device (r, c) to device (r + 1, c): only the next row's
devices receive them.

KV caches: a stage serves every micro-batch (one micro-batch = the U users one row holds in the batched
model), so each of its layers keeps one paged cache with ``micro_batches`` times the pages of a row, and
micro-batch m reads and writes through its own page table (the row's table shifted by m times its page
count; :func:`create_stage_page_tables`), passed in the call's context like the batched model's.
The per-device KV bytes equal the batched model's; replicated weights shrink to about 1 / R, routed experts
per device do not (docs/PARALLELISM.md, pipeline section).

Contract (docs/DESIGN.md section 3): ``convert_weights`` / ``prefill_model_config`` / ``decode_model_config``
/ ``create_state`` take the whole mesh and return ``{"stages": [stage, ...]}`` trees; ``run_config``
merges each stage on its own submesh. Forward: :meth:`PipelinedModel.forward_stage_prefill` /
:meth:`forward_stage_decode` ``(x, stage_cfg, ctx)`` run one stage with the call's ``ForwardContext``
(the micro-batch's page table; the user's slot in its micro-batch or the decode positions), and
:meth:`transfer` hands a hidden state to the next stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy
from deepseek_tt.config.run_config import MESH_DEVICE_KEY, RunConfig, create_run_config
from deepseek_tt.modules.base import AbstractModule, mesh_shape, sub_state_dict
from deepseek_tt.modules.decoder_block import block_for_layer
from deepseek_tt.modules.embedding import Embedding
from deepseek_tt.modules.forward_context import ForwardContext, require_context
from deepseek_tt.modules.kv_cache import USERS_PER_ROW, PagedConfig, create_page_table, default_page_table
from deepseek_tt.modules.lm_head import LMHead
from deepseek_tt.modules.model import Model
from deepseek_tt.modules.rms_norm import DistributedRMSNorm

#: bytes of each stage-to-stage socket's FIFO (L1 of the connection cores; at least one tile page)
SOCKET_FIFO_BYTES = 64 * 1024


class PipelineConfigError(ValueError):
    """The model's layers cannot be split over the mesh rows."""


def assign_stages(num_layers: int, num_stages: int) -> list[range]:
    """Contiguous layer ranges, one per stage, in model order (dense layers first); the first
    ``num_layers % num_stages`` stages take one layer more. Needs at least one layer per stage."""
    if num_stages < 1:
        raise PipelineConfigError(f"pipeline parallelism needs at least one stage, got {num_stages}")
    if num_layers < num_stages:
        raise PipelineConfigError(
            f"pipeline parallelism puts at least one decoder layer on each mesh row: {num_layers} layers do not "
            f"fill {num_stages} rows (use a mesh with at most {num_layers} rows, or --generator bp)"
        )
    base, extra = divmod(num_layers, num_stages)
    ranges, start = [], 0
    for stage in range(num_stages):
        size = base + (1 if stage < extra else 0)
        ranges.append(range(start, start + size))
        start += size
    return ranges


def stage_meshes(mesh_device: Any) -> list[Any]:
    """The ``1 x C`` submesh of every row (created once per mesh and reused afterwards)."""
    rows, cols = mesh_shape(mesh_device)
    existing = [m for m in mesh_device.get_submeshes() if mesh_shape(m) == (1, cols)]
    if len(existing) == rows:
        return existing
    if existing:
        raise PipelineConfigError(f"the mesh already has {len(existing)} 1x{cols} submeshes; a pipeline needs {rows}")
    return list(mesh_device.create_submeshes(ttnn.MeshShape(1, cols)))


def stage_paged_config(row_paged: PagedConfig, micro_batches: int) -> PagedConfig:
    """A stage's cache geometry: the pages of ``micro_batches`` rows of users on each device."""
    return PagedConfig(
        block_size=row_paged.block_size,
        max_num_blocks=row_paged.max_num_blocks * micro_batches,
        users_per_device=row_paged.users_per_device * micro_batches,
    )


def micro_batch_page_table(row_table: torch.Tensor, row_paged: PagedConfig, micro_batch: int) -> torch.Tensor:
    """Micro-batch ``m``'s ``[u, blocks_per_user]`` table: the row's table moved to the m-th page range."""
    return row_table.to(torch.int32) + int(micro_batch) * row_paged.max_num_blocks


def create_stage_page_tables(
    row_paged: PagedConfig, meshes: list[Any], micro_batches: int, row_table: torch.Tensor | None = None
) -> list[list[Any]]:
    """``tables[stage][m]``: micro-batch m's page table on stage ``stage``'s submesh (``row_table``: one
    row's ``[u, blocks_per_user]`` table, default ``kv_cache.default_page_table``)."""
    row_table = default_page_table(row_paged) if row_table is None else torch.as_tensor(row_table)
    return [
        [create_page_table(row_paged, mesh, micro_batch_page_table(row_table, row_paged, m)) for m in range(int(micro_batches))]
        for mesh in meshes
    ]


def create_stage_sockets(meshes: list[Any]) -> list[tuple[Any, Any]]:
    """One (sender, receiver) socket pair per pair of neighbouring stages: device (0, c) of stage r to
    device (0, c) of stage r + 1, for every column c."""
    pairs = []
    for src, dst in zip(meshes, meshes[1:]):
        cols = mesh_shape(src)[1]
        connections = [
            ttnn.SocketConnection(
                ttnn.MeshCoreCoord(ttnn.MeshCoordinate(0, c), ttnn.CoreCoord(0, 0)),
                ttnn.MeshCoreCoord(ttnn.MeshCoordinate(0, c), ttnn.CoreCoord(0, 0)),
            )
            for c in range(cols)
        ]
        config = ttnn.SocketConfig(connections, ttnn.SocketMemoryConfig(ttnn.BufferType.L1, SOCKET_FIFO_BYTES))
        pairs.append(tuple(ttnn.create_socket_pair(src, dst, config)))
    return pairs


class PipelinedModel(AbstractModule):
    """Namespace class: the model as R pipeline stages (see the module docstring)."""

    @classmethod
    def stages(cls, hf_config: Any, mesh_device: Any) -> list[range]:
        return assign_stages(int(hf_config.num_hidden_layers), mesh_shape(mesh_device)[0])

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
        """Every stage's weights, converted for its own ``1 x C`` submesh (a layer is read once, by its stage)."""
        out = Path(output_path)
        ranges = cls.stages(hf_config, mesh_device)
        meshes = stage_meshes(mesh_device)
        steps = tqdm(total=int(hf_config.num_hidden_layers) + 3, desc="converting weights (pp)", unit="part", disable=not progress)
        stages = []
        for index, (layers, mesh) in enumerate(zip(ranges, meshes)):
            stage: dict[str, Any] = {}
            if index == 0:
                stage["embedding"] = Embedding.convert_weights(
                    hf_config, sub_state_dict(state_dict, "model.embed_tokens."), out / "embedding", mesh, dtype_policy=dtype_policy
                )
                steps.update()
            stage["layers"] = []
            for i in layers:
                steps.set_postfix_str(f"stage {index} layer {i}")
                stage["layers"].append(
                    block_for_layer(hf_config, i).convert_weights(
                        hf_config, sub_state_dict(state_dict, f"model.layers.{i}."), out / f"layers.{i}", mesh,
                        dtype_policy=dtype_policy, progress=progress,
                    )
                )
                steps.update()
            if index == len(ranges) - 1:
                stage["norm"] = DistributedRMSNorm.convert_weights(
                    hf_config, sub_state_dict(state_dict, "model.norm."), out / "norm", mesh, dtype_policy=dtype_policy
                )
                stage["lm_head"] = LMHead.convert_weights(
                    hf_config, sub_state_dict(state_dict, "lm_head."), out / "lm_head", mesh, dtype_policy=dtype_policy
                )
                steps.update(2)
            stages.append(stage)
        steps.close()
        return {"stages": stages}

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, mode: str, *, users_per_row: int = USERS_PER_ROW,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        method = f"{mode}_model_config"
        ranges = cls.stages(hf_config, mesh_device)
        meshes = stage_meshes(mesh_device)
        stages = []
        for index, (layers, mesh) in enumerate(zip(ranges, meshes)):
            stage: dict[str, Any] = {"first_layer": layers.start}
            if index == 0:
                stage["embedding"] = getattr(Embedding, method)(hf_config, mesh)
            stage["blocks"] = tuple(block_for_layer(hf_config, i) for i in layers)
            stage["layers"] = [
                getattr(block, method)(hf_config, mesh, users_per_row=users_per_row, dtype_policy=dtype_policy) for block in stage["blocks"]
            ]
            if index == len(ranges) - 1:
                stage["norm"] = getattr(DistributedRMSNorm, method)(hf_config, mesh)
                stage["lm_head"] = getattr(LMHead, method)(hf_config, mesh, dtype_policy=dtype_policy)
            stages.append(stage)
        return {"stages": stages}

    @classmethod
    def create_state(
        cls,
        hf_config: Any,
        mesh_device: Any,
        paged_config: PagedConfig | None = None,
        *,
        micro_batches: int | None = None,
        sockets: list[tuple[Any, Any]] | None = None,
        caches: Any = None,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        """Per stage: its submesh, one KVPE cache per own layer (pages for ``micro_batches`` rows of users,
        default R) and the sockets to its neighbours. ``paged_config`` is one row's geometry
        (``kv_cache.paged_config_for``). ``caches`` (prefilled KV) is not supported: pass ``None``."""
        if caches is not None:
            raise ValueError("PipelinedModel.create_state: prefilled caches are not supported (the caches start empty)")
        if paged_config is None:
            raise ValueError("PipelinedModel.create_state needs a paged_config (kv_cache.paged_config_for(...))")
        ranges = cls.stages(hf_config, mesh_device)
        meshes = stage_meshes(mesh_device)
        micro_batches = len(ranges) if micro_batches is None else int(micro_batches)
        cache_paged = stage_paged_config(paged_config, micro_batches)
        if sockets is None:
            sockets = create_stage_sockets(meshes)
        stages = []
        for index, (layers, mesh) in enumerate(zip(ranges, meshes)):
            stage: dict[str, Any] = {
                MESH_DEVICE_KEY: mesh,
                "layers": [
                    block_for_layer(hf_config, i).create_state(hf_config, mesh, cache_paged, dtype_policy=dtype_policy) for i in layers
                ],
            }
            if index > 0:
                stage["recv_socket"] = sockets[index - 1][1]
            if index < len(ranges) - 1:
                stage["send_socket"] = sockets[index][0]
            stages.append(stage)
        return {MESH_DEVICE_KEY: mesh_device, "stages": stages}

    @classmethod
    def run_config(
        cls,
        model_config: dict[str, Any],
        weight_config: dict[str, Any],
        state: dict[str, Any],
        *,
        weight_root: Path | None = None,
        loaded: dict | None = None,
        shared: RunConfig | None = None,
    ) -> RunConfig:
        """Each stage merged on its own submesh (weights load only onto that row's devices)."""
        stages = []
        for index, (mc, wc, st) in enumerate(zip(model_config["stages"], weight_config["stages"], state["stages"])):
            other = shared["stages"][index] if shared is not None else None
            stages.append(create_run_config(mc, wc, st, weight_root=weight_root, loaded=loaded, shared=other))
        return cls.finalize_run_config({MESH_DEVICE_KEY: state[MESH_DEVICE_KEY], "stages": stages})

    @classmethod
    def finalize_run_config(cls, cfg: RunConfig) -> RunConfig:
        for stage in cfg["stages"]:
            stage["layers"] = [block.finalize_run_config(layer) for block, layer in zip(stage["blocks"], stage["layers"])]
        return cfg

    # --- forward ---------------------------------------------------------------------------------

    @classmethod
    def forward_stage_prefill(cls, x: Any, stage: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """One stage of one user's prefill: tokens (stage 0, uint32 ``[1, S]``) or hidden ``[1, 1, S, hidden / C]``
        -> hidden, or logits ``[1, 1, S, V / C]`` on the last stage. ``ctx.user_id`` is the user's slot in its
        micro-batch, ``ctx.page_table`` the micro-batch's table on this stage (its KV goes to those pages)."""
        return cls._forward_stage(x, stage, require_context(ctx, "prefill", "PipelinedModel"))

    @classmethod
    def forward_stage_decode(cls, x: Any, stage: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """One stage of one micro-batch's decode step: tokens (stage 0, uint32 ``[1, U]``) or hidden
        ``[1, 1, U, hidden / C]`` -> hidden, or logits ``[1, 1, U, V / C]`` on the last stage."""
        return cls._forward_stage(x, stage, require_context(ctx, "decode", "PipelinedModel"))

    @classmethod
    def _forward_stage(cls, x: Any, stage: dict[str, Any], ctx: ForwardContext) -> Any:
        if "embedding" in stage:
            x = Model.embed(x, stage, ctx)
        x = Model.run_layers(x, stage, ctx, first_layer=stage["first_layer"])
        return Model.head(x, stage, ctx) if "lm_head" in stage else x

    @classmethod
    def transfer(cls, x: Any, sender: dict[str, Any], receiver: dict[str, Any]) -> Any:
        """Hand the hidden state ``x`` of stage ``sender`` to the next stage ``receiver`` over their socket
        pair (device (0, c) -> device (0, c)); ``x`` is deallocated, the received copy returned."""
        out = ttnn.zeros(
            list(x.shape), dtype=x.dtype, layout=x.layout, device=receiver[MESH_DEVICE_KEY], memory_config=ttnn.DRAM_MEMORY_CONFIG
        )
        ttnn.experimental.send_async(x, sender["send_socket"])
        ttnn.experimental.recv_async(out, receiver["recv_socket"])
        ttnn.deallocate(x)
        return out


__all__ = [
    "PipelineConfigError",
    "PipelinedModel",
    "assign_stages",
    "create_stage_page_tables",
    "create_stage_sockets",
    "micro_batch_page_table",
    "stage_meshes",
    "stage_paged_config",
]
