"""Bad input: one clear ``error:`` line naming the flag/file, exit status 2, no traceback, nothing
overwritten (a pre-existing output file keeps its content)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from suites.demo.conftest import error_lines, write_prompts

pytestmark = pytest.mark.demo

SENTINEL = '{"keep": "me"}\n'


@pytest.fixture
def existing_output(tmp_path):
    path = tmp_path / "existing_output.json"
    path.write_text(SENTINEL)
    return path


def _cases(tmp_path, model_dir):
    good_file = write_prompts(tmp_path / "good.json", ["a", "b"])
    neither = tmp_path / "neither.json"
    neither.write_text('{"questions": ["a"]}')
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    big_ids = tmp_path / "big.refpt"
    torch.save({"reference_tokens": torch.tensor([[5, 6, 7, 99999]])}, big_ids)
    m = ["--model-path", str(model_dir)]
    return {
        "no prompts": (m, "no prompts"),
        "prompt file in neither layout": (m + ["--prompts-file", str(neither)], "neither layout"),
        "empty prompt file": (m + ["--prompts-file", str(empty)], "holds no prompts"),
        "num-prompts 0": (m + ["--prompts-file", str(good_file), "--num-prompts", "0"], "--num-prompts 0"),
        "num-prompts beyond the file": (m + ["--prompts-file", str(good_file), "--num-prompts", "3"], "--num-prompts 3"),
        "token accuracy with random weights": (["--random-weights", "--token-accuracy", "--reference-file", str(big_ids)], "--token-accuracy cannot be combined with --random-weights"),
        "trace with pp": (m + ["--enable-trace", "--generator", "pp", "x"], "--enable-trace is not supported with --generator pp"),
        "missing model directory": (["--model-path", str(tmp_path / "no-such-model"), "x"], "does not exist"),
        "model directory without config": (["--model-path", str(tmp_path), "x"], "config.json"),
        "single-layer moe": (["--random-weights", "--single-layer", "moe"], "--single-layer moe is not supported"),
        "single-layer without random weights": (m + ["--single-layer", "mlp", "x"], "--single-layer needs --random-weights"),
        "token accuracy without reference file": (m + ["--token-accuracy"], "needs --reference-file"),
        "reference ids beyond the vocabulary": (m + ["--token-accuracy", "--reference-file", str(big_ids)], "token id 99999"),
        "missing reference file": (m + ["--token-accuracy", "--reference-file", str(tmp_path / "none.refpt")], "not found"),
        "max-new-tokens 0": (m + ["--max-new-tokens", "0", "x"], "--max-new-tokens 0"),
        "num-prompts without a file": (m + ["--num-prompts", "1", "x"], "--num-prompts limits --prompts-file"),
        "bad mesh shape": (m + ["--mesh-shape", "5by5", "x"], "--mesh-shape"),
    }


CASE_NAMES = [
    "no prompts", "prompt file in neither layout", "empty prompt file", "num-prompts 0", "num-prompts beyond the file",
    "token accuracy with random weights", "trace with pp", "missing model directory", "model directory without config",
    "single-layer moe", "single-layer without random weights", "token accuracy without reference file",
    "reference ids beyond the vocabulary", "missing reference file", "max-new-tokens 0", "num-prompts without a file",
    "bad mesh shape",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_one_clear_line(run_cli, tiny_model_dir, tmp_path, existing_output, case):
    argv, message = _cases(tmp_path, tiny_model_dir)[case]
    r = run_cli(*argv, "--output-path", existing_output)
    assert r.code == 2
    lines = error_lines(r.err)
    assert len(lines) == 1 and message in lines[0], r.err
    assert "Traceback" not in r.err + r.out
    assert existing_output.read_text() == SENTINEL


def test_unwritable_output_path_fails_before_the_model_runs(run_cli, tiny_model_dir, tmp_path):
    missing_dir = tmp_path / "no" / "such" / "dir" / "o.json"
    r = run_cli("--model-path", tiny_model_dir, "--output-path", missing_dir, "x")
    assert r.code == 2 and "--output-path" in error_lines(r.err)[0] and "does not exist" in r.err
    assert "generate (" not in r.err and "=== prompt" not in r.out  # nothing ran
    a_dir = tmp_path / "adir"
    a_dir.mkdir()
    r = run_cli("--model-path", tiny_model_dir, "--output-path", a_dir, "x")
    assert r.code == 2 and "is a directory" in error_lines(r.err)[0]


def test_read_only_output_directory(run_cli, tiny_model_dir, tmp_path, existing_output):
    if os.geteuid() == 0:  # root writes into read-only directories; /proc refuses new files even to root
        r = run_cli("--model-path", tiny_model_dir, "--output-path", "/proc/deepseek_tt_demo_output.json", "x")
        assert r.code == 2 and "not writable" in error_lines(r.err)[0]
        return
    os.chmod(tmp_path, 0o500)
    try:
        r = run_cli("--model-path", tiny_model_dir, "--output-path", existing_output, "x")
    finally:
        os.chmod(tmp_path, 0o700)
    assert r.code == 2 and "not writable" in error_lines(r.err)[0]
    assert existing_output.read_text() == SENTINEL


def test_python_dash_m_bad_input_has_no_traceback(tmp_path):
    """The real entry point in a fresh process: status 2 and a single stderr line."""
    proc = subprocess.run(
        [sys.executable, "-m", "deepseek_tt.demo", "--enable-trace", "--generator", "pp", "x"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --enable-trace is not supported with --generator pp (tracing is for the bp decode path)"]
    assert list(tmp_path.iterdir()) == []
