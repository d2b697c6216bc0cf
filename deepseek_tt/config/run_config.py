"""Weight records, placeholders, and the run-config merge (docs/DESIGN.md section 3, stage 3).

A module's three configs are nested dicts with the same key structure:

- model config (``prefill_model_config`` / ``decode_model_config``): op configs whose weight fields hold
  :class:`FromWeightConfig`;
- weight config (``convert_weights``): :class:`WeightRecord` leaves, one per saved tensor;
- state (``create_state``): runtime objects (KV caches, page tables, ...) and the device under
  ``MESH_DEVICE_KEY``.

:func:`create_run_config` merges the three. A ``FromWeightConfig`` meets its ``WeightRecord`` and becomes
the tensor loaded with ``ttnn.load_tensor`` onto the mesh (the state's device); a key present in only one
tree is taken as is; anything else present in two trees is a conflict and raises :class:`RunConfigError`
naming the key path.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from deepseek_tt.config.op_configs import is_op_config

#: State key holding the ``ttnn.MeshDevice`` (at the top level, or at any level for a subtree).
MESH_DEVICE_KEY = "mesh_device"

WeightConfig = dict[str, Any]
ModelConfig = dict[str, Any]
RunConfig = dict[str, Any]


class RunConfigError(ValueError):
    """The model, weight and state trees cannot be merged; the message names the key path."""


@dataclass(frozen=True)
class FromWeightConfig:
    """Placeholder in a model config for a tensor that ``convert_weights`` saved (same key path)."""


@dataclass(frozen=True)
class WeightRecord:
    """One converted tensor on disk: its path (relative to a weight root, or absolute) and the memory
    config it is placed with when loaded."""

    path: str
    memory_config: Any = None

    def resolve(self, weight_root: Path | None) -> Path:
        """The absolute file path; a relative path needs ``weight_root``."""
        path = Path(self.path)
        if path.is_absolute():
            return path
        if weight_root is None:
            raise RunConfigError(f"weight record {self.path!r} is relative but no weight_root was given")
        return Path(weight_root) / path


#: Name used by tt-metal for the same thing.
SavedWeight = WeightRecord


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# --- merge helpers -------------------------------------------------------------------------------


def _merge_state(model: Any, state: Any, path: str) -> Any:
    """Model config + state: a value in both trees is a conflict."""
    if is_op_config(model):
        if state is not None and not isinstance(state, dict):
            raise RunConfigError(f"{path}: state value {state!r} collides with op config {type(model).__name__}")
        merged = _merge_state({f.name: getattr(model, f.name) for f in fields(model)}, state, path)
        return type(model)(**merged)
    if isinstance(model, dict) or (model is None and isinstance(state, dict)):
        model = model or {}
        if state is not None and not isinstance(state, dict):
            raise RunConfigError(f"{path}: state value {type(state).__name__} collides with a config subtree")
        state = state or {}
        out = {}
        for key in list(model) + [k for k in state if k not in model]:
            out[key] = _merge_state(model.get(key), state.get(key), _join(path, key))
        return out
    if isinstance(model, (list, tuple)) and (state is None or isinstance(state, type(model))):
        state_items = list(state) if state is not None else [None] * len(model)
        if len(state_items) != len(model):
            raise RunConfigError(f"{path}: model config has {len(model)} items, state has {len(state_items)}")
        return type(model)(_merge_state(m, s, _join(path, i)) for i, (m, s) in enumerate(zip(model, state_items)))
    if state is None:
        return model
    if model is None:
        return state
    raise RunConfigError(f"{path}: both the model config ({model!r}) and the state ({state!r}) set this key")


def _load(record: WeightRecord, device: Any, weight_root: Path | None, path: str, loaded: dict | None) -> Any:
    from deepseek_tt.backend import ttnn

    file = record.resolve(weight_root)
    memo_key = (str(file), id(device))
    if loaded is not None and memo_key in loaded:
        return loaded[memo_key]
    if not file.is_file():
        raise RunConfigError(f"{path}: weight file {file} does not exist")
    if device is None:
        raise RunConfigError(f"{path}: a weight must be loaded but the state has no {MESH_DEVICE_KEY!r}")
    verify = getattr(loaded, "verify_file", None)  # the weight cache's checksum check (weights.cache.VerifiedLoads)
    if verify is not None:
        verify(file)
    tensor = ttnn.load_tensor(str(file), device=device)
    if record.memory_config is not None and tensor.memory_config() != record.memory_config:
        tensor = ttnn.to_memory_config(tensor, record.memory_config)
    if loaded is not None:
        loaded[memo_key] = tensor
    return tensor


def _merge_weights(
    cfg: Any, weights: Any, device: Any, weight_root: Path | None, path: str, loaded: dict | None, shared: Any = None
) -> Any:
    """(Model config + state) + weight config: each FromWeightConfig meets its WeightRecord (or, with
    ``shared``, the tensor at the same key path of another run config)."""
    if is_op_config(cfg):
        if weights is not None and not isinstance(weights, dict):
            raise RunConfigError(f"{path}: weight entry {weights!r} collides with op config {type(cfg).__name__}")
        shared_fields = {f.name: getattr(shared, f.name) for f in fields(shared)} if is_op_config(shared) else None
        merged = _merge_weights(
            {f.name: getattr(cfg, f.name) for f in fields(cfg)}, weights, device, weight_root, path, loaded, shared_fields
        )
        return type(cfg)(**merged)
    if isinstance(cfg, dict):
        if weights is not None and not isinstance(weights, dict):
            raise RunConfigError(f"{path}: weight entry {weights!r} collides with a config subtree")
        weights = weights or {}
        if cfg.get(MESH_DEVICE_KEY) is not None and not isinstance(cfg[MESH_DEVICE_KEY], dict):
            device = cfg[MESH_DEVICE_KEY]
        extra = [k for k in weights if k not in cfg]
        if extra:
            raise RunConfigError(
                f"{_join(path, extra[0])}: the weight config has an entry the model config does not use"
            )
        shared = shared if isinstance(shared, dict) else {}
        return {
            key: _merge_weights(cfg[key], weights.get(key), device, weight_root, _join(path, key), loaded, shared.get(key))
            for key in cfg
        }
    if isinstance(cfg, (list, tuple)):
        items = list(weights) if weights is not None else [None] * len(cfg)
        if not isinstance(weights, (list, tuple, type(None))) or len(items) != len(cfg):
            raise RunConfigError(f"{path}: the weight config does not match the model config's {len(cfg)} items")
        if shared is not None and not isinstance(shared, (list, tuple)) and cfg and all(isinstance(c, FromWeightConfig) for c in cfg):
            return shared  # the other config merged this list of weights into one tensor (e.g. stacked experts)
        shared_items = list(shared) if isinstance(shared, (list, tuple)) and len(shared) == len(cfg) else [None] * len(cfg)
        return type(cfg)(
            _merge_weights(c, w, device, weight_root, _join(path, i), loaded, sh)
            for i, (c, w, sh) in enumerate(zip(cfg, items, shared_items))
        )
    if isinstance(cfg, FromWeightConfig):
        if shared is not None and not isinstance(shared, (FromWeightConfig, WeightRecord)):
            return shared
        if not isinstance(weights, WeightRecord):
            raise RunConfigError(f"{path}: FromWeightConfig has no WeightRecord in the weight config (got {weights!r})")
        return _load(weights, device, weight_root, path, loaded)
    if weights is None:
        return cfg
    if cfg is None and not isinstance(weights, WeightRecord):
        return weights
    raise RunConfigError(f"{path}: the weight config sets {weights!r} where the model config has {cfg!r}")


def create_run_config(
    model_config: ModelConfig,
    weight_config: WeightConfig,
    state: dict[str, Any] | None,
    *,
    weight_root: Path | None = None,
    loaded: dict | None = None,
    shared: RunConfig | None = None,
) -> RunConfig:
    """Merge a model config, a weight config and a state into a run config (see module docstring).

    ``weight_root`` resolves relative :class:`WeightRecord` paths (the weight cache stores relative ones).
    ``loaded``: a dict shared between calls so that the prefill and decode run configs of one model load
    each weight file once (keyed by file and device); when it has a ``verify_file(path)`` method, each
    file is passed to it before it is loaded. ``shared``: another run config of the same module
    (e.g. prefill when building decode) whose weights, as that config holds them after
    ``finalize_run_config`` (stacked, resharded ...), are reused at the same key paths instead of loading.
    """
    with_state = _merge_state(model_config, state, "")
    top_device = (state or {}).get(MESH_DEVICE_KEY)
    return _merge_weights(with_state, weight_config, top_device, Path(weight_root) if weight_root else None, "", loaded, shared)
