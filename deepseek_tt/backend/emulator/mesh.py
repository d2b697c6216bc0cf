"""The emulated mesh of devices, and the mesh mappers / composers of ``ttnn.from_torch`` / ``ttnn.to_torch``.

A tensor on an ``R x C`` mesh is one torch tensor stacked ``[R * C, *shard_shape]``; device
``(row, col)`` is index ``row * C + col``. Mappers split a host tensor into that stack, composers
concatenate it back, exactly as ttnn's ``create_mesh_mapper`` / ``create_mesh_composer`` do.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from .types import Arch, CoreCoord, CoreGrid

#: worker grid that ``compute_with_storage_grid_size()`` reports on a Wormhole chip
WORMHOLE_WORKER_GRID = CoreCoord(8, 8)
WORMHOLE_DRAM_GRID = CoreCoord(12, 1)


class MeshShape:
    """ttnn.MeshShape: ``MeshShape(4, 8)``, ``MeshShape(2, 2, 2)`` or ``MeshShape([4, 8])``.

    As in real ttnn it is not a tuple: it iterates and takes integer indices (negative ones too), has
    ``dims()`` and ``mesh_size()``, compares only with another MeshShape (comparing with a tuple raises
    ``TypeError``) and has no ``len()``.
    """

    __slots__ = ("_dims",)

    def __init__(self, shape: "int | Sequence[int] | MeshShape", *more: int) -> None:
        dims = (shape, *more)
        if not more and not isinstance(shape, int):
            dims = tuple(shape)
        if not dims:
            raise TypeError("MeshShape: expected (s0, s1), (s0, s1, s2) or a list of dimensions")
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in dims):
            raise TypeError(f"MeshShape: dimensions must be non-negative ints, got {list(dims)}")
        self._dims = tuple(int(d) for d in dims)

    def dims(self) -> int:
        return len(self._dims)

    def mesh_size(self) -> int:
        return math.prod(self._dims)

    def __iter__(self):
        return iter(self._dims)

    def __getitem__(self, index: int) -> int:
        if not isinstance(index, int):
            raise TypeError(f"MeshShape.__getitem__(): incompatible function arguments (index {index!r} is not an int)")
        if not -len(self._dims) <= index < len(self._dims):
            raise RuntimeError(f"ShapeBase[] index out of range: {index} for {self!r}")
        return self._dims[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MeshShape):
            raise TypeError(f"MeshShape.__eq__(): incompatible function arguments ({type(other).__name__}, not MeshShape)")
        return self._dims == other._dims

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("MeshShape", self._dims))

    def __repr__(self) -> str:
        return f"MeshShape({list(self._dims)})"

    __str__ = __repr__


def _open_shape(shape: "MeshShape | Sequence[int]", where: str) -> MeshShape:
    """A 2-D mesh shape with every dimension >= 1 (what the emulator can open)."""
    shape = shape if isinstance(shape, MeshShape) else MeshShape(shape)
    if shape.dims() != 2 or shape.mesh_size() < 1:
        raise RuntimeError(f"{where}: only 2-D meshes with dimensions >= 1 are emulated, got {shape}")
    return shape


@dataclass(frozen=True)
class MeshCoordinate:
    coords: tuple[int, ...]

    def __init__(self, *coords: "int | Sequence[int]") -> None:
        if len(coords) == 1 and not isinstance(coords[0], int):
            coords = tuple(coords[0])
        object.__setattr__(self, "coords", tuple(int(c) for c in coords))

    def __getitem__(self, index: int) -> int:
        return self.coords[index]

    def __len__(self) -> int:
        return len(self.coords)

    def __repr__(self) -> str:
        return f"MeshCoordinate({list(self.coords)})"


class MeshDevice:
    """An emulated ``ttnn.MeshDevice``: a 2-D grid of Wormhole chips whose tensors are stacked shards."""

    _next_id = 0

    def __init__(self, mesh_shape: MeshShape, torch_device: str, *, parent: "MeshDevice | None" = None,
                 offset: tuple[int, int] = (0, 0), trace_region_size: int = 0, num_command_queues: int = 1) -> None:
        self._shape = _open_shape(mesh_shape, "open_mesh_device")
        self.torch_device = torch.device(torch_device)
        self.parent = parent
        self.offset = offset
        self.trace_region_size = trace_region_size
        self.num_command_queues = num_command_queues
        self.is_open = True
        self._submeshes: list[MeshDevice] = []
        self._program_cache_enabled = True
        self._id = MeshDevice._next_id
        MeshDevice._next_id += 1

    # -- shape and identity -------------------------------------------------------------------
    @property
    def shape(self) -> MeshShape:
        return self._shape

    def get_num_devices(self) -> int:
        return self._shape.mesh_size()

    def get_device_ids(self) -> list[int]:
        return list(range(self.get_num_devices()))

    def id(self) -> int:
        return self._id

    def arch(self) -> Arch:
        return Arch.WORMHOLE_B0

    def compute_with_storage_grid_size(self) -> CoreCoord:
        return WORMHOLE_WORKER_GRID

    @property
    def core_grid(self) -> CoreGrid:
        return CoreGrid(x=WORMHOLE_WORKER_GRID.x, y=WORMHOLE_WORKER_GRID.y)

    def dram_grid_size(self) -> CoreCoord:
        return WORMHOLE_DRAM_GRID

    # -- submeshes ----------------------------------------------------------------------------
    def create_submesh(self, submesh_shape: MeshShape, offset: "MeshCoordinate | None" = None) -> "MeshDevice":
        rows, cols = _open_shape(submesh_shape, "create_submesh")
        row0, col0 = (offset[0], offset[1]) if offset is not None else (0, 0)
        if row0 + rows > self._shape[0] or col0 + cols > self._shape[1]:
            raise RuntimeError(
                f"create_submesh: submesh {rows}x{cols} at offset ({row0}, {col0}) does not fit in mesh {self._shape}"
            )
        sub = MeshDevice(MeshShape(rows, cols), str(self.torch_device), parent=self, offset=(row0, col0),
                         trace_region_size=self.trace_region_size, num_command_queues=self.num_command_queues)
        self._submeshes.append(sub)
        return sub

    def create_submeshes(self, submesh_shape: MeshShape) -> list["MeshDevice"]:
        rows, cols = _open_shape(submesh_shape, "create_submeshes")
        if self._shape[0] % rows or self._shape[1] % cols:
            raise RuntimeError(f"create_submeshes: {rows}x{cols} does not tile mesh {self._shape}")
        return [
            self.create_submesh(MeshShape(rows, cols), MeshCoordinate(r, c))
            for r in range(0, self._shape[0], rows)
            for c in range(0, self._shape[1], cols)
        ]

    def get_submeshes(self) -> list["MeshDevice"]:
        return list(self._submeshes)

    # -- program cache (no effect in the emulator) -------------------------------------------
    def enable_program_cache(self) -> None:
        self._program_cache_enabled = True

    def disable_and_clear_program_cache(self) -> None:
        self._program_cache_enabled = False

    def clear_program_cache(self) -> None:
        pass

    def num_program_cache_entries(self) -> int:
        return 0

    def __repr__(self) -> str:
        state = "" if self.is_open else ", closed"
        return f"MeshDevice(shape={list(self._shape)}, torch={self.torch_device}{state})"


def open_mesh_device(
    mesh_shape: "MeshShape | Sequence[int] | None" = None,
    l1_small_size: int = 0,
    trace_region_size: int = 0,
    num_command_queues: int = 1,
    dispatch_core_config: object = None,
    offset: "MeshCoordinate | None" = None,
    physical_device_ids: Sequence[int] = (),
    worker_l1_size: int = 0,
) -> MeshDevice:
    """Open an emulated mesh of any 2-D shape (default 1x1) on the emulator's torch device; the CPU kernel's
    bit guarantees are probed here, once per process and thread count (``ops/_kernel_probe.py``), not in
    the first timed product."""
    from deepseek_tt.backend import torch_device_name
    from .ops._kernel_probe import probe_kernel

    shape = MeshShape(1, 1) if mesh_shape is None else MeshShape(mesh_shape)
    if num_command_queues not in (1, 2):
        raise RuntimeError(f"open_mesh_device: num_command_queues must be 1 or 2, got {num_command_queues}")
    probe_kernel()
    return MeshDevice(shape, torch_device_name(), trace_region_size=trace_region_size,
                      num_command_queues=num_command_queues)


def close_mesh_device(mesh_device: MeshDevice) -> None:
    for sub in mesh_device.get_submeshes():
        sub.is_open = False
    mesh_device.is_open = False


def get_num_devices() -> int:
    """The emulator has no physical devices; meshes of any shape are simulated."""
    return 0


# ---------------------------------------------------------------------------------------------
# mappers and composers


class PlacementReplicate:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementReplicate)

    def __hash__(self) -> int:
        return hash("replicate")

    def __repr__(self) -> str:
        return "PlacementReplicate()"


class PlacementShard:
    def __init__(self, dim: int) -> None:
        self.dim = int(dim)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementShard) and other.dim == self.dim

    def __hash__(self) -> int:
        return hash(("shard", self.dim))

    def __repr__(self) -> str:
        return f"PlacementShard({self.dim})"


class MeshMapperConfig:
    """``MeshMapperConfig(placements, mesh_shape_override=None)`` or ``MeshMapperConfig(row_dim, col_dim, mesh_shape_override=None)``."""

    def __init__(self, *args, **kwargs) -> None:
        if (args and isinstance(args[0], (list, tuple))) or "placements" in kwargs:
            names = ("placements", "mesh_shape_override", "mesh_offset_override")
        else:
            names = ("row_dim", "col_dim", "mesh_shape_override", "mesh_offset_override")
        if len(args) > len(names):
            raise TypeError(f"MeshMapperConfig takes at most {len(names)} arguments")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names or key in values:
                raise TypeError(f"MeshMapperConfig: unexpected or repeated argument {key!r}")
            values[key] = value
        if "placements" in names:
            placements = list(values["placements"])
        else:
            placements = [
                PlacementReplicate() if values.get(d) is None else PlacementShard(values[d]) for d in ("row_dim", "col_dim")
            ]
        for p in placements:
            if not isinstance(p, (PlacementReplicate, PlacementShard)):
                raise TypeError(f"MeshMapperConfig: placements must be PlacementShard/PlacementReplicate, got {p!r}")
        self.placements = placements
        override = values.get("mesh_shape_override")
        self.mesh_shape_override = None if override is None else MeshShape(override)
        offset = values.get("mesh_offset_override")
        if offset is not None and any(offset.coords):
            raise NotImplementedError("MeshMapperConfig: mesh_offset_override is not emulated")

    def __repr__(self) -> str:
        return f"MeshMapperConfig(placements={self.placements}, mesh_shape_override={self.mesh_shape_override})"


class MeshComposerConfig:
    """``MeshComposerConfig(dims, mesh_shape_override=None)`` or ``MeshComposerConfig(row_dim, col_dim, ...)``."""

    def __init__(self, dims, mesh_shape_override=None, mesh_offset_override=None, *more) -> None:
        if isinstance(dims, int):  # 2-D form (row_dim, col_dim, mesh_shape_override=None, mesh_offset_override=...)
            dims, mesh_shape_override = [dims, mesh_shape_override], mesh_offset_override
            mesh_offset_override = more[0] if more else None
        if any(isinstance(d, bool) or not isinstance(d, int) for d in dims):
            raise TypeError(f"MeshComposerConfig(): incompatible function arguments: every concat dim must be an int "
                            f"(a composer has no replicate/None dim), got {list(dims)}")
        self.dims = [int(d) for d in dims]
        self.mesh_shape_override = None if mesh_shape_override is None else MeshShape(mesh_shape_override)
        if mesh_offset_override is not None and any(mesh_offset_override.coords):
            raise NotImplementedError("MeshComposerConfig: mesh_offset_override is not emulated")

    def __repr__(self) -> str:
        return f"MeshComposerConfig(dims={self.dims}, mesh_shape_override={self.mesh_shape_override})"


def _normalize_dim(dim: int, rank: int, what: str) -> int:
    if not -rank <= dim < rank:
        raise RuntimeError(f"{what}: dim {dim} is out of range for a rank-{rank} tensor")
    return dim % rank


class TensorToMesh:
    """A mesh mapper (``ttnn.CppTensorToMesh``): splits a host tensor into the stacked per-device shards."""

    def __init__(self, mesh_shape: MeshShape, distribution_shape: MeshShape, placements: list, mesh_device=None) -> None:
        if len(placements) != distribution_shape.dims():
            raise RuntimeError(
                f"mesh mapper: {len(placements)} placements for a {distribution_shape.dims()}-D distribution shape {distribution_shape}"
            )
        if distribution_shape.mesh_size() != mesh_shape.mesh_size():
            raise NotImplementedError(
                f"mesh mapper: distributing over {distribution_shape} inside mesh {mesh_shape} (submesh mode) is not emulated"
            )
        self.mesh_shape = mesh_shape
        self.distribution_shape = distribution_shape
        self.placements = list(placements)
        self.mesh_device = mesh_device

    def map(self, tensor: torch.Tensor) -> torch.Tensor:
        """``[num_devices, *shard_shape]`` in device order (row-major over the distribution shape)."""
        return self.replicate(self.split(tensor))

    def split(self, tensor: torch.Tensor) -> torch.Tensor:
        """The distinct shards as a view ``[a_0, ..., a_k, *shard_shape]``: ``a_i`` is the mesh axis size
        for a sharded axis and 1 for a replicated one (so per-shard work, such as rounding, runs once)."""
        rank = tensor.dim()
        dims = [_normalize_dim(p.dim, rank, "mesh mapper") for p in self.placements if isinstance(p, PlacementShard)]
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"mesh mapper: dims must be unique (placements {self.placements} shard one dim twice)")
        x = tensor
        for axis, (size, placement) in enumerate(zip(self.distribution_shape, self.placements)):
            if isinstance(placement, PlacementShard):
                dim = _normalize_dim(placement.dim, rank, "mesh mapper")
                if tensor.shape[dim] % size:
                    raise RuntimeError(
                        f"mesh mapper: tensor dim {dim} of size {tensor.shape[dim]} does not shard evenly over "
                        f"mesh axis {axis} of size {size} (shape {list(tensor.shape)})"
                    )
                x = x.unflatten(axis + dim, (size, tensor.shape[dim] // size)).movedim(axis + dim, axis)
            else:
                x = x.unsqueeze(axis)
        return x

    def replicate(self, distinct: torch.Tensor) -> torch.Tensor:
        """Expand :meth:`split`'s result over the replicated axes: ``[num_devices, *shard_shape]``."""
        axes = self.distribution_shape.dims()
        full = distinct.expand(*self.distribution_shape, *distinct.shape[axes:])
        return full.reshape(self.distribution_shape.mesh_size(), *distinct.shape[axes:])

    def __repr__(self) -> str:
        return f"TensorToMesh(mesh={self.mesh_shape}, distribution={self.distribution_shape}, placements={self.placements})"


