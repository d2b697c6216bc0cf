"""Real ttnn names that carry no numerics: host helpers (``ttnn.core.divup``, ``num_cores_to_corerangeset``,
``create_sharded_memory_config_``), tiles, shard specs, program-config classes, enums, and the device
infrastructure calls (fabric config, global semaphores, synchronize) that mean nothing on an emulated mesh
but are accepted and validated as ttnn validates them. Behaviour checked against ttnn 0.81.1 by the
conformance suite.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from .mesh import MeshDevice
from .types import (
    BufferType,
    CoreCoord,
    CoreGrid,
    CoreRange,
    CoreRangeSet,
    MemoryConfig,
    Shape,
    ShardOrientation,
    ShardSpec,
    ShardStrategy,
    TensorMemoryLayout,
    _TtnnEnum,
)

#: ``ttnn.Device`` is the mesh device in ttnn 0.81 (single chips are 1x1 meshes).
Device = MeshDevice


class ReduceType(_TtnnEnum):
    Sum = 0
    Mean = 1
    Max = 2
    Min = 3
    Std = 4
    Var = 5
    Prod = 6


class FabricConfig(_TtnnEnum):
    DISABLED = 0
    FABRIC_1D_NEIGHBOR_EXCHANGE = 1
    FABRIC_1D = 2
    FABRIC_1D_RING = 3
    FABRIC_2D = 4
    FABRIC_2D_TORUS_X = 5
    FABRIC_2D_TORUS_Y = 6
    FABRIC_2D_TORUS_XY = 7
    CUSTOM = 8


class FabricReliabilityMode(_TtnnEnum):
    STRICT_INIT = 0
    RELAXED_INIT = 1
    DYNAMIC_RECONFIG = 2


class DispatchCoreAxis(_TtnnEnum):
    ROW = 0
    COL = 1


class DispatchCoreType(_TtnnEnum):
    WORKER = 0
    ETH = 1


class ShardDistributionStrategy(_TtnnEnum):
    ROUND_ROBIN_1D = 0
    GRID_2D = 1
    CONTIGUOUS_1D = 2


class FabricTensixConfig(_TtnnEnum):
    DISABLED = 0
    MUX = 1


class FabricUDMMode(_TtnnEnum):
    DISABLED = 0
    ENABLED = 1


class FabricManagerMode(_TtnnEnum):
    DEFAULT = 0
    ENABLED = 1
    INIT_FABRIC = 2
    TERMINATE_FABRIC = 3


_fabric_config = FabricConfig.DISABLED


def set_fabric_config(config: FabricConfig, reliability_mode: FabricReliabilityMode = FabricReliabilityMode.STRICT_INIT,
                      num_planes: int | None = None, fabric_tensix_config: FabricTensixConfig = FabricTensixConfig.DISABLED,
                      fabric_udm_mode: FabricUDMMode = FabricUDMMode.DISABLED,
                      fabric_manager_mode: FabricManagerMode = FabricManagerMode.DEFAULT, router_config: Any = None) -> None:
    """Record the fabric config (the emulated mesh's collectives need no fabric); types checked as ttnn does."""
    global _fabric_config
    if not isinstance(config, FabricConfig):
        raise TypeError(f"set_fabric_config(): incompatible function arguments (config {config!r} is not a ttnn.FabricConfig)")
    if not isinstance(reliability_mode, FabricReliabilityMode):
        raise TypeError(f"set_fabric_config(): reliability_mode {reliability_mode!r} is not a ttnn.FabricReliabilityMode")
    if num_planes is not None and (not isinstance(num_planes, int) or num_planes < 0):
        raise TypeError(f"set_fabric_config(): num_planes must be a non-negative int, got {num_planes!r}")
    _fabric_config = config


def get_fabric_config() -> FabricConfig:
    return _fabric_config


class DispatchCoreConfig:
    """``ttnn.DispatchCoreConfig(type=None, axis=None, fabric_tensix_config=None)``: where dispatch runs."""

    def __init__(self, type: DispatchCoreType | None = None, axis: DispatchCoreAxis | None = None,  # noqa: A002
                 fabric_tensix_config: Any = None) -> None:
        if type is not None and not isinstance(type, DispatchCoreType):
            raise TypeError(f"DispatchCoreConfig: type must be a ttnn.DispatchCoreType, got {type!r}")
        if axis is not None and not isinstance(axis, DispatchCoreAxis):
            raise TypeError(f"DispatchCoreConfig: axis must be a ttnn.DispatchCoreAxis, got {axis!r}")
        self.type = DispatchCoreType.WORKER if type is None else type
        self.axis = DispatchCoreAxis.ROW if axis is None else axis

    def __repr__(self) -> str:
        return f"DispatchCoreConfig(type={self.type}, axis={self.axis})"


class global_semaphore:  # noqa: N801  (ttnn's class name)
    """A global semaphore on a set of cores of every device of a mesh; its value is host-visible only."""

    def __init__(self, mesh_device: MeshDevice, cores: CoreRangeSet, initial_value: int, buffer_type: BufferType) -> None:
        self.mesh_device, self.cores, self.buffer_type, self.value = mesh_device, cores, buffer_type, initial_value

    def address(self) -> int:
        return id(self) & 0xFFFFFFF0

    def __repr__(self) -> str:
        return f"global_semaphore(cores={self.cores}, value={self.value})"


def create_global_semaphore(mesh_device: MeshDevice, cores: CoreRangeSet, initial_value: int,
                            buffer_type: BufferType = BufferType.L1) -> global_semaphore:
    """``ttnn.create_global_semaphore``: validated (open mesh, a CoreRangeSet inside the worker grid, an
    unsigned 32-bit value, an L1 buffer), then recorded; emulated collectives synchronise by construction."""
    where = "ttnn.create_global_semaphore"
    if not isinstance(mesh_device, MeshDevice) or not mesh_device.is_open:
        raise TypeError(f"{where}: mesh_device must be an open ttnn.MeshDevice, got {mesh_device!r}")
    if not isinstance(cores, CoreRangeSet):
        raise TypeError(f"{where}: cores must be a ttnn.CoreRangeSet, got {type(cores).__name__}")
    grid = mesh_device.compute_with_storage_grid_size()
    box = cores.bounding_box() if cores.num_cores() else None
    if box is None or box.end.x >= grid.x or box.end.y >= grid.y:
        raise RuntimeError(f"{where}: cores {cores} are not inside the {grid.x}x{grid.y} worker grid")
    if not isinstance(initial_value, int) or not 0 <= initial_value < 2**32:
        raise TypeError(f"{where}: initial_value must be an unsigned 32-bit int, got {initial_value!r}")
    if buffer_type != BufferType.L1:
        raise RuntimeError(f"{where}: global semaphores live in L1, got buffer type {buffer_type}")
    return global_semaphore(mesh_device, cores, initial_value, buffer_type)


def reset_global_semaphore_value(global_semaphore: global_semaphore, reset_value: int) -> None:  # noqa: A002
    if not isinstance(reset_value, int) or not 0 <= reset_value < 2**32:
        raise TypeError(f"reset_global_semaphore_value: reset_value must be an unsigned 32-bit int, got {reset_value!r}")
    global_semaphore.value = reset_value


def synchronize_device(device: MeshDevice, cq_id: int | None = None, sub_device_ids: Sequence[Any] = ()) -> None:
    """Wait for the device's queued work: emulated ops complete when they return, so this validates only."""
    if not isinstance(device, MeshDevice):
        raise TypeError(f"synchronize_device(): incompatible function arguments (device is {type(device).__name__}, not MeshDevice)")
    if not device.is_open:
        raise RuntimeError(f"synchronize_device: mesh device {device} is closed")
    if cq_id is not None and not 0 <= int(cq_id) < device.num_command_queues:
        raise RuntimeError(f"synchronize_device: cq_id {cq_id} is not one of the device's {device.num_command_queues} command queues")


class DeviceComputeKernelConfig:
    """The type name of a compute-kernel config in signatures; construct ``WormholeComputeKernelConfig``."""

    def __init__(self) -> None:
        raise TypeError("ttnn.DeviceComputeKernelConfig: No constructor defined!")


_TILE_FACE_CHOICES = {(32, 32), (16, 32), (32, 16), (16, 16), (8, 32), (4, 32), (2, 32), (1, 32)}


class Tile:
    """``ttnn.Tile(tile_shape, transpose_tile=False)``: a tile of one of the shapes the hardware supports."""

    def __init__(self, tile_shape: Sequence[int], transpose_tile: bool = False) -> None:
        shape = tuple(int(d) for d in tile_shape)
        if len(shape) != 2 or shape not in _TILE_FACE_CHOICES:
            raise RuntimeError(f"ttnn.Tile: tile shape {list(shape)} is not a supported tile shape")
        if transpose_tile and shape[0] != 32 and shape[0] != 16:
            raise RuntimeError(f"ttnn.Tile: a {list(shape)} tile cannot be transposed")
        self.tile_shape = list(shape)
        self.face_shape = [min(16, shape[0]), 16]
        self.num_faces = (shape[0] * shape[1]) // (self.face_shape[0] * self.face_shape[1])
        self.partial_face = shape[0] < 16
        self.narrow_tile = shape[1] < 32
        self.transpose_within_face = bool(transpose_tile)
        self.transpose_of_faces = bool(transpose_tile)

    def get_tile_size(self, format: Any) -> int:  # noqa: A002
        from .types import DataType

        per = {DataType.BFLOAT16: 2, DataType.FLOAT32: 4, DataType.UINT32: 4, DataType.INT32: 4, DataType.UINT16: 2,
               DataType.UINT8: 1}
        elements = self.tile_shape[0] * self.tile_shape[1]
        if format == DataType.BFLOAT8_B:
            return elements + self.num_faces * 16
        if format == DataType.BFLOAT4_B:
            return elements // 2 + self.num_faces * 16
        return elements * per[format]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tile) and (self.tile_shape, self.transpose_of_faces) == (other.tile_shape, other.transpose_of_faces)

    def __repr__(self) -> str:
        return f"Tile with shape: {self.tile_shape}"


