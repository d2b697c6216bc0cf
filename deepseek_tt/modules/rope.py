"""Rotary position embedding for MLA: YaRN frequencies, its softmax-scale correction, and the
cos / sin / transformation-matrix tensors that ``ttnn.experimental.rotary_embedding_llama`` consumes.

DeepSeek-V3 rotates the ``qk_rope_head_dim`` part of q and k in interleaved pairs ``(x0, x1), (x2, x3)``
(``rope_interleave=True``), which is exactly what ``rotary_embedding_llama`` does with a pair-swap
transformation matrix and cos / sin repeated per pair (``[t0, t0, t1, t1, ...]``, the "Meta" layout).
The rotated values stay interleaved, whereas transformers returns them as ``[even | odd]`` halves; the
two differ by one fixed permutation of the rope dims (:func:`interleaved_to_halves`), applied to q and k
alike, so attention scores are identical. The KVPE cache therefore holds interleaved rope values.

Semantics follow transformers' ``DeepseekV3RotaryEmbedding`` / ``_compute_yarn_parameters`` and
``yarn_apply_mscale`` (written out here, not imported, so the model does not depend on transformers).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from deepseek_tt.backend import ttnn


# --- pure torch: frequencies and scales ------------------------------------------------------------


def rope_parameters(hf_config: Any) -> dict[str, Any]:
    """The config's RoPE parameters as one dict with ``rope_type`` and ``rope_theta`` always set.

    Accepts transformers' ``rope_parameters`` (v5) or the official ``rope_scaling`` + ``rope_theta``.
    A missing or ``None`` scaling means plain RoPE (``rope_type == "default"``).
    """
    params = getattr(hf_config, "rope_parameters", None)
    if not params:
        params = dict(getattr(hf_config, "rope_scaling", None) or {})
    params = dict(params)
    params.setdefault("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    rope_type = params.get("rope_type") or params.get("type") or "default"
    params["rope_type"] = rope_type
    if rope_type not in ("default", "yarn"):
        raise ValueError(f"rope type {rope_type!r} in the model config is not supported (expected 'yarn' or 'default')")
    return params


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def inv_freq_and_attention_factor(hf_config: Any) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (fp32, ``qk_rope_head_dim // 2``) and the factor cos / sin are multiplied by.

    YaRN blends interpolated (``1 / (factor * base^(2i/d))``) and extrapolated frequencies with a linear
    ramp between the correction dims of ``beta_fast`` and ``beta_slow`` rotations over the original
    context; its attention factor is ``mscale(factor, mscale) / mscale(factor, mscale_all_dim)``.
    """
    params = rope_parameters(hf_config)
    dim = int(hf_config.qk_rope_head_dim)
    base = float(params["rope_theta"])
    exponents = torch.arange(0, dim, 2, dtype=torch.float32) / dim
    pos_freqs = base**exponents
    if params["rope_type"] == "default":
        return 1.0 / pos_freqs, 1.0

    factor = params.get("factor")
    original = params["original_max_position_embeddings"]
    if factor is None:
        factor = hf_config.max_position_embeddings / original
    factor = float(factor)
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = _yarn_mscale(factor)
    beta_fast = params.get("beta_fast") or 32
    beta_slow = params.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation_weight = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * ramp + (1.0 / pos_freqs) * extrapolation_weight
    return inv_freq, float(attention_factor)


def softmax_scale(hf_config: Any) -> float:
    """``qk_head_dim^-0.5``, times ``mscale(factor, mscale_all_dim)^2`` when YaRN is on (the correction
    for the sharper attention of interpolated positions; 0.13523 for DeepSeek-V3)."""
    scale = (hf_config.qk_nope_head_dim + hf_config.qk_rope_head_dim) ** -0.5
    params = rope_parameters(hf_config)
    if params["rope_type"] != "default":
        mscale_all_dim = params.get("mscale_all_dim", 0)
        if mscale_all_dim:
            m = _yarn_mscale(float(params["factor"]), mscale_all_dim)
            scale = scale * m * m
    return float(scale)


