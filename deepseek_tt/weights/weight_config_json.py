"""A weight config's JSON form, as the weight cache's manifest stores it (``weights/cache.py``).

Leaves are ``{"__weight__": "<relative path>"}``, lists ``{"__list__": [...]}``, dicts stay dicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepseek_tt.config.run_config import WeightRecord


def weight_config_to_json(weight_config: Any, root: Path | None = None) -> Any:
    """JSON view of a weight config; paths under ``root`` are written relative to it."""
    if isinstance(weight_config, WeightRecord):
        path = Path(weight_config.path)
        if root is not None and path.is_absolute():
            path = path.relative_to(root)
        return {"__weight__": str(path)}
    if isinstance(weight_config, dict):
        return {str(k): weight_config_to_json(v, root) for k, v in weight_config.items()}
    if isinstance(weight_config, (list, tuple)):
        return {"__list__": [weight_config_to_json(v, root) for v in weight_config]}
    if weight_config is None:
        return None
    raise TypeError(f"weight configs hold WeightRecord leaves only, got {type(weight_config).__name__}")


def weight_config_from_json(data: Any) -> Any:
    """Inverse of :func:`weight_config_to_json` (paths stay relative; pass ``weight_root`` when merging).

    Memory configs are not serialized: loaded tensors keep the memory config they were dumped with.
    """
    if isinstance(data, dict) and "__weight__" in data:
        return WeightRecord(path=data["__weight__"])
    if isinstance(data, dict) and "__list__" in data:
        return [weight_config_from_json(v) for v in data["__list__"]]
    if isinstance(data, dict):
        return {k: weight_config_from_json(v) for k, v in data.items()}
    if data is None:
        return None
    raise ValueError(f"not a serialized weight config entry: {data!r}")


def iter_weight_records(weight_config: Any, path: str = "") -> Iterator[tuple[str, WeightRecord]]:
    """Yield ``(key_path, WeightRecord)`` for every leaf of a weight config."""
    if isinstance(weight_config, WeightRecord):
        yield path, weight_config
    elif isinstance(weight_config, dict):
        for key, value in weight_config.items():
            yield from iter_weight_records(value, f"{path}.{key}" if path else str(key))
    elif isinstance(weight_config, (list, tuple)):
        for i, value in enumerate(weight_config):
            yield from iter_weight_records(value, f"{path}.{i}" if path else str(i))


__all__ = ["iter_weight_records", "weight_config_from_json", "weight_config_to_json"]
