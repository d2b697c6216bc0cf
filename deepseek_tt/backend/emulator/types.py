"""Enums and configuration classes of the emulated ttnn API, with real ttnn 0.81's names and defaults.

Memory and program configurations carry no numerical meaning in the emulator; they are validated
where real ttnn would reject them (see :mod:`.validation`) and kept on tensors so that code reading
them back (``tensor.memory_config()``) sees what the device would report.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from torch import Size as _TorchSize  # private: the emulator's namespace mirrors ttnn's names

TILE_SIZE = 32
FACE_SIZE = 16


class _TtnnEnum(enum.Enum):
    """An enum printed as ttnn prints it: ``DataType.BFLOAT16``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    __str__ = __repr__


class DataType(_TtnnEnum):
    BFLOAT16 = 0
    FLOAT32 = 1
    UINT32 = 2
    BFLOAT8_B = 3
    BFLOAT4_B = 4
    UINT8 = 5
    UINT16 = 6
    INT32 = 7
    FP8_E4M3 = 8
    INT8 = 9
    INVALID = 10



bfloat16 = DataType.BFLOAT16
float32 = DataType.FLOAT32
uint32 = DataType.UINT32
bfloat8_b = DataType.BFLOAT8_B
bfloat4_b = DataType.BFLOAT4_B
uint8 = DataType.UINT8
uint16 = DataType.UINT16
int32 = DataType.INT32

BLOCK_FLOAT_DTYPES = frozenset({DataType.BFLOAT8_B, DataType.BFLOAT4_B})
INTEGER_DTYPES = frozenset({DataType.UINT8, DataType.UINT16, DataType.UINT32, DataType.INT32, DataType.INT8})


class Layout(_TtnnEnum):
    ROW_MAJOR = 0
    TILE = 1
    INVALID = 2



ROW_MAJOR_LAYOUT = Layout.ROW_MAJOR
TILE_LAYOUT = Layout.TILE


class StorageType(_TtnnEnum):
    HOST = 0
    DEVICE = 1



class TensorMemoryLayout(_TtnnEnum):
    INTERLEAVED = 0
    HEIGHT_SHARDED = 2
    WIDTH_SHARDED = 3
    BLOCK_SHARDED = 4
    ND_SHARDED = 5



class BufferType(_TtnnEnum):
    DRAM = 0
    L1 = 1
    SYSTEM_MEMORY = 2
    L1_SMALL = 3
    TRACE = 4



class ShardOrientation(_TtnnEnum):
    ROW_MAJOR = 0
    COL_MAJOR = 1



class ShardStrategy(_TtnnEnum):
    HEIGHT = 0
    WIDTH = 1
    BLOCK = 2



class MathFidelity(_TtnnEnum):
    LoFi = 0
    HiFi2 = 2
    HiFi3 = 3
    HiFi4 = 4
    Invalid = 255



class Topology(_TtnnEnum):
    Ring = 0
    Linear = 1
    Mesh = 2
    Torus = 3



class Arch(_TtnnEnum):
    GRAYSKULL = 1
    WORMHOLE_B0 = 2
    BLACKHOLE = 3
    QUASAR = 4



class ThrottleLevel(_TtnnEnum):
    NO_THROTTLE = 0
    LEVEL_1 = 1
    LEVEL_2 = 2
    LEVEL_3 = 3
    LEVEL_4 = 4
    LEVEL_5 = 5



class DumpTensorMode(enum.Enum):
    DISTRIBUTED_GATHER = 0
    LOCAL = 1


