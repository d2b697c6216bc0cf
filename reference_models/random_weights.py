"""Random DeepSeek-V3 weights with realistic scales, generated tensor by tensor.

Scales are chosen so that every feature matters (DESIGN.md section 4): projections have std
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


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(key.encode())) % (2**63))


def random_tensor(key: str, spec: WeightSpec, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The random value of official tensor ``key`` for ``seed`` (deterministic)."""
    gen = _generator(seed, key)
    if spec.kind == NORM:
        t = torch.randn(spec.shape, generator=gen, dtype=dtype).mul_(NORM_SPREAD).add_(1.0)
    elif spec.kind == EMBEDDING:
        t = torch.randn(spec.shape, generator=gen, dtype=dtype)
    elif spec.kind == ROUTER_BIAS:
        t = torch.randn(spec.shape, generator=gen, dtype=dtype).mul_(ROUTER_BIAS_STD)
    elif spec.kind in (LINEAR, ROUTER):
        t = torch.randn(spec.shape, generator=gen, dtype=dtype).mul_(spec.fan_in**-0.5)
    elif spec.kind == LM_HEAD:
        t = torch.randn(spec.shape, generator=gen, dtype=dtype).mul_(LM_HEAD_GAIN * spec.fan_in**-0.5)
    else:  # pragma: no cover - all kinds are listed above
        raise ValueError(f"{key}: unknown weight kind {spec.kind!r}")
    return t


def iter_random_weights(config: DeepseekV3Config, seed: int) -> Iterator[tuple[str, WeightSpec, torch.Tensor]]:
    """(official key, spec, fp32 tensor) for every tensor of ``config``, one at a time."""
    for key, spec in official_weight_specs(config).items():
        yield key, spec, random_tensor(key, spec, seed)


__all__ = ["LM_HEAD_GAIN", "NORM_SPREAD", "ROUTER_BIAS_STD", "iter_random_weights", "random_tensor"]
