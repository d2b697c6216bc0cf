"""One weight source per demo run: the cache check before loading and the load itself share it, so the
checkpoint's headers are read once, and the check looks at the entry the run will load (the pipelined
model's own entry under ``--generator pp``)."""

from __future__ import annotations

import pytest

import deepseek_tt.demo.resolve as resolve_module
import deepseek_tt.weights.convert as convert_module
from suites.demo.conftest import write_prompts

pytestmark = pytest.mark.demo


@pytest.fixture
def observed(monkeypatch):
    """Counts ``checkpoint_identity`` calls and records ``needs_write`` of each cache-directory check."""
    seen = {"identity_calls": 0, "needs_write": []}
    identity, check = convert_module.checkpoint_identity, resolve_module.check_cache_dir

    def counting_identity(*args, **kwargs):
        seen["identity_calls"] += 1
        return identity(*args, **kwargs)

    def recording_check(*args, needs_write: bool, **kwargs):
        seen["needs_write"].append(needs_write)
        return check(*args, needs_write=needs_write, **kwargs)

    monkeypatch.setattr(convert_module, "checkpoint_identity", counting_identity)
    monkeypatch.setattr(resolve_module, "check_cache_dir", recording_check)
    return seen


@pytest.mark.parametrize("generator", ["bp", "pp"])
def test_identity_read_once_and_the_cache_check_sees_the_runs_entry(run_cli, preset_checkpoint, tmp_path, observed, generator):
    model_dir = preset_checkpoint("galaxy-tiny", num_layers=2)
    prompts = write_prompts(tmp_path / "p.json", ["hello"])
    argv = ("--model-path", model_dir, "--prompts-file", prompts, "--generator", generator, "--max-new-tokens", 2,
            "--cache-dir", tmp_path / "cache", "--output-path", tmp_path / "out.json")
    for run in ("first", "second"):
        calls_before = observed["identity_calls"]
        r = run_cli(*argv, runtime="tt")
        assert r.code == 0, r.err
        assert observed["identity_calls"] - calls_before == 1, f"{run} run: checkpoint identity read more than once"
    # The first run converts (the cache must be writable); the second finds its own entry.
    assert observed["needs_write"] == [True, False]
