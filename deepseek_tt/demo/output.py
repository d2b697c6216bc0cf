"""The demo's JSON output (docs/DEMO_OUTPUT.md): default path, a write check before the run, atomic write."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from deepseek_tt.demo.errors import DemoInputError

SCHEMA_VERSION = 1


def default_output_path(prompts_file: str | Path) -> Path:
    """``<prompts-file-stem>_output.json`` in the current directory (the seed README's default)."""
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


__all__ = ["SCHEMA_VERSION", "check_output_path", "default_output_path", "write_json_atomic"]