class NdShardSpec:
    """``ttnn.NdShardSpec(shard_shape, grid, orientation=ROW_MAJOR, shard_distribution_strategy=ROUND_ROBIN_1D)``."""

    def __init__(self, shard_shape: Sequence[int], grid: CoreRangeSet, orientation: ShardOrientation = ShardOrientation.ROW_MAJOR,
                 shard_distribution_strategy: ShardDistributionStrategy = ShardDistributionStrategy.ROUND_ROBIN_1D) -> None:
        if not isinstance(grid, CoreRangeSet):
            raise TypeError(f"NdShardSpec: grid must be a ttnn.CoreRangeSet, got {type(grid).__name__}")
        self.shard_shape = Shape(shard_shape)
        self.grid = grid
        self.orientation = orientation
        self.shard_distribution_strategy = shard_distribution_strategy

    def num_cores(self) -> int:
        return self.grid.num_cores()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NdShardSpec) and (self.shard_shape, self.grid, self.orientation) == (
            other.shard_shape, other.grid, other.orientation)

    def __repr__(self) -> str:
        return f"NdShardSpec(shard_shape={list(self.shard_shape)}, grid={self.grid}, orientation={self.orientation})"


@dataclass(kw_only=True)
class LayerNormDefaultProgramConfig:
    legacy_reduction: bool = False
    legacy_rsqrt: bool = False
    use_welford: bool = False


