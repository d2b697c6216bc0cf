"""A read-only, lazy state dict over a Hugging Face safetensors model directory.

``LazyStateDict(model_dir)`` maps official key names to tensors without loading anything up front: it
reads ``model.safetensors.index.json`` (or a single ``model.safetensors``), opens a shard with
safetensors' mmap-backed ``safe_open`` the first time one of its keys is read, and reads only the
requested tensor. ``view(prefix)`` gives a prefix-stripped sub-mapping, ``select_layers(...)`` keeps only
some decoder layers, and with ``dequantize=True`` fp8 weights come back multiplied by their
``weight_scale_inv`` blocks (the scale keys are then hidden).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from deepseek_tt.weights.errors import CheckpointError, MissingCheckpointFileError
from deepseek_tt.weights.fp8 import DEFAULT_BLOCK, FP8_DTYPE, dequantize_fp8_blocks, scale_grid_shape
from deepseek_tt.weights.hf_config import CONFIG_NAME, check_model_dir

INDEX_NAME = "model.safetensors.index.json"
SINGLE_FILE_NAME = "model.safetensors"
SCALE_SUFFIX = "_scale_inv"


def _layer_of(key: str) -> int | None:
    if not key.startswith("model.layers."):
        return None
    part = key[len("model.layers.") :].split(".", 1)[0]
    return int(part) if part.isdigit() else None


class _Checkpoint:
    """What all views of one directory share: the key -> shard map and the open shard handles."""

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = check_model_dir(model_dir)
        self.weight_map = self._read_weight_map()
        self.handles: dict[str, Any] = {}
        self.block = self._read_block_size()

    def _read_weight_map(self) -> dict[str, str]:
        index = self.model_dir / INDEX_NAME
        single = self.model_dir / SINGLE_FILE_NAME
        if index.is_file():
            try:
                data = json.loads(index.read_text())
                weight_map = data["weight_map"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{index}: not a safetensors index with a 'weight_map' ({exc!r})") from exc
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index}: 'weight_map' is empty or not an object")
            return {str(k): str(v) for k, v in weight_map.items()}
        if single.is_file():
            with safe_open(str(single), framework="pt") as handle:
                return {key: SINGLE_FILE_NAME for key in handle.keys()}
        raise MissingCheckpointFileError(
            f"{self.model_dir}: no {INDEX_NAME} (nor a single {SINGLE_FILE_NAME}); not a safetensors model directory"
        )

    def _read_block_size(self) -> tuple[int, int]:
        config = self.model_dir / CONFIG_NAME
        try:
            quant = json.loads(config.read_text()).get("quantization_config") or {}
            rows, cols = quant.get("weight_block_size", DEFAULT_BLOCK)
            return int(rows), int(cols)
        except (OSError, ValueError, TypeError):
            return DEFAULT_BLOCK

    def handle(self, key: str) -> Any:
        shard = self.weight_map[key]
        if shard not in self.handles:
            path = self.model_dir / shard
            if not path.is_file():
                raise MissingCheckpointFileError(f"{path}: shard missing (listed in {INDEX_NAME} for {key!r})")
            self.handles[shard] = safe_open(str(path), framework="pt")
        return self.handles[shard]

    def dtype_of(self, key: str) -> str:
        return self.handle(key).get_slice(key).get_dtype()

    def shape_of(self, key: str) -> tuple[int, ...]:
        return tuple(self.handle(key).get_slice(key).get_shape())


class LazyStateDict(Mapping[str, torch.Tensor]):
    """Lazy ``Mapping[str, torch.Tensor]`` over a safetensors model directory.

    Args:
        model_dir: a Hugging Face model directory (``model.safetensors.index.json`` + shards).
        dequantize: return fp8 weights multiplied by their ``weight_scale_inv`` (and hide the scale keys).
        dtype: dtype of dequantized weights (other tensors keep their stored dtype).
    """

    def __init__(self, model_dir: str | Path, *, dequantize: bool = False, dtype: torch.dtype = torch.float32) -> None:
        self._ckpt = _Checkpoint(model_dir)
        self._prefix = ""
        self._layers: frozenset[int] | None = None
        self._keep_non_layer = True
        self.dequantize = dequantize
        self.dtype = dtype

    # -- views ---------------------------------------------------------------------------------
    def _derive(self, **changes: Any) -> LazyStateDict:
        other = object.__new__(LazyStateDict)
        other.__dict__.update(self.__dict__)
        other.__dict__.update(changes)
        return other

    def view(self, prefix: str) -> LazyStateDict:
        """The keys under ``prefix`` (a trailing ``.`` is added), with the prefix stripped."""
        prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."
        return self._derive(_prefix=self._prefix + prefix)

    def select_layers(self, layers: Iterable[int], keep_non_layer_keys: bool = False) -> LazyStateDict:
        """Only the keys of decoder layers ``layers`` (plus embedding/norm/head when asked)."""
        return self._derive(_layers=frozenset(int(i) for i in layers), _keep_non_layer=keep_non_layer_keys)

    # -- introspection -------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self._ckpt.model_dir

    @property
    def block_size(self) -> tuple[int, int]:
        return self._ckpt.block

    @property
    def opened_shards(self) -> frozenset[str]:
        """File names of the shards opened so far (by this view or any view of the same directory)."""
        return frozenset(self._ckpt.handles)

    def shard_of(self, key: str) -> str:
        """The shard file name that holds ``key``."""
        return self._ckpt.weight_map[self._full_key(key)]

    def stored_dtype(self, key: str) -> str:
        """The safetensors dtype name of ``key`` as stored (e.g. ``F8_E4M3``), reading only the header."""
        return self._ckpt.dtype_of(self._full_key(key))

    def stored_shape(self, key: str) -> tuple[int, ...]:
        return self._ckpt.shape_of(self._full_key(key))

    # -- Mapping -------------------------------------------------------------------------------
    def _visible(self, full_key: str) -> bool:
        if not full_key.startswith(self._prefix):
            return False
        if self.dequantize and full_key.endswith(SCALE_SUFFIX):
            return False
        if self._layers is not None:
            layer = _layer_of(full_key)
            if layer is None:
                return self._keep_non_layer
            return layer in self._layers
        return True

    def _full_key(self, key: str) -> str:
        full = self._prefix + key
        if full not in self._ckpt.weight_map or not self._visible(full):
            raise KeyError(f"{key!r} is not in this view of {self._ckpt.model_dir} (full key {full!r})")
        return full

    def __iter__(self) -> Iterator[str]:
        cut = len(self._prefix)
        return (k[cut:] for k in self._ckpt.weight_map if self._visible(k))

    def __len__(self) -> int:
        return sum(1 for k in self._ckpt.weight_map if self._visible(k))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (self._prefix + key) in self._ckpt.weight_map and self._visible(self._prefix + key)

    def __getitem__(self, key: str) -> torch.Tensor:
        full = self._full_key(key)
        tensor = self._ckpt.handle(full).get_tensor(full)
        if self.dequantize and tensor.dtype == FP8_DTYPE:
            return self._dequantize(full, tensor)
        return tensor

    def _dequantize(self, full: str, weight: torch.Tensor) -> torch.Tensor:
        scale_key = full + SCALE_SUFFIX
        if scale_key not in self._ckpt.weight_map:
            raise CheckpointError(
                f"{self._ckpt.model_dir}: fp8 weight {full!r} has no scale {scale_key!r} in {INDEX_NAME}"
            )
        scale = self._ckpt.handle(scale_key).get_tensor(scale_key)
        expected = scale_grid_shape(weight.shape, self.block_size)
        if tuple(scale.shape) != expected:
            raise CheckpointError(
                f"{self._ckpt.model_dir}: {scale_key!r} has shape {tuple(scale.shape)}, expected {expected} for "
                f"weight shape {tuple(weight.shape)} with {self.block_size[0]}x{self.block_size[1]} blocks"
            )
        return dequantize_fp8_blocks(weight, scale, self.block_size, self.dtype)

    def validate(self) -> None:
        """Check every visible fp8 weight has a scale of the right shape (reads headers only)."""
        for key in list(self):
            full = self._prefix + key
            if self._ckpt.dtype_of(full) != "F8_E4M3":
                continue
            scale_key = full + SCALE_SUFFIX
            if scale_key not in self._ckpt.weight_map:
                raise CheckpointError(f"{self._ckpt.model_dir}: fp8 weight {full!r} has no scale {scale_key!r}")
            rows, cols = self._ckpt.shape_of(full)
            expected = (math.ceil(rows / self.block_size[0]), math.ceil(cols / self.block_size[1]))
            if self._ckpt.shape_of(scale_key) != expected:
                raise CheckpointError(
                    f"{self._ckpt.model_dir}: {scale_key!r} has shape {self._ckpt.shape_of(scale_key)}, expected {expected}"
                )

    def close(self) -> None:
        """Release every open shard (of all views of this directory); later reads reopen them."""
        for handle in self._ckpt.handles.values():
            handle.__exit__(None, None, None)
        self._ckpt.handles.clear()

    def __enter__(self) -> LazyStateDict:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LazyStateDict({str(self._ckpt.model_dir)!r}, prefix={self._prefix!r}, "
            f"layers={sorted(self._layers) if self._layers is not None else 'all'}, dequantize={self.dequantize})"
        )


__all__ = ["INDEX_NAME", "SINGLE_FILE_NAME", "LazyStateDict"]