class MeshToTensor:
    """A mesh composer (``ttnn.CppMeshToTensor``): concatenates stacked shards back into one tensor."""

    def __init__(self, mesh_shape: MeshShape, dims: list[int], mesh_device=None) -> None:
        self.mesh_shape = mesh_shape
        self.dims = list(dims)
        self.mesh_device = mesh_device
        if len(self.dims) == 1:
            self.distribution_shape = MeshShape(mesh_shape.mesh_size())
        elif len(self.dims) == mesh_shape.dims():
            self.distribution_shape = mesh_shape
        else:
            raise RuntimeError(f"mesh composer: {len(self.dims)} concat dims for mesh {mesh_shape}")

    def compose(self, stacked: torch.Tensor) -> torch.Tensor:
        if stacked.shape[0] != self.distribution_shape.mesh_size():
            raise RuntimeError(
                f"mesh composer for {self.distribution_shape.mesh_size()} devices applied to a tensor with "
                f"{stacked.shape[0]} shards"
            )
        rank = stacked.dim() - 1
        dims = [_normalize_dim(d, rank, "mesh composer") for d in self.dims]
        pieces = list(stacked.unbind(0))
        for size, dim in zip(reversed(list(self.distribution_shape)), reversed(dims)):
            pieces = [torch.cat(pieces[i : i + size], dim=dim) for i in range(0, len(pieces), size)]
        return pieces[0]

    def __repr__(self) -> str:
        return f"MeshToTensor(mesh={self.mesh_shape}, dims={self.dims})"


