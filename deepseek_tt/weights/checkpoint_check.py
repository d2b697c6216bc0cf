"""An up-front check of a safetensors model directory against its config.json, reading headers only.

Before anything heavy runs (conversion can take minutes), every shard named by the index is opened and
its safetensors header parsed: a missing shard, a file that is not safetensors (garbage) or shorter than
its header says (truncated), and any weight whose presence or shape disagrees with config.json (hidden
size, layer count, vocabulary, expert widths ...) is a :class:`CheckpointError` naming the file and key.
Layers past ``num_hidden_layers + num_nextn_predict_layers`` mean the config counts fewer layers than the
weights hold, which is refused too (the MTP layers of the official checkpoint are allowed).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from deepseek_tt.weights.errors import CheckpointError, MissingCheckpointFileError
from deepseek_tt.weights.lazy_state_dict import INDEX_NAME, SINGLE_FILE_NAME

#: The safetensors format caps its JSON header at 100 MB.
MAX_HEADER_BYTES = 100_000_000


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """``{key: {"dtype", "shape", "data_offsets"}}`` of a shard; ``CheckpointError`` if it is not a whole
    safetensors file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path}: not a safetensors file ({size} bytes, shorter than its 8-byte header length)")
            length = struct.unpack("<Q", prefix)[0]
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(f"{path}: not a safetensors file (header length {length} does not fit its {size} bytes; truncated or garbage)")
            raw = handle.read(length)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file (its header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    data_size = size - 8 - length
    for key, info in header.items():
        try:
            start, end = (int(v) for v in info["data_offsets"])
            shape = [int(d) for d in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: not a safetensors file (bad header entry for {key!r})") from None
        if not 0 <= start <= end <= data_size:
            raise CheckpointError(
                f"{path}: truncated: tensor {key!r} ends at byte {end} of the data, the file holds {data_size} data bytes"
            )
        info["shape"] = shape
    return header


def _weight_map(model_dir: Path) -> dict[str, str]:
    index = model_dir / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a safetensors index with a 'weight_map' ({exc!r})") from None
        if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index}: 'weight_map' must be a non-empty object of key -> shard file name")
        return {str(k): v for k, v in weight_map.items()}
    if (model_dir / SINGLE_FILE_NAME).is_file():
        return {key: SINGLE_FILE_NAME for key in read_safetensors_header(model_dir / SINGLE_FILE_NAME)}
    raise MissingCheckpointFileError(f"{model_dir}: no {INDEX_NAME} (nor a single {SINGLE_FILE_NAME}); not a safetensors model directory")


def validate_checkpoint(model_dir: str | Path, hf_config: Any) -> None:
    """Raise :class:`CheckpointError` (naming file and key) when the directory's weights are incomplete,
    corrupt in a way the headers show, or disagree with ``hf_config``; reads only index and headers."""
    from reference_models.state_dict_keys import layer_index, official_weight_specs

    model_dir = Path(model_dir)
    weight_map = _weight_map(model_dir)
    headers: dict[str, dict[str, dict[str, Any]]] = {}
    for shard in sorted(set(weight_map.values())):
        path = model_dir / shard
        if not path.is_file():
            first = next(k for k, v in weight_map.items() if v == shard)
            raise MissingCheckpointFileError(f"{path}: shard missing (listed in {INDEX_NAME} for {first!r})")
        headers[shard] = read_safetensors_header(path)
    for key, shard in weight_map.items():
        if key not in headers[shard]:
            raise CheckpointError(f"{model_dir / shard}: has no tensor {key!r} ({INDEX_NAME} says it does)")
    config_name = model_dir / "config.json"
    specs = official_weight_specs(hf_config)
    for key, spec in specs.items():
        if key not in weight_map:
            raise CheckpointError(
                f"{model_dir}: weight {key!r} is missing, but {config_name.name} (num_hidden_layers="
                f"{hf_config.num_hidden_layers}, first_k_dense_replace={hf_config.first_k_dense_replace}, "
                f"n_routed_experts={hf_config.n_routed_experts}) needs it"
            )
        shape = tuple(headers[weight_map[key]][key]["shape"])
        if shape != tuple(spec.shape):
            raise CheckpointError(
                f"{model_dir / weight_map[key]}: {key!r} has shape {list(shape)}, but {config_name.name} "
                f"(hidden_size={hf_config.hidden_size}, vocab_size={hf_config.vocab_size}) gives {list(spec.shape)}"
            )
    layer_limit = int(hf_config.num_hidden_layers) + int(getattr(hf_config, "num_nextn_predict_layers", 0) or 0)
    extra = sorted({layer for layer in map(layer_index, weight_map) if layer is not None and layer >= layer_limit})
    if extra:
        raise CheckpointError(
            f"{model_dir}: the weights hold decoder layer {extra[0]}, but {config_name.name} has num_hidden_layers="
            f"{hf_config.num_hidden_layers} (num_nextn_predict_layers={getattr(hf_config, 'num_nextn_predict_layers', 0)})"
        )


__all__ = ["read_safetensors_header", "validate_checkpoint"]
