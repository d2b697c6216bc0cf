"""The demo's JSON output (docs/DEMO_OUTPUT.md): default path, a write check before the run, the ``config``
block, atomic write."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek_tt.demo.errors import DemoInputError

if TYPE_CHECKING:
    from deepseek_tt.demo.resolve import ResolvedRun

SCHEMA_VERSION = 1


def default_output_path(prompts_file: str | Path) -> Path:
    """``<prompts-file-stem>_output.json`` in the current directory (the original demo's default, docs/DEMO_CONTRACT.md section 3)."""
    return Path(f"{Path(prompts_file).stem}_output.json")


def check_output_path(path: str | Path) -> Path:
    """Fail now (before the model runs) when ``path`` cannot be written; nothing is created or changed."""
    path = Path(path)
    if path.is_dir():
        raise DemoInputError(f"--output-path {path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DemoInputError(f"--output-path {path}: directory {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise DemoInputError(f"--output-path {path}: directory {parent} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    if path.exists() and not os.access(path, os.W_OK):
        raise DemoInputError(f"--output-path {path}: exists and is not writable")
    return path


def _is_model_file(path: Path) -> bool:
    """A file a model directory is read for: config, generation config, index, shards, tokenizer."""
    return path.suffix == ".safetensors" or path.name.startswith("tokenizer") or path.name in {
        "config.json", "generation_config.json", "model.safetensors.index.json", "special_tokens_map.json"
    }


def check_output_not_an_input(path: Path, inputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """``DemoInputError`` when ``path`` is an input of the same run, or one of the files of a directory
    input (the model's config, shards, tokenizer): the output would replace it."""
    target = Path(os.path.abspath(path))
    for flag, given in inputs:
        if given is None:
            continue
        source = Path(os.path.abspath(given))
        same = target == source or (target.exists() and source.exists() and os.path.samefile(target, source))
        inside = source.is_dir() and target.resolve().is_relative_to(source.resolve()) and _is_model_file(target)
        if same or inside:
            what = "is" if same else "lies inside"
            raise DemoInputError(f"--output-path {path}: {what} the {flag} input {given}; the output would replace it")


def config_block(run: "ResolvedRun") -> dict[str, Any]:
    """The output's ``config`` block (docs/DEMO_OUTPUT.md): the options as resolved for this run."""
    from deepseek_tt.config.mesh import format_mesh_shape

    o = run.options
    return {
        "model_path": str(run.model.path) if run.model.path else None,
        "model_source": run.model.source,
        "cache_dir": str(run.cache),
        "runtime": run.runtime,
        "backend": run.backend,
        "mesh_shape": format_mesh_shape(run.mesh),
        "generator": o.generator,
        "enable_trace": o.enable_trace,
        "max_new_tokens": o.max_new_tokens,
        "random_weights": o.random_weights,
        "single_layer": o.single_layer,
        "dtype_policy": o.dtype_policy,
        "sampling": {"temperature": o.temperature, "top_k": o.top_k, "top_p": o.top_p, "seed": o.seed},
    }


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` to a temporary file next to ``path`` and rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


__all__ = ["SCHEMA_VERSION", "check_output_not_an_input", "config_block", "check_output_path", "default_output_path", "write_json_atomic"]