def cos_sin_interleaved(hf_config: Any, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (fp32, ``[len(positions), qk_rope_head_dim]``) in the pair layout ``[t0, t0, t1, t1, ...]``,
    with YaRN's attention factor applied."""
    inv_freq, attention_factor = inv_freq_and_attention_factor(hf_config)
    # fp64 angles: at positions ~1e5 an fp32 angle is off by up to 1e-2 rad.
    angles = positions.to(torch.float64).reshape(-1, 1) * inv_freq.to(torch.float64).reshape(1, -1)
    angles = angles.repeat_interleave(2, dim=-1)
    return (angles.cos() * attention_factor).float(), (angles.sin() * attention_factor).float()


def rotation_matrix() -> torch.Tensor:
    """The ``[1, 1, 32, 32]`` pair-swap matrix T with ``(x @ T)[2i] = -x[2i+1]``, ``(x @ T)[2i+1] = x[2i]``."""
    mat = torch.zeros(1, 1, ttnn.TILE_SIZE, ttnn.TILE_SIZE)
    even, odd = torch.arange(0, ttnn.TILE_SIZE, 2), torch.arange(1, ttnn.TILE_SIZE, 2)
    mat[..., even, odd] = 1.0
    mat[..., odd, even] = -1.0
    return mat


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Torch reference of ``rotary_embedding_llama``: ``x * cos + (x @ T) * sin`` on the last dim."""
    swapped = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
    return x * cos + swapped * sin


def interleaved_to_halves(x: torch.Tensor) -> torch.Tensor:
    """Reorder the last dim from pairs ``[x0, x1, x2, x3, ...]`` to transformers' ``[x0, x2, ... | x1, x3, ...]``."""
    return torch.cat((x[..., 0::2], x[..., 1::2]), dim=-1)


def halves_to_interleaved(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`interleaved_to_halves`."""
    half = x.shape[-1] // 2
    return torch.stack((x[..., :half], x[..., half:]), dim=-1).flatten(-2)


# --- device tensors ----------------------------------------------------------------------------------


class RotarySetup:
    """Device-side RoPE tensors for one model: a transformation matrix, and cos / sin per call.

    Prefill: one user's positions ``0..S-1``, replicated on every device. Decode: the users of row r
    sit on the sequence dim (``[1, 1, U, D]`` on each device of row r), so ``rotary_embedding_llama``
    runs in its prefill layout on ``[1, heads, U, D]`` with every user at its own position.
    """

    def __init__(self, hf_config: Any, mesh_device: Any, users_per_row: int = 32):
        self.hf_config = hf_config
        self.mesh_device = mesh_device
        self.users_per_row = int(users_per_row)
        self.dim = int(hf_config.qk_rope_head_dim)
        if self.dim % 2:
            raise ValueError(f"qk_rope_head_dim must be even for RoPE, got {self.dim}")
        self.max_positions = int(hf_config.max_position_embeddings)
        self.trans_matrix = self._to_device(rotation_matrix(), ttnn.ReplicateTensorToMesh(mesh_device))

    def _to_device(self, tensor: torch.Tensor, mapper: Any, on_device: bool = True) -> Any:
        """bfloat16 TILE, in DRAM on the mesh, or a host tensor (``on_device=False``) for ``ttnn.to_device``."""
        placement = {"device": self.mesh_device, "memory_config": ttnn.DRAM_MEMORY_CONFIG} if on_device else {}
        return ttnn.from_torch(tensor, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, mesh_mapper=mapper, **placement)

    def _check_positions(self, positions: torch.Tensor) -> None:
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= self.max_positions):
            raise ValueError(
                f"RoPE positions must lie in [0, max_position_embeddings={self.max_positions}), "
                f"got [{int(positions.min())}, {int(positions.max())}]"
            )

    def prefill_tensors(self, seq_len: int, start_pos: int = 0) -> dict[str, Any]:
        """cos / sin ``[1, 1, seq_len, D]`` for positions ``start_pos .. start_pos + seq_len - 1`` (replicated)."""
        positions = torch.arange(start_pos, start_pos + int(seq_len))
        self._check_positions(positions)
        cos, sin = cos_sin_interleaved(self.hf_config, positions)
        mapper = ttnn.ReplicateTensorToMesh(self.mesh_device)
        return {
            "cos_matrix": self._to_device(cos[None, None], mapper),
            "sin_matrix": self._to_device(sin[None, None], mapper),
            "trans_matrix": self.trans_matrix,
        }

    def decode_tensors(self, positions: torch.Tensor, *, on_device: bool = True) -> dict[str, Any]:
        """cos / sin ``[1, 1, U, D]`` per device for global decode positions ``[rows * U]`` (row r: users
        ``r*U .. r*U+U-1``). Negative positions (empty slots) get position 0. ``on_device=False``: cos / sin
        are host tensors (a decode step's inputs, copied to the device once; ``trans_matrix`` stays the
        device one)."""
        rows = int(tuple(self.mesh_device.shape)[0])
        positions = torch.as_tensor(positions).reshape(-1).long()
        if positions.numel() != rows * self.users_per_row:
            raise ValueError(
                f"decode positions: expected {rows} rows x {self.users_per_row} users = "
                f"{rows * self.users_per_row} entries, got {positions.numel()}"
            )
        positions = positions.clamp_min(0)
        self._check_positions(positions)
        cos, sin = cos_sin_interleaved(self.hf_config, positions)
        shape = (rows, 1, self.users_per_row, self.dim)
        mapper = ttnn.ShardTensor2dMesh(self.mesh_device, dims=(0, None), mesh_shape=tuple(self.mesh_device.shape))
        return {
            "cos_matrix": self._to_device(cos.reshape(shape), mapper, on_device),
            "sin_matrix": self._to_device(sin.reshape(shape), mapper, on_device),
            "trans_matrix": self.trans_matrix,
        }


__all__ = [
    "RotarySetup",
    "apply_rope_interleaved",
    "cos_sin_interleaved",
    "halves_to_interleaved",
    "interleaved_to_halves",
    "inv_freq_and_attention_factor",
    "rope_parameters",
    "rotation_matrix",
    "softmax_scale",
]
