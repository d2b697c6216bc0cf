"""The pytest plugin runs a third-party TT-NN test tree (``import ttnn``, ``mesh_device``) on the emulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit]

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "suites" / "third_party_style"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    tree = tmp_path / "tree"
    shutil.copytree(TREE, tree)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{tree}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-p", "deepseek_tt.backend.emulator.pytest_plugin", "-p", "no:cacheprovider",
           "-o", "python_files=check_*.py", "--rootdir", str(tree), "-q", str(tree), *args]
    return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_third_party_tree_runs_on_the_emulator(tmp_path) -> None:
    result = _run(tmp_path, "--mesh-shape", "2x4")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout


def test_a_failing_module_fails(tmp_path) -> None:
    tree_module = TREE / "rmsnorm_mlp.py"
    broken = tmp_path / "broken"
    shutil.copytree(TREE, broken)
    (broken / "rmsnorm_mlp.py").write_text(tree_module.read_text().replace("* up", "+ up"))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{broken}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-p", "deepseek_tt.backend.emulator.pytest_plugin", "-p", "no:cacheprovider",
           "-o", "python_files=check_*.py", "--rootdir", str(broken), "-q", str(broken), "-k", "rmsnorm_mlp"]
    result = subprocess.run(cmd, cwd=broken, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "2 failed" in result.stdout, result.stdout[-2000:]


def test_bad_mesh_shape_is_a_usage_error(tmp_path) -> None:
    result = _run(tmp_path, "--mesh-shape", "4by8")
    assert result.returncode == 4 and "--mesh-shape" in result.stderr + result.stdout
