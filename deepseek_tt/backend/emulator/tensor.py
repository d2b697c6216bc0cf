"""The emulator's ``ttnn.Tensor`` and host <-> device conversion (``from_torch``, ``to_torch``, ...).

A tensor is one torch tensor ``_data`` stacked ``[num_shards, *logical_shard_shape]``: one shard per
device of its mesh (device ``(r, c)`` at index ``r * cols + c``), or a single shard for a plain host
tensor. Values are stored already rounded to the ttnn dtype (see ``numerics.round_to_dtype``); TILE
padding is implicit (zeros), so ``padded_shape`` is computed, never stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from . import numerics
from .mesh import MeshDevice, MeshShape, MeshToTensor, ReplicateTensorToMeshWrapper, TensorToMesh
from .types import (
    BLOCK_FLOAT_DTYPES,
    DRAM_MEMORY_CONFIG,
    TILE_SIZE,
    DataType,
    Layout,
    MemoryConfig,
    Shape,
    StorageType,
)
from .validation import check_dtype_layout, check_memory_config

if TYPE_CHECKING:  # pragma: no cover
    import numpy


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_padded_shape(shape: Sequence[int], layout: Layout) -> Shape:
    """The padded shape ttnn reports: TILE pads the last two dims to 32 (a rank-1 ``[n]`` becomes ``[32, n32]``)."""
    dims = [int(d) for d in shape]
    if layout != Layout.TILE:
        return Shape(dims)
    if len(dims) == 0:
        return Shape([TILE_SIZE, TILE_SIZE])
    if len(dims) == 1:
        return Shape([TILE_SIZE, _round_up(dims[0], TILE_SIZE)])
    return Shape(dims[:-2] + [_round_up(dims[-2], TILE_SIZE), _round_up(dims[-1], TILE_SIZE)])


class Tensor:
    """Emulated ``ttnn.Tensor``; build it with :meth:`from_stacked` (ops) or :func:`from_torch` (users)."""

    def __init__(
        self,
        data: torch.Tensor,
        *,
        dtype: DataType,
        layout: Layout,
        device: MeshDevice | None,
        memory_config: MemoryConfig,
        mesh_shape: MeshShape,
        placements: list | None = None,
    ) -> None:
        self._storage: torch.Tensor | None = data
        self._dtype = dtype
        self._layout = layout
        self._device = device
        self._memory_config = memory_config
        self._mesh_shape = mesh_shape
        self._placements = placements

    @classmethod
    def from_stacked(
        cls,
        data: torch.Tensor,
        *,
        dtype: DataType,
        layout: Layout = Layout.TILE,
        device: MeshDevice | None = None,
        memory_config: MemoryConfig | None = None,
        mesh_shape: Sequence[int] | None = None,
        placements: list | None = None,
        rounded: bool = False,
    ) -> "Tensor":
        """A tensor from stacked shards ``[num_shards, *shape]``, rounded to ``dtype`` and validated.

        ``mesh_shape`` defaults to the device's shape (or 1x1 for one host shard); it must cover
        ``data.shape[0]`` devices. ``rounded=True`` skips the rounding for data already rounded to
        ``dtype`` (in the storage torch dtype).
        """
        where = "ttnn.Tensor"
        if not isinstance(dtype, DataType):
            raise TypeError(f"{where}: dtype must be a ttnn.DataType, got {dtype!r}")
        if not isinstance(layout, Layout):
            raise TypeError(f"{where}: layout must be a ttnn.Layout, got {layout!r}")
        check_dtype_layout(dtype, layout, where)
        if data.dim() < 1:
            raise ValueError(f"{where}: stacked data needs a leading shard dim, got shape {list(data.shape)}")
        memory_config = DRAM_MEMORY_CONFIG if memory_config is None else memory_config
        if mesh_shape is None:
            mesh_shape = device.shape if device is not None else MeshShape(1, data.shape[0])
        if not isinstance(mesh_shape, MeshShape):
            mesh_shape = MeshShape(mesh_shape)
        if mesh_shape.mesh_size() != data.shape[0]:
            raise RuntimeError(f"{where}: {data.shape[0]} shards for a mesh of shape {mesh_shape}")
        if device is not None:
            if not device.is_open:
                raise RuntimeError(f"{where}: mesh device {device} is closed")
            if device.shape.mesh_size() != data.shape[0]:
                raise RuntimeError(
                    f"{where}: a tensor with {data.shape[0]} shards cannot live on mesh {device.shape} "
                    f"({device.get_num_devices()} devices)"
                )
        if not isinstance(memory_config, MemoryConfig) or memory_config.is_sharded():  # else nothing to check
            check_memory_config(memory_config, tile_padded_shape(data.shape[1:], layout), layout, where)
        values = data if rounded else numerics.round_to_dtype(data, dtype)
        target = device.torch_device if device is not None else torch.device("cpu")
        if values.device != target:
            values = values.to(target)
        return cls(values, dtype=dtype, layout=layout, device=device, memory_config=memory_config,
                   mesh_shape=mesh_shape, placements=placements)

    # -- storage ------------------------------------------------------------------------------
    @property
    def _data(self) -> torch.Tensor:
        storage = self._stacked
        if not isinstance(storage, torch.Tensor):  # deferred values (ops/deferred.py): evaluate them whole
            storage = self._storage = storage.full()
        return storage

    @property
    def _stacked(self) -> Any:
        """The storage as it is (a torch tensor or deferred values, both with ``.shape``), not evaluated."""
        if self._storage is None:
            raise RuntimeError("ttnn.Tensor: the tensor was deallocated; it cannot be used any more")
        return self._storage

    @_data.setter
    def _data(self, value: torch.Tensor) -> None:
        self._storage = value

    def deallocate(self, force: bool = False) -> None:
        self._storage = None

    def is_allocated(self) -> bool:
        return self._storage is not None

    # -- properties as ttnn reports them --------------------------------------------------------
    @property
    def dtype(self) -> DataType:
        return self._dtype

    @dtype.setter
    def dtype(self, value: DataType) -> None:
        self._dtype = value

    @property
    def layout(self) -> Layout:
        return self._layout

    @layout.setter
    def layout(self, value: Layout) -> None:
        self._layout = value

    @property
    def shape(self) -> Shape:
        return Shape(self._stacked.shape[1:])

    @property
    def padded_shape(self) -> Shape:
        return tile_padded_shape(self._stacked.shape[1:], self.layout)

    def device(self) -> MeshDevice | None:
        return self._device

    def devices(self) -> list[MeshDevice]:
        return [] if self._device is None else [self._device]

    def memory_config(self) -> MemoryConfig:
        return self._memory_config

    def storage_type(self) -> StorageType:
        return StorageType.HOST if self._device is None else StorageType.DEVICE

    def is_sharded(self) -> bool:
        return self._memory_config.is_sharded()

    def get_dtype(self) -> DataType:
        return self.dtype

    def get_layout(self) -> Layout:
        return self.layout

    def logical_volume(self) -> int:
        return self.shape.volume()

    def volume(self) -> int:
        return self.padded_shape.volume()

    @property
    def mesh_shape(self) -> MeshShape:
        """The distribution shape of the shards (the mesh's shape for a device tensor)."""
        return self._mesh_shape

    @property
    def num_shards(self) -> int:
        return self._stacked.shape[0]

    def element_size(self) -> int:
        return {DataType.BFLOAT8_B: 1, DataType.BFLOAT4_B: 1, DataType.FLOAT32: 4, DataType.UINT32: 4,
                DataType.INT32: 4, DataType.UINT16: 2, DataType.BFLOAT16: 2}.get(self.dtype, 1)

    # -- conversions ----------------------------------------------------------------------------
    def to_torch(self, mesh_composer: MeshToTensor | None = None) -> torch.Tensor:
        return to_torch(self, mesh_composer=mesh_composer)

    def cpu(self, blocking: bool = True, cq_id: int | None = None) -> "Tensor":
        return from_device(self)

    def to(self, device: MeshDevice, mem_config: MemoryConfig | None = None, cq_id: int | None = None) -> "Tensor":
        return to_device(self, device, memory_config=mem_config)

    def _with(self, data: torch.Tensor, **changes: Any) -> "Tensor":
        """A tensor like this one with other (already rounded) data and fields; no validation."""
        fields = dict(dtype=self.dtype, layout=self.layout, device=self._device, memory_config=self._memory_config,
                      mesh_shape=self._mesh_shape, placements=self._placements)
        fields.update(changes)
        return Tensor(data, **fields)

    def __repr__(self) -> str:
        if self._storage is None:
            return "ttnn.Tensor(<deallocated>)"
        where = "host" if self._device is None else f"mesh {list(self._device.shape)}"
        return (
            f"ttnn.Tensor(shape={self.shape}, dtype={self.dtype}, layout={self.layout}, {where}, "
            f"shards={self.num_shards}, memory_config={self._memory_config})"
        )


# ---------------------------------------------------------------------------------------------
# host <-> device

_TORCH_TO_TTNN_DTYPE = {
    torch.bfloat16: DataType.BFLOAT16,
    torch.float32: DataType.FLOAT32,
    torch.int64: DataType.UINT32,  # what ttnn 0.81 infers for int64
    torch.int32: DataType.INT32,
    torch.uint8: DataType.UINT8,
    torch.uint16: DataType.UINT16,
    torch.uint32: DataType.UINT32,
}


def _unwrap_mapper(mesh_mapper: Any) -> TensorToMesh | None:
    if isinstance(mesh_mapper, ReplicateTensorToMeshWrapper):
        return mesh_mapper.unwrap()
    if mesh_mapper is not None and not isinstance(mesh_mapper, TensorToMesh):
        raise TypeError(f"ttnn.from_torch: mesh_mapper must be a ttnn mesh mapper, got {type(mesh_mapper).__name__}")
    return mesh_mapper


def from_torch(
    tensor: "torch.Tensor | numpy.ndarray | None",
    dtype: DataType | None = None,
    *,
    spec: Any = None,
    tile: Any = None,
    pad_value: float | None = None,
    layout: Layout | None = None,
    device: MeshDevice | None = None,
    memory_config: MemoryConfig | None = None,
    mesh_mapper: TensorToMesh | ReplicateTensorToMeshWrapper | None = None,
    cq_id: int | None = None,
    preserve_nan_values: bool = False,
    col_tilize: bool = False,
    enable_bfloat_opt: bool = False,
) -> Tensor | None:
    """``ttnn.from_torch``: convert (and round) a torch tensor, optionally mapped onto a mesh device."""
    if tensor is None:
        return None
    if spec is not None or tile is not None:
        raise NotImplementedError("ttnn.from_torch: spec= and tile= are not emulated")
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.as_tensor(tensor)
    if dtype is None:
        if tensor.dtype not in _TORCH_TO_TTNN_DTYPE:
            raise RuntimeError(f"ttnn.from_torch: torch dtype {tensor.dtype} has no ttnn data type; pass dtype=")
        dtype = _TORCH_TO_TTNN_DTYPE[tensor.dtype]
    if not isinstance(dtype, DataType):
        raise TypeError(f"ttnn.from_torch: dtype must be a ttnn.DataType, got {dtype!r}")
    if layout is None:
        layout = Layout.TILE if dtype in BLOCK_FLOAT_DTYPES else Layout.ROW_MAJOR
    check_dtype_layout(dtype, layout, "ttnn.from_torch")
    if memory_config is not None and memory_config.is_sharded() and memory_config.shard_spec is None:
        raise RuntimeError("ttnn.from_torch: Shard spec must not be None for sharded tensors")
    if col_tilize:
        if dtype not in BLOCK_FLOAT_DTYPES:
            raise RuntimeError("ttnn.from_torch: col_tilize=True requires BFP dtype (bfloat8_b or bfloat4_b)")
        if tensor.dim() < 2:
            raise RuntimeError("ttnn.from_torch: col_tilize=True requires tensor.ndim >= 2")
        tensor = tensor.transpose(-1, -2)

    mapper = _unwrap_mapper(mesh_mapper)
    if mapper is not None and device is not None and mapper.mesh_shape.mesh_size() != device.get_num_devices():
        raise RuntimeError(
            f"ttnn.from_torch: the mesh mapper was made for mesh {mapper.mesh_shape} but device is mesh {device.shape}"
        )
    # convert where the device computes (CUDA when the emulator runs there), rounding each distinct shard once
    source = tensor.detach().to(device.torch_device if device is not None else torch.device("cpu"))
    if dtype in BLOCK_FLOAT_DTYPES and pad_value not in (None, 0, 0.0):
        source = _round_bfp_with_padding(source, dtype, float(pad_value))
    if mapper is not None:
        stacked = mapper.replicate(numerics.round_to_dtype(mapper.split(source), dtype))
        mesh_shape, placements = mapper.mesh_shape, list(mapper.placements)
    else:  # one shard, replicated over the mesh when there is one
        stacked = numerics.round_to_dtype(source, dtype).unsqueeze(0)
        mesh_shape, placements = MeshShape(1, 1), None
        if device is not None:
            stacked = stacked.expand(device.get_num_devices(), *source.shape).contiguous()
            mesh_shape = device.shape
    if stacked.data_ptr() == tensor.data_ptr():
        stacked = stacked.clone()  # never alias the caller's tensor
    return Tensor.from_stacked(stacked, dtype=dtype, layout=layout, device=device, memory_config=memory_config,
                               mesh_shape=mesh_shape, placements=placements, rounded=True)


def _round_bfp_with_padding(tensor: torch.Tensor, dtype: DataType, pad_value: float) -> torch.Tensor:
    """bfp rounding when the tile padding is not zero: padded columns share exponents with real ones."""
    x = tensor.to(torch.float32)
    width = x.shape[-1] if x.dim() else 1
    x = torch.nn.functional.pad(x.reshape(*x.shape[:-1], width), (0, _round_up(width, TILE_SIZE) - width), value=pad_value)
    return numerics.quantize_bfp(x, dtype)[..., :width].reshape(tensor.shape)


def to_torch(
    tensor: Tensor,
    dtype: torch.dtype | None = None,
    *,
    torch_rank: int | None = None,
    mesh_composer: MeshToTensor | None = None,
    device: MeshDevice | None = None,
    cq_id: int | None = None,
) -> torch.Tensor:
    """``ttnn.to_torch``: the logical tensor on the CPU (a mesh composer is required for >1 shard)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"ttnn.to_torch: expected a ttnn.Tensor, got {type(tensor).__name__}")
    data = tensor._data
    if mesh_composer is not None:
        result = mesh_composer.compose(data)
    elif data.shape[0] == 1:
        result = data[0]
    else:
        raise RuntimeError(
            f"ttnn.to_torch: Can't convert a tensor distributed on {tensor.mesh_shape} mesh to row-major logical "
            f"tensor. Supply a mesh composer to concatenate multi-device shards."
        )
    result = result.to("cpu")
    target = numerics.TO_TORCH_DTYPE.get(tensor.dtype, result.dtype)
    if result.dtype != target:
        result = result.to(target)
    elif result.data_ptr() == data.data_ptr():
        result = result.clone()
    if torch_rank is not None:
        while result.dim() > torch_rank:
            if result.shape[0] != 1:
                raise RuntimeError("ttnn: Unable to squeeze to desired rank!")
            result = result.squeeze(0)
    return result.to(dtype) if dtype is not None else result


def to_device(
    tensor: Tensor,
    device: MeshDevice,
    memory_config: MemoryConfig | None = None,
    *,
    queue_id: int | None = None,
) -> Tensor:
    """``ttnn.to_device``: a host tensor onto a mesh (one host shard is replicated to every device)."""
    if device is None:
        return tensor
    if not isinstance(device, MeshDevice):
        raise TypeError(f"ttnn.to_device: device must be a ttnn.MeshDevice, got {type(device).__name__}")
    if not device.is_open:
        raise RuntimeError(f"ttnn.to_device: mesh device {device} is closed")
    if tensor.device() is not None:
        if tensor.device() is not device:
            raise RuntimeError(
                f"ttnn.to_device: the tensor is already on another mesh device ({tensor.device()}); move it through host"
            )
        return tensor if memory_config is None else Tensor.from_stacked(
            tensor._data, dtype=tensor.dtype, layout=tensor.layout, device=device, memory_config=memory_config,
            placements=tensor._placements)
    data = tensor._data
    num = device.get_num_devices()
    if data.shape[0] == 1 and num > 1:
        data = data.expand(num, *data.shape[1:])
    elif data.shape[0] != num:
        raise RuntimeError(
            f"ttnn.to_device: the tensor was distributed for a mesh of shape {tensor.mesh_shape}, not for mesh {device.shape}"
        )
    data = data.to(device.torch_device)
    if data.stride(0) == 0 and num > 1:
        data = data.contiguous()
    config = memory_config if memory_config is not None else tensor.memory_config()
    check_memory_config(config, tensor.padded_shape, tensor.layout, "ttnn.to_device")
    return Tensor(data, dtype=tensor.dtype, layout=tensor.layout, device=device, memory_config=config,
                  mesh_shape=device.shape, placements=tensor._placements)


def from_device(tensor: Tensor, blocking: bool = True, *, queue_id: int | None = None) -> Tensor:
    """``ttnn.from_device``: the same shards on host."""
    if tensor.device() is None:
        return tensor
    return Tensor(tensor._data.to("cpu"), dtype=tensor.dtype, layout=tensor.layout, device=None,
                  memory_config=tensor.memory_config(), mesh_shape=tensor.mesh_shape, placements=tensor._placements)


def deallocate(tensor: Tensor, force: bool = True) -> None:
    """``ttnn.deallocate``: free the tensor; later use raises."""
    tensor.deallocate(force)


def is_tensor_storage_on_device(tensor: Tensor) -> bool:
    return tensor.storage_type() == StorageType.DEVICE


def get_device_tensors(tensor: Tensor) -> list[Tensor]:
    """One single-shard tensor per device (in device order), as ``ttnn.get_device_tensors``."""
    return [
        Tensor(tensor._data[i : i + 1], dtype=tensor.dtype, layout=tensor.layout, device=None,
               memory_config=tensor.memory_config(), mesh_shape=MeshShape(1, 1))
        for i in range(tensor.num_shards)
    ]
