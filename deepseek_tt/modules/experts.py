"""Routed experts, expert-parallel over every device of the mesh.

Placement: with ``D = R * C`` devices, device ``d = r * C + c`` holds experts ``d * El .. d * El + El - 1``
(``El = n_routed_experts / D``), in the order of ``MoE``'s expert-mapping tensor. Per device:
``w1`` (gate^T) and ``w3`` (up^T) ``[1, El, hidden, I]``, ``w2`` (down^T) ``[1, El, I, hidden]``; dtypes from
the policy kinds ``expert_gate_up`` (default bfloat4_b, LoFi) and ``expert_down`` (bfloat8_b, HiFi2).

Streamed conversion: experts are read one *chunk of slots* at a time. Slot ``j`` is the ``j``-th local
expert of every device (``D`` experts, one per device); a chunk is ``g = max(1, EXPERTS_PER_FILE // D)``
consecutive slots (``g * D`` experts), written as one mesh tensor ``[1, g, ., .]`` per device and file.
A file is built device by device (each device's ``g`` experts converted on the host as soon as they are
read, the devices' host tensors joined with ``ttnn.from_host_shards``), with three stages overlapping:
a reader thread reads the next device's experts from the (lazy) state dict, this thread transposes them
into an fp32 staging buffer and converts, a writer thread dumps the previous file. Peak host memory:
two files' converted tensors (one being written) plus three times ``g`` experts in fp32, never the layer (about 1.6 GB on a 1x1 mesh
and 2.3 GB on a Galaxy at DeepSeek-V3 dims). Loading concatenates a projection's chunk tensors along
dim 1 on the device (:meth:`Experts.stack_weights`).

Forward: ``x`` ``[1, El, N, hidden]`` (the dispatched tokens, repeated for each local expert) ->
``[1, El, N, hidden]``: ``w2(silu(w1 x) * w3 x)`` as batched matmuls, each local expert on all N rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.config.op_configs import ConcatConfig, LinearConfig, MulConfig
from deepseek_tt.config.run_config import FromWeightConfig, RunConfig, WeightRecord
from deepseek_tt.modules.base import TENSOR_SUFFIX, AbstractModule, compute_kernel_config, mesh_shape, require_key
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.kv_cache import USERS_PER_ROW

#: Experts per converted file on small meshes (bounds host memory; larger files convert faster).
EXPERTS_PER_FILE = 8

#: ttnn name -> (HF projection, dtype-policy kind).
PROJECTIONS = {
    "w1": ("gate_proj", "expert_gate_up"),
    "w3": ("up_proj", "expert_gate_up"),
    "w2": ("down_proj", "expert_down"),
}


def num_devices(mesh_device: Any) -> int:
    rows, cols = mesh_shape(mesh_device)
    return rows * cols


def experts_per_device(hf_config: Any, mesh_device: Any) -> int:
    """``n_routed_experts / (R * C)``; one clear error when the experts do not split evenly."""
    devices = num_devices(mesh_device)
    if hf_config.n_routed_experts % devices:
        raise ValueError(
            f"Experts: n_routed_experts={hf_config.n_routed_experts} does not split over the {devices} devices "
            f"of a {'x'.join(map(str, mesh_shape(mesh_device)))} mesh"
        )
    return hf_config.n_routed_experts // devices


def expert_device(expert: int, hf_config: Any, mesh_device: Any) -> int:
    """The mesh device index (row-major) that holds ``expert``."""
    return expert // experts_per_device(hf_config, mesh_device)


class Experts(AbstractModule):
    """The routed experts of one MoE layer (see module docstring)."""

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
        """``state_dict`` keys relative to the experts (``"{e}.gate_proj.weight"`` ...), lazily read.

        Streamed, one file at a time, in three overlapping stages (see the module docstring).
        """
        per_device = experts_per_device(hf_config, mesh_device)
        rows, cols = mesh_shape(mesh_device)
        devices = rows * cols
        hidden, inter = hf_config.hidden_size, hf_config.moe_intermediate_size
        policy = get_dtype_policy(dtype_policy)
        out = Path(output_path)
        out.mkdir(parents=True, exist_ok=True)
        chunks = cls.slot_chunks(hf_config, mesh_device)
        # one task per (file, projection, device): that device's experts of the file, in conversion order
        tasks = [(first, size, name, device) for first, size in chunks for name in PROJECTIONS for device in range(devices)]
        # one fp32 staging buffer, reused (a fresh large allocation costs a page fault per 4 KiB)
        staging = torch.empty(max((size for _, size in chunks), default=0) * hidden * inter, dtype=torch.float32)

        def read(task: tuple[int, int, str, int]) -> list[torch.Tensor]:
            first, size, name, device = task
            hf_name = PROJECTIONS[name][0]
            shape = (hidden, inter) if hf_name == "down_proj" else (inter, hidden)
            return [require_key(state_dict, f"{device * per_device + first + j}.{hf_name}.weight", shape, where="Experts")
                    for j in range(size)]

        weights: dict[str, Any] = {name: {"input_tensor_b": []} for name in PROJECTIONS}
        bar = tqdm(total=hf_config.n_routed_experts * len(PROJECTIONS), desc=f"experts -> {out.name}", unit="expert",
                   disable=not progress, leave=False)
        shards: list[Any] = []
        writing = None  # the previous file's dump, in the writer thread (overlaps disk with conversion)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="experts-read") as reader, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="experts-write") as writer:
            pending = reader.submit(read, tasks[0]) if tasks else None
            for index, (first, size, name, device) in enumerate(tasks):
                experts = pending.result()
                if index + 1 < len(tasks):
                    pending = reader.submit(read, tasks[index + 1])
                chunk = staging[: size * hidden * inter].view(1, size, experts[0].shape[1], experts[0].shape[0])
                for j, weight in enumerate(experts):
                    chunk[0, j] = weight.T
                del experts, weight
                # ttnn.from_torch copies (block-float / TILE conversion): the buffer is free once it returns
                shards.append(ttnn.from_torch(chunk, dtype=policy.dtype(PROJECTIONS[name][1]), layout=ttnn.TILE_LAYOUT,
                                              memory_config=ttnn.DRAM_MEMORY_CONFIG))
                del chunk
                bar.update(size)
                if device == devices - 1:
                    if writing is not None:  # at most one file waits for the disk (bounds host memory)
                        writing.result()
                    path = out / f"{name}.slots{first:03d}-{first + size - 1:03d}{TENSOR_SUFFIX}"
                    tensor = shards[0] if devices == 1 else ttnn.from_host_shards(shards, ttnn.MeshShape(rows, cols))
                    shards = []
                    writing = writer.submit(ttnn.dump_tensor, str(path), tensor)
                    del tensor
                    weights[name]["input_tensor_b"].append(WeightRecord(path=str(path), memory_config=ttnn.DRAM_MEMORY_CONFIG))
            if writing is not None:
                writing.result()
        bar.close()
        return weights

    @classmethod
    def slot_chunks(cls, hf_config: Any, mesh_device: Any) -> list[tuple[int, int]]:
        """``(first slot, number of slots)`` of each converted file."""
        per_device = experts_per_device(hf_config, mesh_device)
        size = max(1, min(per_device, EXPERTS_PER_FILE // num_devices(mesh_device)))
        return [(first, min(size, per_device - first)) for first in range(0, per_device, size)]

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, mode: str, *, users_per_row: int = USERS_PER_ROW,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        memory_config = ttnn.DRAM_MEMORY_CONFIG if mode == "prefill" else ttnn.L1_MEMORY_CONFIG
        per_device = experts_per_device(hf_config, mesh_device)
        files = len(cls.slot_chunks(hf_config, mesh_device))
        policy = get_dtype_policy(dtype_policy)
        cfg: dict[str, Any] = {}
        for name, (_, kind) in PROJECTIONS.items():
            cfg[name] = LinearConfig(
                input_tensor_b=[FromWeightConfig() for _ in range(files)],
                memory_config=memory_config,
                dtype=ttnn.bfloat16,
                compute_kernel_config=compute_kernel_config(policy, kind),
            )
        cfg["mul"] = MulConfig(memory_config=memory_config, dtype=ttnn.bfloat16, input_tensor_a_activations=[ttnn.UnaryOpType.SILU])
        cfg["stack"] = ConcatConfig(dim=1, memory_config=ttnn.DRAM_MEMORY_CONFIG)
        cfg["experts_per_device"] = per_device
        return cfg

    @classmethod
    def finalize_run_config(cls, cfg: RunConfig) -> RunConfig:
        return cls.stack_weights(cfg)

    @classmethod
    def stack_weights(cls, cfg: RunConfig) -> RunConfig:
        """Concatenate each projection's loaded slot tensors into one ``[1, El, ., .]`` weight (in place;
        a no-op once done, so it is idempotent)."""
        for name in PROJECTIONS:
            slots = cfg[name].input_tensor_b
            if isinstance(slots, (list, tuple)):
                stacked = slots[0] if len(slots) == 1 else ttnn.concat(list(slots), **cfg["stack"])
                if len(slots) > 1:
                    for t in slots:
                        ttnn.deallocate(t)
                cfg[name] = replace(cfg[name], input_tensor_b=stacked)
        return cfg

    @classmethod
    def forward(cls, x: Any, cfg: RunConfig, ctx: ForwardContext | None = None) -> Any:
        """``[1, El, N, hidden]`` -> ``[1, El, N, hidden]`` (TILE, bf16)."""
        cls.stack_weights(cfg)
        gate = ttnn.linear(x, **cfg["w1"])
        up = ttnn.linear(x, **cfg["w3"])
        activated = ttnn.mul(gate, up, **cfg["mul"])
        ttnn.deallocate(gate)
        ttnn.deallocate(up)
        out = ttnn.linear(activated, **cfg["w2"])
        ttnn.deallocate(activated)
        return out

    forward_prefill = forward
    forward_decode = forward
