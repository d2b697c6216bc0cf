"""Where the demo's model, tokenizer and cache come from (seed README defaults).

``--model-path``: the flag, else ``$DEEPSEEK_V3_HF_MODEL``, else the embedded trained model
(``reference_models.embedded.embedded_model_path()``); while that is not available, a random-weights
checkpoint written once under the cache directory (logged as such): the ``tiny`` preset for the torch
reference, ``galaxy-tiny`` for the TT-NN model (whose rotary op needs head dims that are multiples of 32).
``--cache-dir``: the flag, else ``$DEEPSEEK_V3_CACHE``, else ``generated/deepseek_v3``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from deepseek_tt.demo.errors import DemoInputError

log = logging.getLogger("deepseek_tt.demo")

MODEL_PATH_ENV = "DEEPSEEK_V3_HF_MODEL"
CACHE_DIR_ENV = "DEEPSEEK_V3_CACHE"
DEFAULT_CACHE_DIR = Path("generated/deepseek_v3")
FALLBACK_PRESETS = {"reference": "tiny", "tt": "galaxy-tiny"}
FALLBACK_SEED = 0


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else DEFAULT_CACHE_DIR


def _embedded_model_path() -> Path | None:
    try:
        from reference_models.embedded import embedded_model_path
    except ImportError:
        return None
    try:
        path = embedded_model_path()
    except Exception as exc:  # the embedded model exists but cannot be used: say so, then fall back
        log.warning("embedded model unavailable (%s)", exc)
        return None
    return Path(path) if path is not None else None


def _fallback_checkpoint(cache_dir: Path, preset: str) -> Path:
    from reference_models.checkpoint import write_checkpoint

    target = cache_dir / f"fallback_{preset}_seed{FALLBACK_SEED}"
    if not (target / "config.json").is_file():
        log.info("writing a %r preset checkpoint to %s", preset, target)
        write_checkpoint(preset, target, seed=FALLBACK_SEED, overwrite=True)
    return target


def resolve_model_path(model_path: str | Path | None, cache_dir: Path, runtime: str = "reference") -> tuple[Path, str]:
    """The model directory and where it came from (``flag``, ``env``, ``embedded``, ``fallback-<preset>``)."""
    if model_path is not None:
        return Path(model_path), "flag"
    env = os.environ.get(MODEL_PATH_ENV)
    if env:
        return Path(env), "env"
    embedded = _embedded_model_path()
    if embedded is not None:
        return embedded, "embedded"
    preset = FALLBACK_PRESETS[runtime]
    log.warning(
        "no --model-path, $%s unset and the embedded trained model is not available: "
        "using random weights of the %r preset instead (its generations are meaningless)",
        MODEL_PATH_ENV,
        preset,
    )
    return _fallback_checkpoint(cache_dir, preset), f"fallback-{preset}"


def check_model_dir(path: Path, source: str) -> dict[str, Any]:
    """The model directory's config.json as a dict; ``DemoInputError`` naming the directory otherwise."""
    from deepseek_tt.weights.errors import CheckpointError
    from deepseek_tt.weights.hf_config import read_config_dict

    flag = "--model-path" if source == "flag" else f"${MODEL_PATH_ENV}" if source == "env" else "model"
    try:
        return read_config_dict(path)
    except CheckpointError as exc:
        raise DemoInputError(f"{flag} {path}: {exc}") from None


def load_tokenizer(path: Path, flag: str = "--model-path"):
    """The model directory's tokenizer (offline); ``DemoInputError`` when it has none."""
    from transformers import AutoTokenizer

    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise DemoInputError(f"{flag} {path}: no tokenizer files (tokenizer.json / tokenizer_config.json)")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise DemoInputError(f"{flag} {path}: tokenizer does not load ({type(exc).__name__}: {exc})") from None


__all__ = ["check_model_dir", "load_tokenizer", "resolve_cache_dir", "resolve_model_path"]
