"""The emulator's public names and signatures against the real module (live; the default suite checks
the recorded copy in fixtures/golden/ttnn_api.json)."""

from __future__ import annotations

import json

import pytest

from . import api_surface
from .make_golden_vectors import API_FILE, GOLDEN_DIR, real_api

pytestmark = pytest.mark.conformance


def _names() -> list[str]:
    """The ttnn names to compare: the model's and the emulator's public ones, less its internals
    (``api_surface.EMULATOR_ONLY_NAMES``) and the classes model code never constructs."""
    from deepseek_tt.backend import emulator

    names = set(api_surface.MODEL_API_NAMES) | set(api_surface.model_code_ttnn_names())
    names |= set(api_surface.public_names(emulator))
    return sorted(names - api_surface.EMULATOR_ONLY_NAMES - api_surface.NOT_CONSTRUCTED)


@pytest.mark.parametrize("name", _names())
def test_signature(real_ttnn, emulator, name):
    try:
        real = api_surface.resolve(real_ttnn, name)
    except AttributeError:
        pytest.fail(f"ttnn.{name} is not in the real module (emulator-only names go in api_surface.EMULATOR_ONLY_NAMES)")
    try:
        emulated = api_surface.resolve(emulator, name)
    except AttributeError:
        if name in api_surface.model_code_ttnn_names() or name in api_surface.MODEL_API_NAMES:
            pytest.fail(f"ttnn.{name} is needed by the model but not emulated")
        pytest.skip(f"ttnn.{name} is not emulated")
    problems = api_surface.signature_problems(api_surface.describe(real), api_surface.describe(emulated))
    assert not problems, f"ttnn.{name}: " + "; ".join(problems)


@pytest.mark.parametrize("member", [f"{c}.{m}" for c, ms in api_surface.CLASS_MEMBERS.items() for m in ms])
def test_class_member(real_ttnn, emulator, member):
    real = api_surface.describe_members(real_ttnn).get(member)
    if real is None:
        pytest.skip(f"ttnn.{member} does not exist in the real module")
    problems = api_surface.member_problems(real, api_surface.describe_members(emulator).get(member))
    assert not problems, f"ttnn.{member}: " + "; ".join(problems)


def test_model_code_names_exist_in_real_ttnn(real_ttnn):
    missing = {n: f for n, f in api_surface.model_code_ttnn_names().items() if not api_surface.has_name(real_ttnn, n)}
    assert not missing, f"model code uses names that real ttnn lacks: {missing}"


def test_recorded_api_is_current(real_ttnn):
    """Every signature recorded in fixtures/golden is still the wheel's (names added to the emulator
    since are checked live by test_signature; rerun make_golden_vectors to record them too)."""
    recorded = json.loads((GOLDEN_DIR / API_FILE).read_text(encoding="utf-8"))
    live = real_api(real_ttnn)
    assert recorded["names"] == live["names"]
    stale = sorted(n for n, d in recorded["signatures"].items() if live["signatures"].get(n) != d)
    stale += sorted(n for n, d in recorded.get("members", {}).items() if live["members"].get(n) != d)
    assert not stale, f"fixtures/golden/{API_FILE} is out of date for {stale}: rerun make_golden_vectors"