_UNARY_OP_NAMES = (
    "ABS ABS_INT32 ACOS ACOSH ADD_UNARY_SFPU ALT_COMPLEX_ROTATE90 ASIN ASINH ATAN ATANH BITCAST BITWISE_AND "
    "BITWISE_NOT BITWISE_OR BITWISE_XOR CBRT CEIL CELU CLAMP_TSS COS COSH DIGAMMA DIV_UNARY_SFPU DROPOUT ELU EQZ "
    "ERF ERFC ERFINV EXP EXP2 EXPM1 FILL FLOOR FMOD FRAC GELU GELU_TANH GEZ GTZ HARDMISH HARDSHRINK HARDSIGMOID "
    "HARDSWISH HARDTANH HEAVISIDE I0 I1 IDENTITY ISFINITE ISINF ISNAN ISNEGINF ISPOSINF LEAKY_RELU LEFT_SHIFT LEZ "
    "LGAMMA LOG LOG10 LOG1P LOG2 LOGICAL_NOT_UNARY LOGIT LOGSIGMOID LTZ MAC_TSS MAXIMUM MINIMUM MISH MUL_UNARY_SFPU "
    "NEG NEZ POLYGAMMA POWER POWER_ITERATIVE PRELU_SFPU RDIV RECIP RELU RELU6 RELU_MAX RELU_MIN REMAINDER "
    "RIGHT_SHIFT ROUND RPOW RSQRT RSUB SELU SIGMOID SIGN SIGNBIT SILU SIN SINH SOFTCAP SOFTPLUS SOFTSHRINK "
    "SOFTSIGN SQRT SQUARE SUB_UNARY_SFPU TAN TANH TANHSHRINK THRESHOLD TILED_PROD TRUNC TYPECAST UNARY_EQ UNARY_GE "
    "UNARY_GT UNARY_LE UNARY_LT UNARY_NE WHERE_TSS XIELU ZERO_POINT"
).split()

UnaryOpType = _TtnnEnum("UnaryOpType", {name: index for index, name in enumerate(_UNARY_OP_NAMES)})


class UnaryWithParam:
    """A fused activation: ``UnaryWithParam(UnaryOpType.SILU)`` or with one or two float parameters."""

    def __init__(self, op_type: "UnaryOpType | tuple", *params: float) -> None:
        if isinstance(op_type, tuple):
            op_type, *params = op_type
        if not isinstance(op_type, UnaryOpType):
            raise TypeError(f"UnaryWithParam: expected a ttnn.UnaryOpType, got {op_type!r}")
        if len(params) > 2:
            raise TypeError("UnaryWithParam takes at most two parameters")
        self.op_type = op_type
        self.params = [float(p) for p in params]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnaryWithParam) and (self.op_type, self.params) == (other.op_type, other.params)

    def __hash__(self) -> int:
        return hash((self.op_type, tuple(self.params)))

    def __repr__(self) -> str:
        return f"UnaryWithParam(op_type={self.op_type!r}, params={self.params})"


class Shape(tuple):
    """ttnn.Shape: a tuple of ints that also compares equal to lists and ``torch.Size``."""

    def __new__(cls, shape: Iterable[int] = ()) -> "Shape":
        if type(shape) is _TorchSize:  # already ints (the common case: a tensor's shape)
            return super().__new__(cls, shape)
        return super().__new__(cls, (int(d) for d in shape))

    @property
    def rank(self) -> int:
        return len(self)

    def to_rank(self, rank: int) -> "Shape":
        dims = list(self)
        if rank < len(dims):
            if any(d != 1 for d in dims[: len(dims) - rank]):
                raise RuntimeError(f"Shape.to_rank: cannot squeeze {self} to rank {rank}")
            return Shape(dims[len(dims) - rank :])
        return Shape([1] * (rank - len(dims)) + dims)

    def volume(self) -> int:
        return math.prod(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = tuple.__hash__

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):  # real ttnn.Shape takes integer indices only
            raise TypeError("ttnn.Shape.__getitem__(): incompatible function arguments (slices are not supported)")
        return super().__getitem__(index)

    def __repr__(self) -> str:
        return f"Shape({list(self)})"

    __str__ = __repr__


@dataclass(frozen=True)
class CoreCoord:
    x: int
    y: int

    def __repr__(self) -> str:
        return f"({self.x}, {self.y})"


@dataclass(frozen=True)
class CoreRange:
    start: CoreCoord
    end: CoreCoord

    def __post_init__(self) -> None:
        if self.end.x < self.start.x or self.end.y < self.start.y:
            raise RuntimeError(f"Invalid core range: end {self.end} lies before start {self.start}")

    def grid_size(self) -> CoreCoord:
        return CoreCoord(self.end.x - self.start.x + 1, self.end.y - self.start.y + 1)

    def num_cores(self) -> int:
        size = self.grid_size()
        return size.x * size.y

    def contains(self, coord: CoreCoord) -> bool:
        return self.start.x <= coord.x <= self.end.x and self.start.y <= coord.y <= self.end.y

    def __repr__(self) -> str:
        return f"[{self.start} - {self.end}]"


