"""The model fixtures: default checkpoint, explicit paths, skips with reasons, errors for bad directories."""

import shutil

import pytest

from deepseek_tt.config.environment import MODEL_PATH_ENV

pytestmark = pytest.mark.unit

pytest_plugins = ["pytester"]

TEST_FILE = """
def test_uses_the_model(model_path, hf_config, state_dict, reference_model):
    assert hf_config.model_type == "deepseek_v3"
    assert "model.embed_tokens.weight" in state_dict
    assert reference_model.config.vocab_size == hf_config.vocab_size
    print("MODEL_PATH", model_path)
"""


def _run(pytester, *args):
    pytester.makepyfile(test_model=TEST_FILE)
    return pytester.runpytest_inprocess("-p", "fixtures.options", "-p", "fixtures.models", "-s", *args)


def test_default_is_the_embedded_model_else_a_tiny_checkpoint(pytester, monkeypatch):
    from fixtures.models import _embedded_model

    monkeypatch.delenv(MODEL_PATH_ENV, raising=False)
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    embedded = _embedded_model()
    expected = f"*MODEL_PATH {embedded}" if embedded else "*MODEL_PATH *tiny-Lall-seed0*"
    result.stdout.fnmatch_lines([expected, ])
    result.stdout.fnmatch_lines(["deepseek-tt model: embedded model*" if embedded else "deepseek-tt model: random-weight 'tiny'*"])


def test_tiny_fallback_when_the_embedded_model_is_absent(pytester, monkeypatch):
    import reference_models.embedded as embedded

    monkeypatch.delenv(MODEL_PATH_ENV, raising=False)
    monkeypatch.setattr(embedded, "EMBEDDED_MODEL_PATH", pytester.path / "no-such-model")
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*MODEL_PATH *tiny-Lall-seed0*"])


def test_env_var_path_that_does_not_exist_skips_with_the_reason(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv(MODEL_PATH_ENV, str(tmp_path / "absent"))
    result = _run(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*DEEPSEEK_V3_HF_MODEL is not available*absent*does not exist*"])


def test_malformed_model_directory_fails_naming_the_problem(pytester, preset_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(preset_checkpoint("tiny"), broken)
    (broken / "config.json").write_text('{"model_type": "deepseek_v3"}')
    result = _run(pytester, "--model-path", str(broken))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--model-path is not a usable DeepSeek-V3 directory*missing required field*"])


def test_seeding_is_deterministic(deterministic_seed):
    import torch

    first = torch.rand(3)
    torch.manual_seed(deterministic_seed)
    assert torch.equal(first, torch.rand(3))


def test_a_reference_too_big_for_the_machine_is_skipped(pytester, tmp_path):
    import json

    from reference_models.checkpoint import write_checkpoint

    path = write_checkpoint("tiny", tmp_path / "m", tokenizer=None)
    config = json.loads((path / "config.json").read_text())
    config["num_hidden_layers"] = 61  # claims the full depth; the weights are never read
    config.update(hidden_size=7168, vocab_size=129280, n_routed_experts=256, moe_intermediate_size=2048)
    (path / "config.json").write_text(json.dumps(config))
    pytester.makepyfile(test_big="def test_big(reference_model):\n    raise AssertionError('not skipped')\n")
    result = pytester.runpytest_inprocess("-p", "fixtures.options", "-p", "fixtures.models", "-rs", "--model-path", str(path))
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*the fp32 reference needs * GB, more than half*"])
