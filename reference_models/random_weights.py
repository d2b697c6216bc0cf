"""Random DeepSeek-V3 weights with realistic scales, generated tensor by tensor.

Scales are chosen so that every feature matters (docs/DESIGN.md section 4): projections have std
1/sqrt(fan_in) (activations keep unit scale, attention logits are far from uniform), norm weights
are near 1 with spread, embeddings have std 1, router logits have unit scale so the sigmoid scores
spread, the correction bias is non-zero and large enough to change expert selection, and the LM head
is a little sharper than unit scale (logits like a trained model's, so top-1 is well defined).

Each tensor gets its own generator seeded from (seed, key), so a tensor does not depend on how many
layers were asked for or in which order tensors are produced.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import torch
from transformers import DeepseekV3Config

from reference_models.state_dict_keys import (
    EMBEDDING,
    LINEAR,
    LM_HEAD,
    NORM,
    ROUTER,
    ROUTER_BIAS,
    WeightSpec,
    official_weight_specs,
)

NORM_SPREAD = 0.1
ROUTER_BIAS_STD = 0.1
LM_HEAD_GAIN = 3.0


ROWS_PER_CHUNK = 4096


def _generator(seed: int, key: str, chunk: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(f"{key}#{chunk}".encode())) % (2**63))


def _scale_and_shift(spec: WeightSpec) -> tuple[float, float]:
    """(std, mean) of each weight kind."""
    if spec.kind == NORM:
        return NORM_SPREAD, 1.0
    if spec.kind == EMBEDDING:
        return 1.0, 0.0
    if spec.kind == ROUTER_BIAS:
        return ROUTER_BIAS_STD, 0.0
    if spec.kind in (LINEAR, ROUTER):
        return spec.fan_in**-0.5, 0.0
    if spec.kind == LM_HEAD:
        return LM_HEAD_GAIN * spec.fan_in**-0.5, 0.0
    raise ValueError(f"unknown weight kind {spec.kind!r}")  # pragma: no cover - all kinds are listed above


def random_tensor(key: str, spec: WeightSpec, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The random value of official tensor ``key`` for ``seed`` (deterministic), as ``dtype``.

    Values are drawn in fp32, ``ROWS_PER_CHUNK`` rows at a time (one generator per chunk), and cast
    chunk by chunk, so a bf16 result never holds a full fp32 copy (the 129280-row embedding of ``full``).
    ``random_tensor(..., dtype=bf16)`` equals ``random_tensor(...).to(bf16)``.
    """
    std, mean = _scale_and_shift(spec)
    rows = spec.shape[0]
    if rows <= ROWS_PER_CHUNK and dtype == torch.float32:  # one chunk: no staging copy
        return torch.randn(spec.shape, generator=_generator(seed, key, 0)).mul_(std).add_(mean)
    out = torch.empty(spec.shape, dtype=dtype)
    for chunk, start in enumerate(range(0, rows, ROWS_PER_CHUNK)):
        stop = min(rows, start + ROWS_PER_CHUNK)
        values = torch.randn((stop - start, *spec.shape[1:]), generator=_generator(seed, key, chunk))
        out[start:stop] = values.mul_(std).add_(mean)
    return out


def iter_random_weights(config: DeepseekV3Config, seed: int) -> Iterator[tuple[str, WeightSpec, torch.Tensor]]:
    """(official key, spec, fp32 tensor) for every tensor of ``config``, one at a time."""
    for key, spec in official_weight_specs(config).items():
        yield key, spec, random_tensor(key, spec, seed)


__all__ = ["LM_HEAD_GAIN", "NORM_SPREAD", "ROUTER_BIAS_STD", "iter_random_weights", "random_tensor"]