class CoreRangeSet:
    """A set of non-overlapping core ranges."""

    def __init__(self, core_ranges: Iterable[CoreRange]) -> None:
        ranges = sorted(set(core_ranges), key=lambda r: (r.start.y, r.start.x))
        for i, a in enumerate(ranges):
            for b in ranges[i + 1 :]:
                if not (a.end.x < b.start.x or b.end.x < a.start.x or a.end.y < b.start.y or b.end.y < a.start.y):
                    raise RuntimeError(f"CoreRangeSet: ranges {a} and {b} overlap")
        self._ranges = tuple(ranges)

    def ranges(self) -> list[CoreRange]:
        return list(self._ranges)

    def num_cores(self) -> int:
        return sum(r.num_cores() for r in self._ranges)

    def bounding_box(self) -> CoreRange:
        if not self._ranges:
            raise RuntimeError("CoreRangeSet.bounding_box: empty set")
        return CoreRange(
            CoreCoord(min(r.start.x for r in self._ranges), min(r.start.y for r in self._ranges)),
            CoreCoord(max(r.end.x for r in self._ranges), max(r.end.y for r in self._ranges)),
        )

    def contains(self, coord: CoreCoord) -> bool:
        return any(r.contains(coord) for r in self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CoreRangeSet) and self._ranges == other._ranges

    def __hash__(self) -> int:
        return hash(self._ranges)

    def __repr__(self) -> str:
        return "{" + ", ".join(map(repr, self._ranges)) + "}"


@dataclass(frozen=True)
class CoreGrid:
    x: int
    y: int

    def __init__(self, *, x: int, y: int) -> None:
        object.__setattr__(self, "x", int(x))
        object.__setattr__(self, "y", int(y))

    @property
    def num_cores(self) -> int:
        return self.x * self.y


@dataclass(frozen=True)
class ShardSpec:
    grid: CoreRangeSet
    shape: tuple[int, int]
    orientation: ShardOrientation = ShardOrientation.ROW_MAJOR

    def __init__(
        self,
        grid: CoreRangeSet,
        shard_shape: Sequence[int],
        shard_orientation: ShardOrientation,
    ) -> None:
        if len(shard_shape) != 2:
            raise RuntimeError(f"ShardSpec: shard_shape must have 2 dims, got {list(shard_shape)}")
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "shape", (int(shard_shape[0]), int(shard_shape[1])))
        object.__setattr__(self, "orientation", shard_orientation)

    def num_cores(self) -> int:
        return self.grid.num_cores()


@dataclass(frozen=True)
class MemoryConfig:
    memory_layout: TensorMemoryLayout = TensorMemoryLayout.INTERLEAVED
    buffer_type: BufferType = BufferType.DRAM
    shard_spec: ShardSpec | None = None

    def is_sharded(self) -> bool:
        return self.memory_layout != TensorMemoryLayout.INTERLEAVED

    @property
    def nd_shard_spec(self) -> None:
        return None

    def with_shard_spec(self, shard_spec: ShardSpec | None) -> "MemoryConfig":
        return MemoryConfig(self.memory_layout, self.buffer_type, shard_spec)

    def __repr__(self) -> str:
        return (
            f"MemoryConfig(memory_layout=TensorMemoryLayout::{self.memory_layout.name},"
            f"buffer_type=BufferType::{self.buffer_type.name},shard_spec={self.shard_spec})"
        )


DRAM_MEMORY_CONFIG = MemoryConfig(TensorMemoryLayout.INTERLEAVED, BufferType.DRAM)
L1_MEMORY_CONFIG = MemoryConfig(TensorMemoryLayout.INTERLEAVED, BufferType.L1)
L1_HEIGHT_SHARDED_MEMORY_CONFIG = MemoryConfig(TensorMemoryLayout.HEIGHT_SHARDED, BufferType.L1)
L1_WIDTH_SHARDED_MEMORY_CONFIG = MemoryConfig(TensorMemoryLayout.WIDTH_SHARDED, BufferType.L1)
L1_BLOCK_SHARDED_MEMORY_CONFIG = MemoryConfig(TensorMemoryLayout.BLOCK_SHARDED, BufferType.L1)


