"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deepseek_tt.backend import ttnn


@pytest.fixture
def mesh() -> Iterator[Any]:
    """A 1x1 mesh whatever ``--mesh-shape`` says (tests that need another shape open their own)."""
    device = ttnn.open_mesh_device(ttnn.MeshShape(1, 1))
    yield device
    ttnn.close_mesh_device(device)
