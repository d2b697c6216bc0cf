"""``ttnn.dump_tensor`` / ``ttnn.load_tensor`` / ``ttnn.as_tensor`` for emulated tensors.

File format (``.tensorbin``, as ttnn requires): a ``torch.save`` of a plain dict, loadable with
``weights_only=True``::

    {"format": "deepseek-tt-emulator-tensor", "version": 1,
     "data": <stacked shards [num_shards, *shape], CPU, storage dtype>,
     "meta": <JSON string: dtype, layout, memory_config, mesh_shape, placements>}

All shards are kept (the mesh placement survives a round trip); ``load_tensor(path, device=mesh)``
puts them back on a mesh of the same size (a single-shard file is replicated onto any mesh).
A file written by real ttnn (flatbuffer) is refused with a clear message.
"""

from __future__ import annotations

import json
import os
import pathlib
import uuid
from typing import Any, Callable

import torch

from .mesh import MeshDevice, MeshShape, PlacementReplicate, PlacementShard, ReplicateTensorToMeshWrapper
from .tensor import Tensor, from_torch, to_device
from .types import (
    BufferType,
    CoreCoord,
    CoreRange,
    CoreRangeSet,
    DataType,
    DumpTensorMode,
    Layout,
    MemoryConfig,
    ShardOrientation,
    ShardSpec,
    TensorMemoryLayout,
)

FORMAT_NAME = "deepseek-tt-emulator-tensor"
FORMAT_VERSION = 1
EXTENSION = ".tensorbin"


def _check_extension(file_name: pathlib.Path) -> None:
    if not str(file_name).endswith(EXTENSION):
        raise RuntimeError(f"File {file_name} must have {EXTENSION} extension")


def memory_config_to_dict(config: MemoryConfig) -> dict[str, Any]:
    spec = config.shard_spec
    return {
        "memory_layout": config.memory_layout.name,
        "buffer_type": config.buffer_type.name,
        "shard_spec": None
        if spec is None
        else {
            "grid": [[r.start.x, r.start.y, r.end.x, r.end.y] for r in spec.grid.ranges()],
            "shape": list(spec.shape),
            "orientation": spec.orientation.name,
        },
    }


def memory_config_from_dict(data: dict[str, Any]) -> MemoryConfig:
    spec = data.get("shard_spec")
    shard_spec = None
    if spec is not None:
        grid = CoreRangeSet({CoreRange(CoreCoord(a, b), CoreCoord(c, d)) for a, b, c, d in spec["grid"]})
        shard_spec = ShardSpec(grid, spec["shape"], ShardOrientation[spec["orientation"]])
    return MemoryConfig(TensorMemoryLayout[data["memory_layout"]], BufferType[data["buffer_type"]], shard_spec)


def _placements_to_json(placements: list | None) -> list | None:
    if placements is None:
        return None
    return [{"shard": p.dim} if isinstance(p, PlacementShard) else {"replicate": True} for p in placements]


def _placements_from_json(data: list | None) -> list | None:
    if data is None:
        return None
    return [PlacementShard(p["shard"]) if "shard" in p else PlacementReplicate() for p in data]


def dump_tensor(file_name: "str | pathlib.Path", tensor: Tensor, *,
                mode: DumpTensorMode = DumpTensorMode.DISTRIBUTED_GATHER) -> None:
    """Write ``tensor`` (all shards, dtype, layout, memory config, mesh placement) to ``file_name``."""
    file_name = pathlib.Path(file_name)
    _check_extension(file_name)
    if not isinstance(tensor, Tensor):
        raise TypeError(f"ttnn.dump_tensor: expected a ttnn.Tensor, got {type(tensor).__name__}")
    meta = {
        "dtype": tensor.dtype.name,
        "layout": tensor.layout.name,
        "memory_config": memory_config_to_dict(tensor.memory_config()),
        "mesh_shape": list(tensor.mesh_shape),
        "placements": _placements_to_json(tensor._placements),
    }
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "data": tensor._data.detach().to("cpu").contiguous(),
        "meta": json.dumps(meta),
    }
    torch.save(payload, file_name)


