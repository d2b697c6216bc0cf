"""Op configs: one dataclass per ttnn call, whose fields are exactly that call's keyword arguments.

Model code expands them straight into the call::

    ttnn.linear(x, **cfg["w1"])          # cfg["w1"] is a LinearConfig

Only fields that are not ``None`` are passed (the mapping protocol below skips them), so every config
can leave optional arguments to ttnn's defaults. Weight fields (``input_tensor_b``, ``weight``) hold a
:class:`~deepseek_tt.config.run_config.FromWeightConfig` placeholder in a model config and the loaded
``ttnn.Tensor`` in a run config. Field values are ttnn objects (memory configs, enums, ...); this module
never imports ttnn so that it can be used before a backend is selected.

:func:`config_to_json` turns any nested config into plain JSON data (for cache keys and reports).
"""

from __future__ import annotations

import enum
import functools
import json
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Iterator


@dataclass
class OpConfig:
    """Base of all op configs: behaves as a read-only mapping of its non-``None`` fields."""

    def keys(self) -> tuple[str, ...]:
        return tuple(name for name in _field_names(type(self)) if getattr(self, name) is not None)

    def __getitem__(self, key: str) -> Any:
        if key not in _field_set(type(self)):
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        return getattr(self, key)

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((name, getattr(self, name)) for name in self.keys())

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A config class's field names in declaration order (looked up on every ``**cfg`` of every op call)."""
    return tuple(f.name for f in fields(cls))


@functools.cache
def _field_set(cls: type) -> frozenset[str]:
    return frozenset(_field_names(cls))


def is_op_config(obj: Any) -> bool:
    """True for an instance of an :class:`OpConfig` subclass."""
    return isinstance(obj, OpConfig) and is_dataclass(obj)


# --- matmuls -------------------------------------------------------------------------------------


@dataclass
class LinearConfig(OpConfig):
    """``ttnn.linear(input_tensor_a, input_tensor_b, *, bias, transpose_a, transpose_b, memory_config,
    dtype, program_config, activation, compute_kernel_config, core_grid)``; the weight is ``input_tensor_b``."""

    input_tensor_b: Any = None
    bias: Any = None
    transpose_a: bool | None = None
    transpose_b: bool | None = None
    memory_config: Any = None
    dtype: Any = None
    program_config: Any = None
    activation: str | None = None
    compute_kernel_config: Any = None
    core_grid: Any = None


# --- elementwise ---------------------------------------------------------------------------------


@dataclass
class MulConfig(OpConfig):
    """``ttnn.mul(a, b, *, memory_config, dtype, input_tensor_a_activations, input_tensor_b_activations)``."""

    memory_config: Any = None
    dtype: Any = None
    input_tensor_a_activations: list[Any] | None = None
    input_tensor_b_activations: list[Any] | None = None


@dataclass
class AddConfig(OpConfig):
    """``ttnn.add(a, b, *, memory_config, dtype, input_tensor_a_activations)``."""

    memory_config: Any = None
    dtype: Any = None
    input_tensor_a_activations: list[Any] | None = None


@dataclass
class UnaryConfig(OpConfig):
    """A unary eltwise op (``ttnn.silu``, ``ttnn.sigmoid``, ...): ``(input_tensor, *, memory_config)``."""

    memory_config: Any = None


@dataclass
class TypecastConfig(OpConfig):
    """``ttnn.typecast(input_tensor, dtype, *, memory_config)``."""

    dtype: Any = None
    memory_config: Any = None


# --- collectives ---------------------------------------------------------------------------------


@dataclass
class AllGatherConfig(OpConfig):
    """``ttnn.all_gather(input_tensor, dim, *, cluster_axis, memory_config, num_links, topology)``."""

    dim: int = 3
    cluster_axis: int | None = None
    memory_config: Any = None
    num_links: int | None = None
    topology: Any = None


@dataclass
class ReduceScatterConfig(OpConfig):
    """``ttnn.reduce_scatter(input_tensor, dim, *, cluster_axis, memory_config, num_links, topology)``."""

    dim: int = 3
    cluster_axis: int | None = None
    memory_config: Any = None
    num_links: int | None = None
    topology: Any = None


@dataclass
class AllReduceConfig(OpConfig):
    """``ttnn.all_reduce(input_tensor, *, cluster_axis, memory_config, num_links, topology)``."""

    cluster_axis: int | None = None
    memory_config: Any = None
    num_links: int | None = None
    topology: Any = None


# --- normalisation, embedding, selection ---------------------------------------------------------


@dataclass
class RMSNormConfig(OpConfig):
    """``ttnn.rms_norm(input_tensor, *, epsilon, weight, bias, residual_input_tensor, memory_config,
    program_config, compute_kernel_config)``."""

    epsilon: float = 1e-12
    weight: Any = None
    bias: Any = None
    residual_input_tensor: Any = None
    memory_config: Any = None
    program_config: Any = None
    compute_kernel_config: Any = None


@dataclass
class RMSNormPreAllGatherConfig(OpConfig):
    """``ttnn.rms_norm_pre_all_gather(input_tensor, *, dtype, residual_input_tensor, compute_kernel_config,
    program_config, memory_config)``: the per-device sum of squares."""

    dtype: Any = None
    residual_input_tensor: Any = None
    compute_kernel_config: Any = None
    program_config: Any = None
    memory_config: Any = None


