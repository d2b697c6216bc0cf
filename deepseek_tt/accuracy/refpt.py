"""Reader of teacher-forcing reference files (``.refpt`` / ``.pt``, docs/DESIGN.md section 6).

Accepted layouts (a ``torch.save`` dict):

- v0 (the original demo's): ``reference_tokens`` LongTensor [1, T] (or [T]) and optional ``top5_tokens``
  LongTensor [T, 5]; the prompt is the first ``T // 2 + 1`` tokens unless a prompt length is given.
- v1, single entry: the v0 keys plus any of ``prompt_tokens``, ``generated_tokens``, ``tf_prompt_len``,
  ``metadata``; either at top level or as the only element of an ``entries`` list. When
  ``reference_tokens`` is absent it is ``prompt_tokens`` followed by ``generated_tokens``, and the prompt
  length defaults to ``tf_prompt_len`` (else the length of ``prompt_tokens``). A multi-entry ``entries``
  list is read only with an ``entry_index``.

Anything else raises :class:`RefptError` with the file name and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

TOP_K = 5


class RefptError(ValueError):
    """A reference file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class RefptReference:
    """Ground-truth tokens ([T]) and optional reference top-5 ([T, 5]; row i predicts token i)."""

    path: Path
    tokens: torch.Tensor
    top5: torch.Tensor | None
    version: int
    default_prompt_len: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.tokens.numel())

    def prompt_len(self, override: int | None = None) -> int:
        """The teacher-forcing prompt length: ``override`` when given, else the file's default."""
        n = self.default_prompt_len if override is None else int(override)
        if not 1 <= n < self.length:
            raise RefptError(f"{self.path}: prompt length {n} must be in [1, {self.length - 1}] for {self.length} reference tokens")
        return n


def _tensor(path: Path, entry: dict[str, Any], key: str) -> torch.Tensor | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except Exception as exc:
            raise RefptError(f"{path}: {key!r} is not a tensor ({type(value).__name__})") from exc
    if value.dtype.is_floating_point or value.dtype == torch.bool or value.is_complex():
        raise RefptError(f"{path}: {key!r} must hold integer token ids, got {value.dtype}")
    return value.long()


def _prompt_len_value(path: Path, value: Any) -> int:
    """``tf_prompt_len`` as an int: a Python int or a one-element integer tensor, nothing else."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not (value.dtype.is_floating_point or value.dtype == torch.bool or value.is_complex()):
        return int(value.item())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise RefptError(f"{path}: 'tf_prompt_len' must be an integer, got {type(value).__name__} {str(value)[:40]!r}")


def _flat_tokens(path: Path, key: str, value: torch.Tensor) -> torch.Tensor:
    if value.dim() == 2 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 1:
        raise RefptError(f"{path}: {key!r} must have shape [1, T] or [T], got {list(value.shape)}")
    return value


def _select_entry(path: Path, data: Any, entry_index: int | None) -> tuple[dict[str, Any], int]:
    if not isinstance(data, dict):
        raise RefptError(f"{path}: expected a dict with 'reference_tokens' (v0) or a single-entry v1 file, got {type(data).__name__}")
    if "entries" in data:
        entries = data["entries"]
        if not isinstance(entries, (list, tuple)) or not entries:
            what = "an empty list" if isinstance(entries, (list, tuple)) else type(entries).__name__
            raise RefptError(f"{path}: 'entries' must be a non-empty list of entry dicts, got {what}")
        if entry_index is None:
            if len(entries) != 1:
                raise RefptError(
                    f"{path}: 'entries' holds {len(entries)} references; expected exactly one entry unless an entry "
                    f"index (0..{len(entries) - 1}) picks one"
                )
            entry_index = 0
        if not -len(entries) <= int(entry_index) < len(entries):
            raise RefptError(f"{path}: entry index {entry_index} out of range for {len(entries)} entries")
        entry = entries[int(entry_index)]
        if not isinstance(entry, dict):
            raise RefptError(f"{path}: 'entries'[{entry_index}] must be a dict, got {type(entry).__name__}")
        return {**{k: v for k, v in data.items() if k != "entries"}, **entry}, 1
    if entry_index is not None and entry_index not in (0, -1):
        raise RefptError(f"{path}: entry index {entry_index} given, but the file holds a single reference (no 'entries' list)")
    v1_keys = {"prompt_tokens", "generated_tokens", "tf_prompt_len", "metadata"}
    return data, 1 if v1_keys & set(data) else 0


def load_refpt(path: str | Path, vocab_size: int | None = None, entry_index: int | None = None) -> RefptReference:
    """Read ``path``; with ``vocab_size``, token ids at or above it are an error. A multi-entry v1 file
    needs ``entry_index`` (which entry to read)."""
    path = Path(path)
    if not path.is_file():
        raise RefptError(f"{path}: reference file not found")
    if path.stat().st_size == 0:
        raise RefptError(f"{path}: empty file (0 bytes), not a torch.save file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for foreign or damaged files
        first_line = next(iter(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()), "").strip()[:200]
        raise RefptError(f"{path}: not a readable torch.save file ({type(exc).__name__}{': ' + first_line if first_line else ''})") from None
    entry, version = _select_entry(path, data, entry_index)

    tokens = _tensor(path, entry, "reference_tokens")
    prompt = _tensor(path, entry, "prompt_tokens")
    generated = _tensor(path, entry, "generated_tokens")
    if tokens is None:
        if prompt is None or generated is None:
            raise RefptError(f"{path}: missing 'reference_tokens' (or both 'prompt_tokens' and 'generated_tokens'); keys: {sorted(map(str, entry))}")
        tokens = torch.cat([_flat_tokens(path, "prompt_tokens", prompt), _flat_tokens(path, "generated_tokens", generated)])
    tokens = _flat_tokens(path, "reference_tokens", tokens)
    if tokens.numel() < 2:
        raise RefptError(f"{path}: 'reference_tokens' needs at least 2 tokens, got {tokens.numel()}")

    top5 = _tensor(path, entry, "top5_tokens")
    if top5 is not None and (top5.dim() != 2 or top5.shape[0] != tokens.numel() or top5.shape[1] != TOP_K):
        raise RefptError(f"{path}: 'top5_tokens' must have shape [{tokens.numel()}, {TOP_K}], got {list(top5.shape)}")

    if vocab_size is not None:
        for key, value in (("reference_tokens", tokens), ("top5_tokens", top5)):
            if value is not None and value.numel() and (int(value.max()) >= vocab_size or int(value.min()) < 0):
                bad = int(value.max()) if int(value.max()) >= vocab_size else int(value.min())
                raise RefptError(f"{path}: {key!r} holds token id {bad}, outside the model's vocabulary [0, {vocab_size})")

    default_len = tokens.numel() // 2 + 1
    if entry.get("tf_prompt_len") is not None:
        default_len = _prompt_len_value(path, entry["tf_prompt_len"])
    elif prompt is not None and version == 1:
        default_len = int(_flat_tokens(path, "prompt_tokens", prompt).numel())
    metadata = entry.get("metadata") if isinstance(entry.get("metadata"), dict) else {}
    return RefptReference(path, tokens, top5, version, default_len, dict(metadata))


__all__ = ["RefptError", "RefptReference", "load_refpt"]
