"""Conformance fixtures: the real ttnn wheel (skipping with the reason when it cannot be used)."""

from __future__ import annotations

from types import ModuleType

import pytest

from .real_ttnn import RealTtnnUnavailable, load_real_ttnn


@pytest.fixture(scope="session")
def real_ttnn() -> ModuleType:
    """The real ``ttnn`` module for host-side conversions (mock cluster, no device)."""
    try:
        return load_real_ttnn()
    except RealTtnnUnavailable as exc:
        pytest.skip(f"real ttnn unavailable: {exc}")


@pytest.fixture(scope="session")
def emulator() -> ModuleType:
    from deepseek_tt.backend import emulator

    return emulator
