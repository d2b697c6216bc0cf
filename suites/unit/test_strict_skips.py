"""``--no-skips`` (fixtures/strict.py): CI's guard against a green run of nothing."""

import pytest

from fixtures.strict import NO_SKIPS_ENV

pytestmark = pytest.mark.unit

pytest_plugins = ["pytester"]

TESTS = """
import pytest

def test_runs():
    assert True

def test_needs_something_absent():
    pytest.skip("the real ttnn wheel is not installed")
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_sample=TESTS)
    return pytester.runpytest_inprocess("-p", "fixtures.options", "-p", "fixtures.strict", *args)


def test_a_skip_fails_the_session_under_no_skips(pytester, monkeypatch):
    monkeypatch.delenv(NO_SKIPS_ENV, raising=False)
    result = _run(pytester, "--no-skips")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 test(s) skipped under --no-skips*"])


def test_the_environment_variable_turns_it_on(pytester, monkeypatch):
    monkeypatch.setenv(NO_SKIPS_ENV, "1")
    assert _run(pytester).ret == pytest.ExitCode.TESTS_FAILED


def test_no_test_run_fails_under_no_skips(pytester, monkeypatch):
    monkeypatch.delenv(NO_SKIPS_ENV, raising=False)
    result = _run(pytester, "--no-skips", "-k", "no_such_test")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*no test ran under --no-skips*"])


def test_without_the_option_skips_are_reported_not_failed(pytester, monkeypatch):
    monkeypatch.delenv(NO_SKIPS_ENV, raising=False)
    result = _run(pytester)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK


def test_deselection_by_marker_is_not_a_skip(pytester, monkeypatch):
    monkeypatch.delenv(NO_SKIPS_ENV, raising=False)
    result = _run(pytester, "--no-skips", "-k", "test_runs")
    assert result.ret == pytest.ExitCode.OK