@dataclass(kw_only=True)
class LayerNormShardedMultiCoreProgramConfig:
    compute_with_storage_grid_size: CoreCoord
    subblock_w: int
    block_h: int
    block_w: int
    inplace: bool
    legacy_reduction: bool = False
    legacy_rsqrt: bool = False
    use_welford: bool = False


# --- host helpers -----------------------------------------------------------------------------------


def divup(a: int, b: int) -> int:
    return (a + b - 1) // b


def roundup(a: int, b: int) -> int:
    return divup(a, b) * b


def num_cores_to_corerangeset(target_num_cores: int, grid_size: CoreCoord, row_wise: bool = False) -> CoreRangeSet:
    """The first ``target_num_cores`` cores of a grid, filled row by row (``row_wise``) or column by
    column: whole rows (columns) as one range, the partial last one as another."""
    major, minor = (grid_size.x, grid_size.y) if row_wise else (grid_size.y, grid_size.x)
    if not 0 <= target_num_cores <= major * minor:
        raise RuntimeError(
            f"num_cores_to_corerangeset: target_num_cores <= total_available_cores ({target_num_cores} > {major * minor})"
        )
    ranges = []
    full, rest = divmod(target_num_cores, major)

    def coord(along: int, across: int) -> CoreCoord:
        return CoreCoord(along, across) if row_wise else CoreCoord(across, along)

    if full:
        ranges.append(CoreRange(coord(0, 0), coord(major - 1, full - 1)))
    if rest:
        ranges.append(CoreRange(coord(0, full), coord(rest - 1, full)))
    return CoreRangeSet(ranges)