class ReplicateTensorToMeshWrapper:
    """What ``ttnn.ReplicateTensorToMesh`` returns; ``unwrap()`` gives the mapper."""

    def __init__(self, mapper: TensorToMesh) -> None:
        self._mapper = mapper

    def unwrap(self) -> TensorToMesh:
        return self._mapper


def _mesh_shape_of(mesh: "MeshDevice | MeshShape", fn: str = "create_mesh_mapper") -> MeshShape:
    """The shape of a mesh device or a ``MeshShape`` (create_mesh_mapper's two overloads); anything else is
    refused with a TypeError, as ttnn's bindings do."""
    if isinstance(mesh, MeshDevice):
        return mesh.shape
    if isinstance(mesh, MeshShape):
        return mesh
    raise TypeError(f"{fn}(): incompatible function arguments: the first argument must be a ttnn.MeshDevice or a "
                    f"ttnn.MeshShape, got {type(mesh).__name__}")


def _device_shape(mesh_device: "MeshDevice", fn: str) -> MeshShape:
    """The shape of a mesh device; ttnn's ``fn`` has no overload taking a ``MeshShape`` (TypeError)."""
    if not isinstance(mesh_device, MeshDevice):
        raise TypeError(f"{fn}(): incompatible function arguments: mesh_device must be a ttnn.MeshDevice, "
                        f"got {type(mesh_device).__name__}")
    return mesh_device.shape


