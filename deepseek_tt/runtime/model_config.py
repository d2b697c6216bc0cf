"""The Hugging Face config a TT model facade loads with (shared by ``TtModel`` and ``PipelinedTtModel``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek_tt.config.environment import CACHE_DIR_ENV


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
