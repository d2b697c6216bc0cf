"""Mesh shapes by name (``MESH_DEVICE``) or as ``RxC``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

MESH_DEVICE_ENV = "MESH_DEVICE"

#: Tenstorrent systems and the mesh each one presents.
NAMED_MESH_SHAPES: dict[str, tuple[int, int]] = {
    "N150": (1, 1),
    "N300": (1, 2),
    "T3K": (1, 8),
    "TG": (4, 8),
    "DUAL": (8, 8),
    "QUAD": (16, 8),
}

_SHAPE_RE = re.compile(r"^\(?\s*(\d+)\s*[x,X*]\s*(\d+)\s*\)?$")


def parse_mesh_shape(text: str) -> tuple[int, int]:
    """``"TG"`` / ``"4x8"`` / ``"(4,8)"`` -> ``(4, 8)``; anything else raises ``ValueError`` naming it."""
    cleaned = text.strip()
    if cleaned.upper() in NAMED_MESH_SHAPES:
        return NAMED_MESH_SHAPES[cleaned.upper()]
    match = _SHAPE_RE.match(cleaned)
    if match:
        rows, cols = int(match.group(1)), int(match.group(2))
        if rows >= 1 and cols >= 1:
            return rows, cols
    names = ", ".join(NAMED_MESH_SHAPES)
    raise ValueError(f"unknown mesh shape {text!r}: expected one of {names} or RxC such as 4x8")


def default_mesh_shape() -> tuple[int, int]:
    """``$MESH_DEVICE`` when set, else a single device."""
    value = os.environ.get(MESH_DEVICE_ENV)
    return parse_mesh_shape(value) if value else (1, 1)


def format_mesh_shape(shape: Sequence[int]) -> str:
    """``(4, 8)`` (or a ``ttnn.MeshShape``) -> ``"4x8"``: the one spelling of a mesh shape in messages,
    test ids, cache paths and result rows."""
    rows, cols = (int(d) for d in tuple(shape))
    return f"{rows}x{cols}"