def create_mesh_mapper(mesh_device: "MeshDevice | MeshShape", config: MeshMapperConfig) -> TensorToMesh:
    shape = _mesh_shape_of(mesh_device)
    distribution = config.mesh_shape_override or shape
    device = mesh_device if isinstance(mesh_device, MeshDevice) else None
    return TensorToMesh(shape, distribution, config.placements, device)


def create_mesh_composer(mesh_device: "MeshDevice | MeshShape", config: MeshComposerConfig) -> MeshToTensor:
    shape = config.mesh_shape_override or _device_shape(mesh_device, "create_mesh_composer")
    if len(config.dims) not in (1, shape.dims()):
        raise RuntimeError(f"create_mesh_composer: {len(config.dims)} dims for mesh {shape}")
    device = mesh_device if isinstance(mesh_device, MeshDevice) else None
    return MeshToTensor(shape, config.dims, device)


def replicate_tensor_to_mesh_mapper(mesh_device: MeshDevice) -> TensorToMesh:
    shape = _device_shape(mesh_device, "replicate_tensor_to_mesh_mapper")
    return TensorToMesh(shape, MeshShape(shape.mesh_size()), [PlacementReplicate()], mesh_device)


def shard_tensor_to_mesh_mapper(mesh_device: MeshDevice, dim: int) -> TensorToMesh:
    shape = _device_shape(mesh_device, "shard_tensor_to_mesh_mapper")
    return TensorToMesh(shape, MeshShape(shape.mesh_size()), [PlacementShard(dim)], mesh_device)