@dataclass
class RMSNormPostAllGatherConfig(OpConfig):
    """``ttnn.rms_norm_post_all_gather(input_tensor, stats, *, epsilon, weight, bias, memory_config,
    program_config, compute_kernel_config, dtype)``."""

    epsilon: float = 1e-12
    weight: Any = None
    bias: Any = None
    memory_config: Any = None
    program_config: Any = None
    compute_kernel_config: Any = None
    dtype: Any = None


@dataclass
class EmbeddingConfig(OpConfig):
    """``ttnn.embedding(input_tensor, weight, *, padding_idx, layout, dtype, memory_config)``."""

    weight: Any = None
    padding_idx: int | None = None
    layout: Any = None
    dtype: Any = None
    memory_config: Any = None


@dataclass
class TopKConfig(OpConfig):
    """``ttnn.topk(input_tensor, k, dim, largest, sorted, *, memory_config)``."""

    k: int = 1
    dim: int = -1
    largest: bool = True
    sorted: bool = True
    memory_config: Any = None


# --- data movement -------------------------------------------------------------------------------


@dataclass
class PermuteConfig(OpConfig):
    """``ttnn.permute(input_tensor, dims, *, memory_config)``."""

    dims: tuple[int, ...] | None = None
    memory_config: Any = None


@dataclass
class ConcatConfig(OpConfig):
    """``ttnn.concat(tensors, dim, *, memory_config)``."""

    dim: int = 0
    memory_config: Any = None


# --- mixture of experts ---------------------------------------------------------------------------


@dataclass
class SumConfig(OpConfig):
    """``ttnn.sum(input_tensor, dim, keepdim, *, memory_config)``."""

    dim: int | None = None
    keepdim: bool = False
    memory_config: Any = None


@dataclass
class RepeatConfig(OpConfig):
    """``ttnn.repeat(input_tensor, repeat_dims, *, memory_config)``."""

    repeat_dims: Any = None
    memory_config: Any = None


@dataclass
class ScatterConfig(OpConfig):
    """``ttnn.scatter(input, dim, index, src, *, memory_config)``: index and src are given at the call."""

    dim: int = -1
    memory_config: Any = None


@dataclass
class GatherConfig(OpConfig):
    """``ttnn.gather(input, dim, index, *, memory_config)``: index is given at the call."""

    dim: int = -1
    memory_config: Any = None


@dataclass
class MeshPartitionConfig(OpConfig):
    """``ttnn.mesh_partition(input_tensor, dim, cluster_axis, *, memory_config)``: each device keeps its
    slice of ``dim`` according to its coordinate along ``cluster_axis``."""

    dim: int = 0
    cluster_axis: int | None = None
    memory_config: Any = None


@dataclass
class AllToAllDispatchConfig(OpConfig):
    """``ttnn.all_to_all_dispatch(input_tensor, expert_indices_tensor, expert_mapping_tensor, *, cluster_axis,
    num_links, topology, memory_config, output_concat_dim)``."""

    cluster_axis: int | None = None
    num_links: int | None = None
    topology: Any = None
    memory_config: Any = None
    output_concat_dim: int | None = None


@dataclass
class AllToAllCombineConfig(OpConfig):
    """``ttnn.all_to_all_combine(input_tensor, expert_metadata_tensor, expert_mapping_tensor, *, local_reduce,
    num_links, topology, memory_config, cluster_axis, output_shard_dim)``."""

    cluster_axis: int | None = None
    local_reduce: bool | None = None
    num_links: int | None = None
    topology: Any = None
    memory_config: Any = None
    output_shard_dim: int | None = None


# --- JSON ----------------------------------------------------------------------------------------


def config_to_json(obj: Any) -> Any:
    """Plain-JSON view of a config tree (dicts, lists, op configs, ttnn enums and config objects).

    Tensors become ``{"tensor": shape, "dtype": ...}``, devices ``{"mesh_device": [rows, cols]}``; the
    result is deterministic, so ``json.dumps(config_to_json(cfg), sort_keys=True)`` is a cache key.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return f"{type(obj).__name__}.{obj.name}"
    if isinstance(obj, dict):
        return {str(k): config_to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [config_to_json(v) for v in obj]
    if isinstance(obj, type):  # a module class kept in a config (the model's block classes)
        return f"{obj.__module__}.{obj.__qualname__}"
    if is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"__type__": type(obj).__name__}
        out.update({f.name: config_to_json(getattr(obj, f.name)) for f in fields(obj)})
        return out
    type_name = type(obj).__name__
    if type_name == "Tensor" and hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return {"tensor": [int(d) for d in obj.shape], "dtype": config_to_json(obj.dtype)}
    if type_name == "MeshDevice" and hasattr(obj, "shape"):
        return {"mesh_device": [int(d) for d in obj.shape]}
    if hasattr(obj, "name") and hasattr(obj, "value") and not callable(obj.name):  # pybind enums
        return f"{type_name}.{obj.name}"
    public = {k: v for k, v in getattr(obj, "__dict__", {}).items() if not k.startswith("_")}
    if public:
        return {"__type__": type_name, **{k: config_to_json(v) for k, v in sorted(public.items())}}
    return {"__type__": type_name, "repr": repr(obj)}


def config_fingerprint_text(obj: Any) -> str:
    """Canonical JSON text of a config tree (sorted keys, no whitespace) for hashing."""
    return json.dumps(config_to_json(obj), sort_keys=True, separators=(",", ":"))
