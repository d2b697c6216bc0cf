"""toxfile.py: the conformance environment finds a pyenv-installed Python 3.12 / 3.10 that is not activated,
and nothing else is touched."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toxfile():
    spec = importlib.util.spec_from_file_location("repo_toxfile", ROOT / "toxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _interpreter(path: Path, exit_code: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine whose PATH holds no Python at all and whose pyenv root is empty."""
    empty_bin, pyenv = tmp_path / "bin", tmp_path / "pyenv"
    empty_bin.mkdir()
    (pyenv / "versions").mkdir(parents=True)
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.setenv("PYENV_ROOT", str(pyenv))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_the_newest_installed_python_that_runs_is_linked_first_on_path(toxfile, machine):
    versions = machine / "pyenv" / "versions"
    _interpreter(versions / "3.12.4" / "bin" / "python3.12")
    newest = _interpreter(versions / "3.12.10" / "bin" / "python3.12")
    _interpreter(versions / "3.12.11" / "bin" / "python3.12", exit_code=1)  # broken: passed over
    _interpreter(versions / "3.1.2" / "bin" / "python3.12")  # not a 3.12
    links = machine / "links"
    assert toxfile.link_conformance_python(links) == newest
    assert (links / "python3.12").resolve() == newest.resolve()
    assert os.environ["PATH"].split(os.pathsep)[0] == str(links)
    assert sorted(p.name for p in links.iterdir()) == ["python3.12"]  # nothing else shadowed


def test_python_3_10_is_the_fallback(toxfile, machine):
    found = _interpreter(machine / "pyenv" / "versions" / "3.10.13" / "bin" / "python3.10")
    assert toxfile.link_conformance_python(machine / "links") == found


def test_a_python_that_already_runs_is_left_alone(toxfile, machine):
    _interpreter(machine / "bin" / "python3.12")
    _interpreter(machine / "pyenv" / "versions" / "3.12.1" / "bin" / "python3.12")
    path = os.environ["PATH"]
    assert toxfile.link_conformance_python(machine / "links") is None
    assert os.environ["PATH"] == path and not (machine / "links").exists()


def test_nothing_installed_changes_nothing(toxfile, machine):
    path = os.environ["PATH"]
    assert toxfile.link_conformance_python(machine / "links") is None
    assert os.environ["PATH"] == path and not (machine / "links").exists()


def test_tox_ini_fails_rather_than_skips_a_missing_interpreter():
    ini = (ROOT / "tox.ini").read_text()
    assert "skip_missing_interpreters = false" in ini
    assert "base_python = python3.12, python3.10" in ini
