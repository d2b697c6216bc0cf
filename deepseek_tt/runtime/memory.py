"""Device memory held by a loaded model, per device: weights (and KV caches), measured from the tensors
themselves (shape, dtype, layout of each shard), not from a formula.

``weight_bytes_per_device(model)`` works for ``TtModel`` (every weight on every device of the mesh) and
``PipelinedTtModel`` (a stage's weights only on its row): a list of ``R * C`` byte counts in device order
(index ``r * C + c``).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Iterator

from deepseek_tt.config.op_configs import is_op_config

#: bytes per element of each dtype (bfp: 16 mantissa bytes + 1 shared exponent per 16 values, as stored)
ELEMENT_BYTES = {
    "bfloat16": 2.0,
    "float32": 4.0,
    "bfloat8_b": 1088 / 1024,
    "bfloat4_b": 576 / 1024,
    "uint32": 4.0,
    "int32": 4.0,
    "uint16": 2.0,
    "uint8": 1.0,
}
#: run-config keys that hold runtime state, not weights
STATE_KEYS = frozenset({"kvpe_cache", "expert_mapping"})
KV_KEYS = frozenset({"kvpe_cache"})


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", None) or str(dtype)
    return str(name).split(".")[-1].lower()


def tensor_bytes_per_device(tensor: Any) -> int:
    """Bytes one device's shard of ``tensor`` occupies (TILE: tile-padded shape)."""
    from deepseek_tt.backend import ttnn

    tile = tensor.layout == ttnn.TILE_LAYOUT
    shape = tensor.padded_shape if tile else tensor.shape
    volume = 1
    for d in range(len(shape)):
        volume *= int(shape[d])
    return int(round(volume * ELEMENT_BYTES[_dtype_name(tensor.dtype)]))


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "padded_shape") and hasattr(value, "dtype") and hasattr(value, "is_allocated")


def iter_tensors(cfg: Any, *, keys: frozenset[str] | None = None, skip: frozenset[str] = frozenset(), _key: str = "") -> Iterator[Any]:
    """Allocated tensors in a run-config tree: under ``keys`` only (None: all), never under ``skip``."""
    if _is_tensor(cfg):
        if (keys is None or _key in keys) and cfg.is_allocated():
            yield cfg
        return
    if is_op_config(cfg):
        cfg = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key in skip:
                continue
            inside = keys is None or key in keys
            yield from iter_tensors(value, keys=None if inside else keys, skip=skip, _key=key)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            yield from iter_tensors(value, keys=keys, skip=skip, _key=_key)


def bytes_per_device(placed: list[tuple[Any, list[int]]], num_devices: int) -> list[int]:
    """Sum of each distinct tensor's shard bytes over the devices it is placed on."""
    total = [0] * num_devices
    seen: set[int] = set()
    for tensor, devices in placed:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        size = tensor_bytes_per_device(tensor)
        for d in devices:
            total[d] += size
    return total


def tensor_placements(model: Any, kind: str) -> tuple[list[tuple[Any, list[int]]], int]:
    """(tensor, device indices) of a model's ``weights`` or ``kv_cache`` tensors, and the device count.
    A model with its own ``tensor_placements`` (the pipelined one) answers itself; a ``TtModel`` keeps
    every tensor on every device of its mesh."""
    own = getattr(model, "tensor_placements", None)
    if callable(own):
        return own(kind), int(model.mesh_device.get_num_devices())
    devices = list(range(int(model.mesh_device.get_num_devices())))
    cfg = model._prefill_cfg
    tensors = iter_tensors(cfg, skip=STATE_KEYS) if kind == "weights" else iter_tensors(cfg, keys=KV_KEYS)
    return [(t, devices) for t in tensors], len(devices)


def weight_bytes_per_device(model: Any) -> list[int]:
    """Per-device weight bytes of a loaded ``TtModel`` or ``PipelinedTtModel``."""
    return bytes_per_device(*tensor_placements(model, "weights"))


def kv_cache_bytes_per_device(model: Any) -> list[int]:
    """Per-device KV-cache bytes of a loaded ``TtModel`` or ``PipelinedTtModel``."""
    return bytes_per_device(*tensor_placements(model, "kv_cache"))


def memory_report(model: Any) -> dict[str, Any]:
    """The demo's ``memory`` block: per-device weight and KV bytes (max and min over devices, and the weight
    bytes of each mesh row's devices: a row's columns hold equal bytes under bp and pp alike)."""
    weights, kv = weight_bytes_per_device(model), kv_cache_bytes_per_device(model)
    cols = int(tuple(model.mesh_device.shape)[1])
    return {
        "devices": len(weights),
        "weight_bytes_per_device_max": max(weights),
        "weight_bytes_per_device_min": min(weights),
        "weight_bytes_per_device_by_row": [max(weights[r : r + cols]) for r in range(0, len(weights), cols)],
        "kv_cache_bytes_per_device_max": max(kv),
        "weight_bytes_total": sum(weights),
    }


__all__ = [
    "ELEMENT_BYTES",
    "bytes_per_device",
    "iter_tensors",
    "kv_cache_bytes_per_device",
    "memory_report",
    "tensor_bytes_per_device",
    "weight_bytes_per_device",
]
