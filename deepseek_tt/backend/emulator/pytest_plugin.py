"""Pytest plugin: run a third-party TT-NN test tree on the emulator, on CPU.

    pytest -p deepseek_tt.backend.emulator.pytest_plugin tests/ [--mesh-shape 4x8]

Loaded before the test modules are imported, it makes ``import ttnn`` resolve to the emulator and
provides a ``mesh_device`` fixture: the mesh of ``--mesh-shape`` (default 1x1), or of the test's own
parameter when parametrized indirectly (``@pytest.mark.parametrize("mesh_device", [(4, 8)], indirect=True)``).
"""

from __future__ import annotations

import sys
from typing import Any, Iterator

import pytest

from deepseek_tt.backend import emulator

if "ttnn" in sys.modules and sys.modules["ttnn"] is not emulator:
    raise pytest.UsageError("deepseek_tt.backend.emulator.pytest_plugin: the real ttnn is already imported in this process")
sys.modules["ttnn"] = emulator


def _parse_shape(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(p) for p in text.lower().split("x"))
        if rows < 1 or cols < 1:
            raise ValueError
    except ValueError:
        raise pytest.UsageError(f"--mesh-shape: expected ROWSxCOLS such as 4x8, got {text!r}") from None
    return rows, cols


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("ttnn emulator").addoption(
        "--mesh-shape", default="1x1", help="shape of the emulated mesh of the mesh_device fixture (default 1x1)"
    )


def pytest_configure(config: pytest.Config) -> None:
    _parse_shape(config.getoption("--mesh-shape"))


@pytest.fixture
def mesh_device(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An open emulated ``ttnn.MeshDevice``, closed after the test."""
    param = getattr(request, "param", None)
    shape = _parse_shape(request.config.getoption("--mesh-shape")) if param is None else tuple(param)
    device = emulator.open_mesh_device(emulator.MeshShape(*shape))
    yield device
    emulator.close_mesh_device(device)
