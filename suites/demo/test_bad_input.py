"""Bad input: one clear ``error:`` line naming the flag/file, exit status 2, no traceback, nothing
overwritten (a pre-existing output file keeps its content)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepseek_tt.config.environment import CACHE_DIR_ENV
from reference_models.embedded import embedded_model_path
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


# --- inputs that used to end in a traceback or a lost file ------------------------------------------


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    """A private copy of the tiny model directory (cases damage it)."""
    import shutil

    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the model is loaded: these inputs must be refused before that."""
    import deepseek_tt.demo.run as run_module

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although the input is bad")

    monkeypatch.setattr(run_module, "load_model", refuse)


def _shard_of(model_dir: Path, key: str) -> Path:
    return model_dir / json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"][key]


def _edit_config(model_dir: Path, **changes) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config.update(changes)
    (model_dir / "config.json").write_text(json.dumps(config))


def _assert_refused(r, message: str, *keep: Path, contents: dict | None = None) -> None:
    assert r.code == 2, r.err
    lines = error_lines(r.err)
    assert len(lines) == 1 and message in lines[0], r.err
    assert "Traceback" not in r.err + r.out
    for path, text in (contents or {}).items():
        assert path.read_bytes() == text, f"{path} was changed"


def test_output_path_equal_to_the_prompts_file_is_refused(run_cli, tiny_model_dir, tmp_path):
    prompts = write_prompts(tmp_path / "p.json", ["a", "b"])
    before = prompts.read_bytes()
    r = run_cli("--model-path", tiny_model_dir, "--prompts-file", prompts, "--output-path", prompts)
    _assert_refused(r, "is the --prompts-file input", contents={prompts: before})
    # the same file under another name (a relative path from elsewhere, a hard link) is refused too
    link = tmp_path / "link.json"
    os.link(prompts, link)
    r = run_cli("--model-path", tiny_model_dir, "--prompts-file", prompts, "--output-path", link)
    _assert_refused(r, "is the --prompts-file input", contents={prompts: before})


def test_output_path_equal_to_the_reference_or_a_model_file_is_refused(run_cli, model_copy, tmp_path):
    ref = model_copy / "reference.refpt"
    torch.save({"reference_tokens": torch.tensor([[1, 5, 6, 7]])}, ref)
    ref_bytes, config_bytes = ref.read_bytes(), (model_copy / "config.json").read_bytes()
    r = run_cli("--model-path", model_copy, "--token-accuracy", "--reference-file", ref, "--output-path", ref)
    _assert_refused(r, "--output-path", contents={ref: ref_bytes})
    r = run_cli("--model-path", model_copy, "--output-path", model_copy / "config.json", "x")
    _assert_refused(r, "lies inside the --model-path input", contents={model_copy / "config.json": config_bytes})


DAMAGED_CHECKPOINTS = {
    "truncated shard": "truncated",
    "garbage shard": "not a safetensors file",
    "empty shard": "not a safetensors file",
    "missing shard": "shard missing",
    "config hidden_size disagrees": "hidden_size=256",
    "config has more layers": "is missing, but config.json (num_hidden_layers=3",
    "config has fewer layers": "the weights hold decoder layer 1, but config.json has num_hidden_layers=1",
    "config vocab_size disagrees": "vocab_size=2048",
}


