"""What ``TtModel.load`` and ``PipelinedTtModel.load`` share: the Hugging Face config they load with
(:func:`resolve_load_config`), the device-memory check before anything is converted (:func:`check_load_fits`),
the source of the weights (:func:`resolve_weight_source`) and the weight-cache load with per-file checksum
verification and the rebuild of a corrupt entry (:func:`load_through_cache`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT")

from deepseek_tt.config.environment import CACHE_DIR_ENV

#: Default longest sequence (prompt + generation) a runtime model is built for.
DEFAULT_MAX_SEQ_LEN = 4096
#: Seed of ``random_weights=True`` models (the same values on the TT and the reference side).
RANDOM_WEIGHTS_SEED = 0


def resolve_load_config(who: str, model_path: str | Path | None, cache_dir: str | Path | None, random_weights: bool,
                        hf_config: Any = None) -> Any:
    """``hf_config`` if given, else ``model_path``'s config, else (``random_weights``) the ``full`` preset cut to
    one dense layer; ``ValueError`` naming ``who`` when neither a model nor random weights, or no cache dir."""
    if hf_config is None:
        if model_path is not None:
            from deepseek_tt.weights.hf_config import load_hf_config

            hf_config = load_hf_config(model_path)
        elif random_weights:
            from deepseek_tt.runtime.reference_model import random_weights_config

            hf_config = random_weights_config()
        else:
            raise ValueError(f"{who}: model_path is required unless random_weights=True")
    if cache_dir is None:
        raise ValueError(f"{who}: cache_dir is required (--cache-dir or ${CACHE_DIR_ENV})")
    return hf_config


def check_load_fits(hf_config: Any, dtype_policy: Any, mesh_device: Any, parallelism: str, max_batch_size: int | None,
                    max_seq_len: int) -> None:
    """The memory check of ``runtime.mesh_fit.check_device_memory`` for a load's geometry (the model's own users
    per row: ``kv_cache.users_per_row_of``), before any weight is converted."""
    from deepseek_tt.modules import kv_cache
    from deepseek_tt.modules.base import mesh_shape
    from deepseek_tt.runtime.mesh_fit import check_device_memory

    users_per_row = kv_cache.users_per_row_of(max_batch_size, mesh_shape(mesh_device)[0])
    check_device_memory(hf_config, dtype_policy, mesh_device, parallelism, max_seq_len, users_per_row)


def resolve_weight_source(who: str, model_path: str | Path | None, random_weights: bool, seed: int,
                          weight_source: Any = None) -> Any:
    """The ``WeightSource`` a ``load`` call names: ``weight_source`` when the caller resolved it already (its
    checkpoint identity is then reused, not read again), which must name the same weights; else a new one."""
    from deepseek_tt.weights.convert import WeightSource

    named = WeightSource.of(model_path, random_weights, seed)
    if weight_source is None:
        return named
    if weight_source != named:
        raise ValueError(f"{who}: weight_source {weight_source} does not name the weights of the other arguments ({named})")
    return weight_source


def load_through_cache(
    who: str,
    load_or_convert: Callable[[bool, str | None], Any],
    build: Callable[[Any, dict], ModelT],
    *,
    recalculate: bool,
) -> ModelT:
    """Build a model from its weight-cache entry, verifying every file against the manifest's checksum as it
    is loaded; a corrupt file is logged (path named), the entry rebuilt and the model built again.

    ``load_or_convert(recalculate, reason) -> CacheResult`` finds or converts the entry (with
    ``verify_checksums=False``: the loads verify); ``build(result, loads)`` constructs the model, loading the
    weights through ``loads`` (a ``weights.cache.VerifiedLoads``, the run configs' ``loaded`` memo). The
    returned model carries ``cache_result``."""
    from deepseek_tt.backend import ttnn
    from deepseek_tt.weights.cache import CorruptCacheFileError

    result = load_or_convert(recalculate, None)
    logger.info("%s: weights %s in %.1f s (%s): %s", who, "converted" if result.converted else "loaded from cache",
                result.seconds, result.reason, result.entry_dir)
    loads = result.verified_loads()
    try:
        model = build(result, loads)
    except CorruptCacheFileError as exc:
        logger.warning("weight cache entry %s is corrupt: %s", result.entry_dir, exc)
        for tensor in loads.values():  # the weights loaded before the corrupt file
            ttnn.deallocate(tensor)
        loads.clear()
        result = load_or_convert(True, f"rebuilding a corrupt entry ({exc})")
        model = build(result, result.verified_loads())
    model.cache_result = result  # type: ignore[attr-defined]
    return model