def create_sharded_memory_config_(shape: Any, core_grid: Any, strategy: Any, orientation: Any,
                                  use_height_and_width_as_shard_shape: bool = False, tile_layout: bool = False) -> MemoryConfig:
    """``ttnn.create_sharded_memory_config_``: like ``create_sharded_memory_config`` but the shards may be
    uneven (the last one partial), ``strategy`` may be a TensorMemoryLayout and ``core_grid`` a CoreRangeSet."""
    if not isinstance(shape, (list, tuple)):
        raise RuntimeError("Invalid input shape")
    if not isinstance(core_grid, (CoreGrid, tuple, list, CoreRangeSet)):
        raise RuntimeError("Invalid core_grid type")
    layouts = {ShardStrategy.BLOCK: TensorMemoryLayout.BLOCK_SHARDED, ShardStrategy.WIDTH: TensorMemoryLayout.WIDTH_SHARDED,
               ShardStrategy.HEIGHT: TensorMemoryLayout.HEIGHT_SHARDED}
    if isinstance(strategy, ShardStrategy):
        memory_layout = layouts[strategy]
    elif isinstance(strategy, TensorMemoryLayout):
        memory_layout = strategy
    else:
        raise RuntimeError("Invalid type of sharding strategy")
    if not isinstance(orientation, ShardOrientation):
        raise RuntimeError("Invalid type of shard orientation")
    if isinstance(core_grid, CoreGrid):
        grid = CoreRangeSet({CoreRange(CoreCoord(0, 0), CoreCoord(core_grid.x - 1, core_grid.y - 1))})
    elif isinstance(core_grid, (list, tuple)):
        if len(core_grid) != 2 or not all(isinstance(g, CoreGrid) for g in core_grid):
            raise RuntimeError("Invalid core_grid type")
        first, second = core_grid
        grid = CoreRangeSet({CoreRange(CoreCoord(0, 0), CoreCoord(first.x - 1, first.y - 1)),
                             CoreRange(CoreCoord(0, first.y), CoreCoord(second.x - 1, first.y))})
    else:
        grid = core_grid
    *batch, height, width = (int(d) for d in shape)
    if use_height_and_width_as_shard_shape:
        shard = (height, width) if orientation == ShardOrientation.ROW_MAJOR else (width, height)
    else:
        rows, cols = math.prod(batch) * height, width
        total, box = grid.num_cores(), grid.bounding_box().grid_size()
        row_major = orientation == ShardOrientation.ROW_MAJOR
        if memory_layout == TensorMemoryLayout.BLOCK_SHARDED:
            if box.x * box.y != total:
                raise RuntimeError("Invalid CoreRangeSet for block sharding strategy")
            along_rows, along_cols = (box.y, box.x) if row_major else (box.x, box.y)
            padded = roundup(rows, along_rows * 32) if tile_layout else rows
            shard = (divup(padded, along_rows), divup(cols, along_cols))
        elif memory_layout == TensorMemoryLayout.HEIGHT_SHARDED:
            padded = roundup(rows, total) if tile_layout else rows
            shard = (divup(padded, total), cols)
        elif memory_layout == TensorMemoryLayout.WIDTH_SHARDED:
            shard = (rows, divup(cols, total))
        else:
            raise RuntimeError("Invalid sharding scheme")
    if tile_layout and shard[0] % 32 and shard[1] % 32:
        raise RuntimeError("Incorrect tensor shape")
    return MemoryConfig(memory_layout, BufferType.L1, ShardSpec(grid, shard, orientation))