@pytest.mark.parametrize("case", sorted(DAMAGED_CHECKPOINTS))
@pytest.mark.parametrize("runtime", ["reference", "tt"])
def test_damaged_checkpoint_is_refused_before_loading(run_cli, model_copy, existing_output, no_model_load, case, runtime):
    shard = _shard_of(model_copy, "model.layers.1.mlp.experts.0.up_proj.weight")
    if case == "truncated shard":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    elif case == "garbage shard":
        shard.write_bytes(os.urandom(shard.stat().st_size))
    elif case == "empty shard":
        shard.write_bytes(b"")
    elif case == "missing shard":
        shard.unlink()
    elif case == "config hidden_size disagrees":
        _edit_config(model_copy, hidden_size=256)
    elif case == "config has more layers":
        _edit_config(model_copy, num_hidden_layers=3)
    elif case == "config has fewer layers":
        _edit_config(model_copy, num_hidden_layers=1)
    elif case == "config vocab_size disagrees":
        _edit_config(model_copy, vocab_size=2048)
    r = run_cli("--model-path", model_copy, "--output-path", existing_output, "x", runtime=runtime)
    _assert_refused(r, DAMAGED_CHECKPOINTS[case], contents={existing_output: SENTINEL.encode()})
    assert "--model-path" in error_lines(r.err)[0]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_temperature_is_refused(run_cli, tiny_model_dir, existing_output, no_model_load, value):
    r = run_cli("--model-path", tiny_model_dir, f"--temperature={value}", "--output-path", existing_output, "x")
    _assert_refused(r, f"--temperature {float(value)}", contents={existing_output: SENTINEL.encode()})
    r = run_cli("--model-path", tiny_model_dir, f"--top-p={value}", "--output-path", existing_output, "x")
    _assert_refused(r, "--top-p", contents={existing_output: SENTINEL.encode()})


def test_prompt_longer_than_the_context_is_refused_before_loading(run_cli, tiny_model_dir, existing_output, no_model_load):
    long_prompt = " ".join(f"w{i}" for i in range(5000))
    r = run_cli("--model-path", tiny_model_dir, "--output-path", existing_output, "short", long_prompt)
    _assert_refused(r, "leave no room in the model's context of 4096 tokens", contents={existing_output: SENTINEL.encode()})
    assert "prompt 1" in r.err


def test_cache_dir_that_is_a_file_is_refused(run_cli, tmp_path, no_model_load):
    a_file = tmp_path / "cache.bin"
    a_file.write_bytes(b"user data")
    for cache in (a_file, a_file / "sub"):
        r = run_cli("--model-path", embedded_model_path(), "--cache-dir", cache, "x", runtime="tt")
        _assert_refused(r, "--cache-dir", contents={a_file: b"user data"})
        assert "is a file" in r.err


def test_unwritable_cache_dir_is_refused_before_loading(run_cli, no_model_load):
    # /proc refuses new directories even to root
    r = run_cli("--model-path", embedded_model_path(), "--cache-dir", "/proc/deepseek_tt_cache", "x", runtime="tt")
    _assert_refused(r, "--cache-dir /proc/deepseek_tt_cache: cannot be created (/proc is not writable)")


def test_default_cache_in_a_read_only_working_directory_is_refused(run_cli, monkeypatch, no_model_load):
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.chdir("/proc")
    r = run_cli("--model-path", embedded_model_path(), "x", runtime="tt")
    _assert_refused(r, "the default --cache-dir (generated/deepseek_v3; set --cache-dir or $DEEPSEEK_V3_CACHE)")
    assert "not writable" in r.err


def test_mesh_the_model_does_not_split_over_is_refused_up_front(run_cli, no_model_load):
    r = run_cli("--model-path", embedded_model_path(), "--mesh-shape", "QUAD", "x", runtime="tt")
    _assert_refused(r, "--mesh-shape 16x8: the model's dims do not split over a 16x8 mesh")
    assert "n_routed_experts=32 does not split over the 128 devices" in r.err
    assert "(it fits N150 (1x1), N300 (1x2), T3K (1x8), TG (4x8))" in r.err


def test_model_the_tt_ops_cannot_tile_is_refused_up_front(run_cli, tiny_model_dir, no_model_load):
    """The tiny preset's 16-wide rotary heads: refused before loading (it ran into the rotary op before)."""
    r = run_cli("--model-path", tiny_model_dir, "x", runtime="tt")
    _assert_refused(r, "qk_rope_head_dim 16 is not a multiple of 32")
    assert "--runtime reference" in r.err
