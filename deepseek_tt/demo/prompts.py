"""Prompt files of the original demo (docs/DEMO_CONTRACT.md section 2): ``[{"prompt": ...}, ...]`` or ``{"prompts": [{"prompt": ...}, ...]}``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepseek_tt.demo.errors import DemoInputError

LAYOUTS = 'a JSON list of {"prompt": "..."} objects, or {"prompts": [{"prompt": "..."}, ...]}'


def _entries(path: Path, data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("prompts"), list):
        return data["prompts"]
    raise DemoInputError(f"--prompts-file {path}: neither layout; expected {LAYOUTS}")


def load_prompts_file(path: str | Path, num_prompts: int | None = None) -> list[str]:
    """The prompts of ``path`` in file order, the first ``num_prompts`` of them when given."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DemoInputError(f"--prompts-file {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DemoInputError(f"--prompts-file {path}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DemoInputError(f"--prompts-file {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    entries = _entries(path, data)
    prompts = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str):
            raise DemoInputError(f"--prompts-file {path}: entry {i} is not an object with a string \"prompt\"; expected {LAYOUTS}")
        if not entry["prompt"].strip():
            raise DemoInputError(f"--prompts-file {path}: entry {i} has an empty \"prompt\"")
        prompts.append(entry["prompt"])
    if not prompts:
        raise DemoInputError(f"--prompts-file {path}: holds no prompts")
    if num_prompts is not None:
        if not 1 <= num_prompts <= len(prompts):
            raise DemoInputError(f"--num-prompts {num_prompts}: must be between 1 and {len(prompts)} (the prompts in {path})")
        prompts = prompts[:num_prompts]
    return prompts


__all__ = ["LAYOUTS", "load_prompts_file"]