# --- MemoryConfig <-> JSON, in ttnn's format ------------------------------------------------------------


def memory_config_to_json(self: MemoryConfig) -> str:
    """ttnn's ``MemoryConfig.to_json()`` text (enum values as integers, keys sorted)."""
    config = self
    out: dict[str, Any] = {"buffer_type": config.buffer_type.value, "created_with_nd_shard_spec": False,
                           "memory_layout": config.memory_layout.value, "per_core_allocation": False}
    spec = config.shard_spec
    if spec is not None:
        out["shard_spec"] = {
            "grid": [{"end": {"x": r.end.x, "y": r.end.y}, "start": {"x": r.start.x, "y": r.start.y}} for r in spec.grid.ranges()],
            "orientation": spec.orientation.value,
            "shape": list(spec.shape),
        }
    return json.dumps(out, separators=(",", ":"), sort_keys=True)


def memory_config_from_json(self: str) -> MemoryConfig:
    """The MemoryConfig that :func:`memory_config_to_json` wrote (raises on malformed JSON or values)."""
    try:
        data = json.loads(self)
        layout, buffer = TensorMemoryLayout(data["memory_layout"]), BufferType(data["buffer_type"])
        spec = None
        if data.get("shard_spec"):
            s = data["shard_spec"]
            grid = CoreRangeSet([CoreRange(CoreCoord(r["start"]["x"], r["start"]["y"]), CoreCoord(r["end"]["x"], r["end"]["y"]))
                                 for r in s["grid"]])
            spec = ShardSpec(grid, s["shape"], ShardOrientation(s["orientation"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"MemoryConfig.from_json: not a ttnn memory config: {exc}") from exc
    return MemoryConfig(layout, buffer, spec)


MemoryConfig.to_json = memory_config_to_json  # type: ignore[attr-defined]
MemoryConfig.from_json = staticmethod(memory_config_from_json)  # type: ignore[attr-defined]

__all__ = [
    "Device", "ReduceType", "FabricConfig", "FabricReliabilityMode", "DispatchCoreAxis", "DispatchCoreType",
    "ShardDistributionStrategy", "FabricTensixConfig", "FabricUDMMode", "FabricManagerMode", "set_fabric_config", "DispatchCoreConfig", "create_global_semaphore",
    "reset_global_semaphore_value", "synchronize_device", "DeviceComputeKernelConfig", "Tile", "NdShardSpec",
    "LayerNormDefaultProgramConfig", "LayerNormShardedMultiCoreProgramConfig", "num_cores_to_corerangeset",
    "create_sharded_memory_config_",
]
