"""Conversion driver: source weights (checkpoint or random) -> the cached ttnn weight config of the model.

Sources are lazy mappings under the official checkpoint keys: a :class:`LazyStateDict` over a model
directory (fp8 dequantized block-wise on access), or :class:`RandomStateDict`, which generates each
tensor on access with ``reference_models.random_weights`` (the same values ``build_reference_model`` and
the checkpoint writer produce for that seed). ``Model.convert_weights`` reads them one layer (one module)
at a time, so the whole model is never in host memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.modules.base import mesh_shape
from deepseek_tt.weights.cache import CacheResult, WeightCache, checkpoint_identity
from deepseek_tt.weights.lazy_state_dict import LazyStateDict


class RandomStateDict(Mapping[str, torch.Tensor]):
    """Lazy official-key state dict of deterministic random weights for ``hf_config`` and ``seed``."""

    def __init__(self, hf_config: Any, seed: int = 0, prefix: str = "") -> None:
        from reference_models.state_dict_keys import official_weight_specs

        self.hf_config = hf_config
        self.seed = int(seed)
        self._prefix = prefix
        self._specs = official_weight_specs(hf_config)

    def view(self, prefix: str) -> "RandomStateDict":
        prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."
        other = object.__new__(RandomStateDict)
        other.__dict__.update(self.__dict__)
        other._prefix = self._prefix + prefix
        return other

    def __getitem__(self, key: str) -> torch.Tensor:
        from reference_models.random_weights import random_tensor

        full = self._prefix + key
        if full not in self._specs:
            raise KeyError(f"{key!r} is not a weight of this config (full key {full!r})")
        return random_tensor(full, self._specs[full], self.seed)

    def __iter__(self) -> Iterator[str]:
        cut = len(self._prefix)
        return (k[cut:] for k in self._specs if k.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for k in self._specs if k.startswith(self._prefix))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (self._prefix + key) in self._specs


def random_generator_identity() -> str:
    """Hash of the random-weight generator's source: an entry made before its draws changed stops matching."""
    import hashlib
    import inspect

    import reference_models.random_weights as generator

    return hashlib.sha256(inspect.getsource(generator).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WeightSource:
    """Where a model's weights come from: a checkpoint directory (``model_path``) or deterministic random
    weights (``random_seed``), exactly one of them. Resolved once: the cache's fingerprint
    (:meth:`identity`, computed on first use and kept) and the converter's input (:meth:`state_dict`) both
    come from it, so a caller that checks the cache and then loads reads the checkpoint's headers once."""

    model_path: Path | None = None
    random_seed: int | None = None
    _identity: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.model_path is None) == (self.random_seed is None):
            raise ValueError("WeightSource: give exactly one of model_path or random_seed")
        if self.model_path is not None:
            object.__setattr__(self, "model_path", Path(self.model_path))

    @classmethod
    def of(cls, model_path: str | Path | None, random_weights: bool, seed: int) -> "WeightSource":
        """The source a runtime's ``load(model_path, ..., random_weights, seed)`` names."""
        return cls(random_seed=int(seed)) if random_weights else cls(model_path=Path(model_path))  # type: ignore[arg-type]

    def identity(self) -> dict[str, Any]:
        """The weights' part of the cache fingerprint (checkpoint file headers, or seed and generator)."""
        if self._identity is None:
            if self.model_path is not None:
                identity = checkpoint_identity(self.model_path)
            else:
                identity = {"random": {"seed": int(self.random_seed), "generator": random_generator_identity()}}  # type: ignore[arg-type]
            object.__setattr__(self, "_identity", identity)
        return self._identity  # type: ignore[return-value]

    def state_dict(self, hf_config: Any) -> Mapping[str, torch.Tensor]:
        """The lazy official-key state dict of these weights."""
        if self.model_path is not None:
            return LazyStateDict(self.model_path, dequantize=True, dtype=torch.float32)
        return RandomStateDict(hf_config, int(self.random_seed))  # type: ignore[arg-type]

    def cache(self, hf_config: Any, mesh: tuple[int, int], cache_dir: Path, dtype_policy: DtypePolicy | str | None = None,
              layout: Mapping[str, Any] | None = None) -> WeightCache:
        """The cache entry of these weights for ``hf_config``, ``mesh`` and the dtype policy; ``layout``: what
        else tells the entry apart (the pipelined model's stage split). Reads nothing but checkpoint headers."""
        identity = {**self.identity(), **(layout or {})}
        return WeightCache(Path(cache_dir), hf_config, get_dtype_policy(dtype_policy), tuple(mesh), identity)


def load_or_convert_model_weights(
    hf_config: Any,
    mesh_device: Any,
    cache_dir: Path,
    *,
    model_path: Path | None = None,
    random_seed: int | None = None,
    source: WeightSource | None = None,
    dtype_policy: DtypePolicy | str | None = None,
    recalculate: bool = False,
    progress: bool = True,
    verify_checksums: bool | None = None,
    reason: str | None = None,
) -> CacheResult:
    """The model's weight config from the cache, converting (and caching) it when needed.

    Exactly one source: ``model_path`` (a checkpoint directory), ``random_seed`` (random weights) or
    ``source`` (either, resolved already).
    The returned weight config has paths relative to ``result.entry_dir``. ``verify_checksums=False``
    skips the up-front checksum pass (for callers that load through ``result.verified_loads()``).
    """
    from deepseek_tt.modules.model import Model

    policy = get_dtype_policy(dtype_policy)
    if source is None:
        source = WeightSource(model_path, random_seed)
    elif model_path is not None or random_seed is not None:
        raise ValueError("load_or_convert_model_weights: give source or model_path / random_seed, not both")
    cache = source.cache(hf_config, mesh_shape(mesh_device), cache_dir, policy)

    def convert(out_dir: Path) -> dict[str, Any]:
        return Model.convert_weights(hf_config, source.state_dict(hf_config), out_dir, mesh_device, dtype_policy=policy, progress=progress)

    return cache.load_or_convert(convert, recalculate=recalculate, verify_checksums=verify_checksums, reason=reason)