def concat_mesh_to_tensor_composer(mesh_device: MeshDevice, dim: int) -> MeshToTensor:
    return MeshToTensor(_device_shape(mesh_device, "concat_mesh_to_tensor_composer"), [dim], mesh_device)


def ReplicateTensorToMesh(mesh_device: MeshDevice) -> ReplicateTensorToMeshWrapper:
    return ReplicateTensorToMeshWrapper(replicate_tensor_to_mesh_mapper(mesh_device))


def ShardTensorToMesh(mesh_device: MeshDevice, dim: int) -> TensorToMesh:
    return shard_tensor_to_mesh_mapper(mesh_device, dim)


def ConcatMeshToTensor(mesh_device: MeshDevice, dim: int) -> MeshToTensor:
    return concat_mesh_to_tensor_composer(mesh_device, dim)


def ShardTensor2dMesh(mesh_device: MeshDevice, mesh_shape: Sequence[int], dims: Sequence[int | None]) -> TensorToMesh:
    return create_mesh_mapper(
        mesh_device,
        MeshMapperConfig(
            [PlacementReplicate() if d is None else PlacementShard(d) for d in dims],
            MeshShape(mesh_shape[0], mesh_shape[1]),
        ),
    )


def ConcatMesh2dToTensor(mesh_device: MeshDevice, mesh_shape: Sequence[int], dims: Sequence[int]) -> MeshToTensor:
    return create_mesh_composer(
        mesh_device, MeshComposerConfig([dims[0], dims[1]], MeshShape(mesh_shape[0], mesh_shape[1]))
    )
