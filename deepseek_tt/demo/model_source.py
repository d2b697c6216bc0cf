"""Where the demo's model, tokenizer and cache come from (the original demo's defaults, docs/DEMO_CONTRACT.md section 1).

``--model-path``: the flag, else ``$DEEPSEEK_V3_HF_MODEL``, else the embedded trained model
(``reference_models.embedded.embedded_model_path()``); while that is not available, a random-weights
checkpoint written once under the cache directory (logged as such): the ``tiny`` preset for the torch
reference, ``galaxy-tiny`` for the TT-NN model (whose rotary op needs head dims that are multiples of 32).
``--cache-dir``: the flag, else ``$DEEPSEEK_V3_CACHE``, else ``generated/deepseek_v3``.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek_tt.config.environment import CACHE_DIR_ENV, MODEL_PATH_ENV
from deepseek_tt.demo.errors import DemoInputError

log = logging.getLogger("deepseek_tt.demo")

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


@dataclass(frozen=True)
class ModelChoice:
    """The model of a run, resolved once and passed down to the loader: its directory (``None`` for
    random weights), where it came from (``flag``, ``env``, ``embedded``, ``fallback-<preset>``,
    ``random-weights``) and its HF config (``None``: the loader reads it from ``path``)."""

    path: Path | None
    source: str
    hf_config: Any = None

    @property
    def random_weights(self) -> bool:
        return self.path is None

    @functools.cached_property
    def weights(self) -> Any:
        """The ``weights.convert.WeightSource`` of this model (one per run: the demo's cache check and the
        loader share its checkpoint identity)."""
        from deepseek_tt.runtime.model_config import RANDOM_WEIGHTS_SEED
        from deepseek_tt.weights.convert import WeightSource

        return WeightSource.of(self.path, self.random_weights, RANDOM_WEIGHTS_SEED)

    @property
    def flag(self) -> str:
        """How the user named the model (for error messages)."""
        return model_flag(self.source)


def choose_model(
    model_path: str | Path | None, cache_dir: Path, runtime: str, random_weights: bool, random_weights_preset: str
) -> ModelChoice:
    """The run's model: random weights of ``random_weights_preset`` (one dense layer), else the model
    directory of :func:`resolve_model_path` with its config loaded and its weights checked against it."""
    if random_weights:
        from deepseek_tt.runtime.reference_model import random_weights_config

        return ModelChoice(None, "random-weights", random_weights_config(random_weights_preset, num_layers=1))
    path, source = resolve_model_path(model_path, cache_dir, runtime)
    return ModelChoice(path, source, checked_hf_config(path, source))


def checked_hf_config(model_dir: Path, source: str) -> Any:
    """The model directory's HF config, after an up-front check of its weights against it (headers only)."""
    from deepseek_tt.weights.checkpoint_check import validate_checkpoint
    from deepseek_tt.weights.errors import CheckpointError
    from deepseek_tt.weights.hf_config import load_hf_config

    try:
        hf_config = load_hf_config(model_dir)
        validate_checkpoint(model_dir, hf_config)
    except CheckpointError as exc:
        raise DemoInputError(f"{model_flag(source)} {model_dir}: {exc}") from None
    return hf_config


def cache_dir_flag(cache_dir: str | Path | None) -> str:
    """How the user named the cache directory (for error messages)."""
    if cache_dir is not None:
        return "--cache-dir"
    if os.environ.get(CACHE_DIR_ENV):
        return f"${CACHE_DIR_ENV}"
    return f"the default --cache-dir ({DEFAULT_CACHE_DIR}; set --cache-dir or ${CACHE_DIR_ENV})"


def _writable_dir(path: Path) -> bool:
    """Whether a directory can be created in ``path`` (a probe, removed at once; works for root too)."""
    probe = path / f".deepseek-tt-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


def check_cache_dir(path: Path, flag: str, needs_write: bool) -> None:
    """``DemoInputError`` when the cache directory is a file, lies under a file, or cannot be written
    although weights must be converted into it (``needs_write``). Nothing is created."""
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if path.exists() and not path.is_dir():
        raise DemoInputError(f"{flag} {path}: is a file, not a directory")
    if existing is not None and not existing.is_dir():
        raise DemoInputError(f"{flag} {path}: {existing} is a file, not a directory")
    if needs_write and existing is not None and not _writable_dir(existing):
        where = "is not writable" if existing == path else f"cannot be created ({existing} is not writable)"
        raise DemoInputError(f"{flag} {path}: {where}, and it holds no converted weights for this model and mesh")


def model_flag(source: str) -> str:
    """How the user named the model directory (for error messages)."""
    return "--model-path" if source == "flag" else f"${MODEL_PATH_ENV}" if source == "env" else "model"


def load_tokenizer(path: Path, flag: str = "--model-path"):
    """The model directory's tokenizer (offline); ``DemoInputError`` when it has none."""
    from transformers import AutoTokenizer

    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise DemoInputError(f"{flag} {path}: no tokenizer files (tokenizer.json / tokenizer_config.json)")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise DemoInputError(f"{flag} {path}: tokenizer does not load ({type(exc).__name__}: {exc})") from None


__all__ = [
    "CACHE_DIR_ENV",
    "MODEL_PATH_ENV",
    "ModelChoice",
    "cache_dir_flag",
    "check_cache_dir",
    "checked_hf_config",
    "choose_model",
    "load_tokenizer",
    "model_flag",
    "resolve_cache_dir",
    "resolve_model_path",
]