def load_tensor(file_name: "str | pathlib.Path", *, device: MeshDevice | None = None) -> Tensor:
    """Read a tensor written by :func:`dump_tensor`; onto ``device`` when given."""
    file_name = pathlib.Path(file_name)
    _check_extension(file_name)
    if not file_name.exists():
        raise RuntimeError(f"Unable to load the tensor from {file_name}.  The file does not exist.")
    if not file_name.is_file():
        raise RuntimeError(f"Unable to load the tensor from {file_name}.  The file is not a file.")
    try:
        payload = torch.load(file_name, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(
            f"Unable to load the tensor from {file_name}: not an emulator tensor file (written by real ttnn, "
            f"truncated or corrupt): {exc}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise RuntimeError(f"Unable to load the tensor from {file_name}: not a {FORMAT_NAME} file")
    if payload.get("version") != FORMAT_VERSION:
        raise RuntimeError(
            f"Unable to load the tensor from {file_name}: format version {payload.get('version')}, expected {FORMAT_VERSION}"
        )
    try:
        meta = json.loads(payload["meta"])
        data = payload["data"]
        dtype, layout = DataType[meta["dtype"]], Layout[meta["layout"]]
        memory_config = memory_config_from_dict(meta["memory_config"])
        mesh_shape = MeshShape(meta["mesh_shape"])
        placements = _placements_from_json(meta.get("placements"))
    except (KeyError, ValueError, TypeError) as exc:
        raise RuntimeError(f"Unable to load the tensor from {file_name}: bad metadata ({exc!r})") from exc
    host = Tensor(data, dtype=dtype, layout=layout, device=None, memory_config=memory_config,
                  mesh_shape=mesh_shape, placements=placements)
    if device is None:
        return host
    if data.shape[0] != 1 and data.shape[0] != device.get_num_devices():
        raise RuntimeError(
            f"Unable to load the tensor from {file_name} onto mesh {device.shape}: it was saved for mesh {mesh_shape}"
        )
    return to_device(host, device, memory_config=memory_config)


def as_tensor(
    tensor: torch.Tensor,
    dtype: DataType | None = None,
    *,
    layout: Layout | None = Layout.ROW_MAJOR,
    device: MeshDevice | None = None,
    memory_config: MemoryConfig | None = None,
    cache_file_name: "str | pathlib.Path | None" = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    mesh_mapper: Any = None,
    cache_dump_mode: DumpTensorMode = DumpTensorMode.DISTRIBUTED_GATHER,
) -> Tensor:
    """``ttnn.as_tensor``: ``from_torch`` with an on-disk cache named like real ttnn's."""
    if device is not None and memory_config is None:
        raise RuntimeError("memory_config must be specified when device is specified")

    def convert(mapper: Any, target: MeshDevice | None) -> Tensor:
        source = preprocess(tensor) if preprocess else tensor
        return from_torch(source, dtype=dtype, layout=layout, device=target, memory_config=memory_config,
                          mesh_mapper=mapper)

    if cache_file_name is None:
        return convert(mesh_mapper, device)
    dtype_name = dtype.name if dtype is not None else "None"
    layout_name = layout.name if layout is not None else "None"
    path = pathlib.Path(f"{cache_file_name}_dtype_{dtype_name}_layout_{layout_name}{EXTENSION}")
    if path.is_file():
        try:
            return load_tensor(path, device=device)
        except RuntimeError:
            pass  # stale or foreign cache file: convert again
    # a replicated tensor is cached unsharded so that it loads onto any mesh
    host = convert(None if isinstance(mesh_mapper, ReplicateTensorToMeshWrapper) else mesh_mapper, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp{EXTENSION}")
    try:
        dump_tensor(tmp, host, mode=cache_dump_mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return to_device(host, device, memory_config=memory_config) if device is not None else host