def create_sharded_memory_config(
    shape: "Shape | Sequence[int]",
    core_grid: "CoreGrid | CoreRangeSet | tuple[CoreGrid, CoreGrid]",
    strategy: ShardStrategy,
    orientation: ShardOrientation | None = None,
    use_height_and_width_as_shard_shape: bool = False,
) -> MemoryConfig:
    """A sharded L1 memory config, as ``ttnn.create_sharded_memory_config`` computes it.

    The tensor is viewed as ``[prod(shape[:-1]), shape[-1]]``; unless ``use_height_and_width_as_shard_shape``
    the shard shape divides that view over the core grid (raising when it does not divide).
    """
    if not isinstance(shape, (list, tuple)):
        raise RuntimeError("Invalid input shape")
    layouts = {
        ShardStrategy.BLOCK: TensorMemoryLayout.BLOCK_SHARDED,
        ShardStrategy.WIDTH: TensorMemoryLayout.WIDTH_SHARDED,
        ShardStrategy.HEIGHT: TensorMemoryLayout.HEIGHT_SHARDED,
    }
    if strategy not in layouts:
        raise RuntimeError("Invalid sharding strategy")
    orientation = ShardOrientation.ROW_MAJOR if orientation is None else orientation
    if not isinstance(orientation, ShardOrientation):
        raise RuntimeError("Invalid shard orientation")

    if isinstance(core_grid, CoreGrid):
        grid = CoreRangeSet({CoreRange(CoreCoord(0, 0), CoreCoord(core_grid.x - 1, core_grid.y - 1))})
    elif isinstance(core_grid, (list, tuple)):
        if len(core_grid) != 2 or not all(isinstance(g, CoreGrid) for g in core_grid):
            raise RuntimeError("Invalid core_grid type")
        first, second = core_grid
        grid = CoreRangeSet(
            {
                CoreRange(CoreCoord(0, 0), CoreCoord(first.x - 1, first.y - 1)),
                CoreRange(CoreCoord(0, first.y), CoreCoord(second.x - 1, first.y)),
            }
        )
    elif isinstance(core_grid, CoreRangeSet):
        grid = core_grid
        if not use_height_and_width_as_shard_shape:
            raise RuntimeError("height and width must be shard shape with CoreRangeSet")
    else:
        raise RuntimeError("Invalid core_grid type")

    *batch, height, width = (int(d) for d in shape)
    if use_height_and_width_as_shard_shape:
        shard_shape = (height, width) if orientation == ShardOrientation.ROW_MAJOR else (width, height)
    else:
        rows, cols = math.prod(batch) * height, width
        if strategy == ShardStrategy.BLOCK:
            along_rows, along_cols = (
                (core_grid.y, core_grid.x) if orientation == ShardOrientation.ROW_MAJOR else (core_grid.x, core_grid.y)
            )
            if rows % along_rows or cols % along_cols:
                raise RuntimeError(
                    f"Invalid sharding core_grid: tensor [{rows}, {cols}] does not divide into a {along_rows}x{along_cols} block grid"
                )
            shard_shape = (rows // along_rows, cols // along_cols)
        else:
            cores = core_grid.x * core_grid.y
            split = rows if strategy == ShardStrategy.HEIGHT else cols
            if split % cores:
                raise RuntimeError(
                    f"Invalid sharding core_grid: {'height' if strategy == ShardStrategy.HEIGHT else 'width'} {split} "
                    f"does not divide over {cores} cores"
                )
            shard_shape = (rows // cores, cols) if strategy == ShardStrategy.HEIGHT else (rows, cols // cores)
    return MemoryConfig(layouts[strategy], BufferType.L1, ShardSpec(grid, shard_shape, orientation))


@dataclass(kw_only=True)
class WormholeComputeKernelConfig:
    math_fidelity: MathFidelity = MathFidelity.Invalid
    math_approx_mode: bool = True
    fp32_dest_acc_en: bool = False
    packer_l1_acc: bool = False
    dst_full_sync_en: bool = False
    throttle_level: ThrottleLevel = ThrottleLevel.NO_THROTTLE


def init_device_compute_kernel_config(
    arch: Arch,
    device_kernel_config: WormholeComputeKernelConfig | None = None,
    *,
    math_fidelity: MathFidelity = MathFidelity.LoFi,
    math_approx_mode: bool = True,
    fp32_dest_acc_en: bool = False,
    packer_l1_acc: bool = False,
    dst_full_sync_en: bool = False,
    throttle_level: ThrottleLevel = ThrottleLevel.NO_THROTTLE,
) -> WormholeComputeKernelConfig:
    """The given config, or one built from the keyword arguments (``ttnn.init_device_compute_kernel_config``)."""
    if device_kernel_config is not None:
        return device_kernel_config
    return WormholeComputeKernelConfig(
        math_fidelity=math_fidelity,
        math_approx_mode=math_approx_mode,
        fp32_dest_acc_en=fp32_dest_acc_en,
        packer_l1_acc=packer_l1_acc,
        dst_full_sync_en=dst_full_sync_en,
        throttle_level=throttle_level,
    )


@dataclass(kw_only=True)
class MatmulMultiCoreReuseProgramConfig:
    compute_with_storage_grid_size: CoreCoord
    in0_block_w: int
    out_subblock_h: int
    out_subblock_w: int
    per_core_M: int
    per_core_N: int
    allowed_worker_cores: CoreRangeSet | None = None


@dataclass(kw_only=True)
class MatmulMultiCoreReuseMultiCastProgramConfig:
    compute_with_storage_grid_size: CoreCoord
    in0_block_w: int
    out_subblock_h: int
    out_subblock_w: int
    out_block_h: int | None = None
    out_block_w: int | None = None
    per_core_M: int
    per_core_N: int
    transpose_mcast: bool
    fused_activation: UnaryWithParam | None = None
    fuse_batch: bool = True
    allowed_worker_cores: CoreRangeSet | None = None

    def __post_init__(self) -> None:  # ttnn fills the output block from the per-core block
        self.out_block_h = self.per_core_M if self.out_block_h is None else self.out_block_h
        self.out_block_w = self.per_core_N if self.out_block_w is None else self.out_block_w


@dataclass(kw_only=True)
class MatmulMultiCoreReuseMultiCast1DProgramConfig:
    compute_with_storage_grid_size: CoreCoord
    in0_block_w: int
    out_subblock_h: int
    out_subblock_w: int
    out_block_h: int | None = None
    out_block_w: int | None = None
    per_core_M: int
    per_core_N: int
    fuse_batch: bool
    fused_activation: UnaryWithParam | None = None
    mcast_in0: bool
    gather_in0: bool = False
    hop_cores: CoreRangeSet = field(default_factory=lambda: CoreRangeSet([]))
    num_global_cb_receivers: int = 1
    untilize_out: bool = False
    allowed_worker_cores: CoreRangeSet | None = None
    stream_in1: bool = False

    def __post_init__(self) -> None:  # ttnn fills the output block from the per-core block
        self.out_block_h = self.per_core_M if self.out_block_h is None else self.out_block_h
        self.out_block_w = self.per_core_N if self.out_block_w is None else self.out_block_w


@dataclass(kw_only=True)
class MatmulMultiCoreReuseMultiCastDRAMShardedProgramConfig:
    in0_block_w: int
    per_core_M: int
    per_core_N: int
    fused_activation: UnaryWithParam | None = None
    num_workers_per_dram_bank: int = 1


MATMUL_PROGRAM_CONFIGS = (
    MatmulMultiCoreReuseProgramConfig,
    MatmulMultiCoreReuseMultiCastProgramConfig,
    MatmulMultiCoreReuseMultiCast1DProgramConfig,
    MatmulMultiCoreReuseMultiCastDRAMShardedProgramConfig,
)


@dataclass(kw_only=True)
class SDPAProgramConfig:
    compute_with_storage_grid_size: CoreCoord
    sub_core_grids: CoreRangeSet | None = None
    q_chunk_size: int
    k_chunk_size: int
    exp_approx_mode: bool | None = None
    max_cores_per_head_batch: int = 16
    max_k_splits: int = 1
    matmul_math_fidelity: MathFidelity | None = None
    segmented_accumulation: bool = False


__all__ = sorted(
    name
    for name, value in list(globals().items())
    if not name.startswith("_")
    and name not in {"annotations", "enum", "math", "dataclass", "field", "Iterable", "Sequence"}
)
