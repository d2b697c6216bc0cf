"""Every argument of the original demo's CLI (docs/DEMO_CONTRACT.md) on a tiny checkpoint (documented behaviour, default,
interaction). The model runtime is the torch reference here; test_tt_runtime.py repeats the key
checks on the TT-NN model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepseek_tt.demo import create_parser, run_demo
from deepseek_tt.demo.model_source import CACHE_DIR_ENV, DEFAULT_CACHE_DIR, MODEL_PATH_ENV, resolve_cache_dir
from suites.demo.conftest import write_prompts

pytestmark = pytest.mark.demo

PROMPTS = ["Write a haiku about autumnal days by the sea", "The capital of France is", "Once upon a time"]
N = 4  # new tokens per test run: enough to exercise prefill, the compile step and steady decode


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_parser_defaults_match_the_original_demo():
    args = create_parser().parse_args([])
    assert args.prompts == [] and args.prompts_file is None and args.num_prompts is None
    assert args.output_path is None and args.model_path is None and args.cache_dir is None
    assert args.max_new_tokens == 32 and args.early_print_first_user is False
    assert args.generator == "bp" and args.enable_trace is False and args.random_weights is False
    assert args.single_layer is None and args.token_accuracy is False and args.reference_file is None
    assert args.tf_prompt_len is None and args.random_weights_preset == "full"
    assert args.runtime is None  # -> DEFAULT_RUNTIME, the TT-NN model


def test_positional_prompts(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "o.json"
    r = run_cli("--model-path", tiny_model_dir, "--max-new-tokens", N, "--output-path", out, *PROMPTS[:2])
    assert r.code == 0, r.err
    data = _read(out)
    assert [g["prompt"] for g in data["generations"]] == PROMPTS[:2]
    assert all(g["num_generated_tokens"] == N == len(g["generated_token_ids"]) for g in data["generations"])
    assert "=== prompt 1" in r.out and "decode t/s/u" in r.out  # generations and the summary table


def test_positional_prompts_write_no_file_by_default(run_cli, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli("--model-path", tiny_model_dir, "--max-new-tokens", 2, PROMPTS[0]).code == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("layout", ["list", "object"])
def test_prompts_file_default_output_path_and_ignored_positionals(run_cli, tiny_model_dir, tmp_path, monkeypatch, layout):
    prompts_file = write_prompts(tmp_path / "my_prompts.json", PROMPTS, layout)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    r = run_cli("--model-path", tiny_model_dir, "--max-new-tokens", N, "--prompts-file", prompts_file, "ignored positional")
    assert r.code == 0, r.err
    data = _read(workdir / "my_prompts_output.json")
    assert [g["prompt"] for g in data["generations"]] == PROMPTS
    assert data["schema_version"] == 1 and data["mode"] == "generate"
    stats = data["statistics"]
    assert stats["num_users"] == 3 and stats["new_tokens"] == 3 * N and stats["decode_steps"] == N - 1
    for key in ("prefill_tokens_per_s", "ttft_s", "decode_tokens_per_s_per_user", "decode_tokens_per_s", "total_runtime_s"):
        assert stats[key] is not None and stats[key] > 0


def test_num_prompts_truncates(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "o.json"
    prompts_file = write_prompts(tmp_path / "p.json", PROMPTS)
    r = run_cli("--model-path", tiny_model_dir, "--max-new-tokens", 2, "--prompts-file", prompts_file, "--num-prompts", 2, "--output-path", out)
    assert r.code == 0, r.err
    assert [g["prompt"] for g in _read(out)["generations"]] == PROMPTS[:2]


def test_model_path_from_environment(run_cli, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_PATH_ENV, str(tiny_model_dir))
    out = tmp_path / "o.json"
    assert run_cli("--max-new-tokens", 2, "--output-path", out, PROMPTS[0]).code == 0
    config = _read(out)["config"]
    assert config["model_path"] == str(tiny_model_dir) and config["model_source"] == "env"


def test_model_path_default_is_the_embedded_model(tmp_path, monkeypatch):
    from deepseek_tt.demo.model_source import resolve_model_path

    monkeypatch.delenv(MODEL_PATH_ENV, raising=False)
    path, source = resolve_model_path(None, tmp_path / "cache", "reference")
    assert source in ("embedded", "fallback-tiny")
    assert (path / "config.json").is_file()
    if source == "fallback-tiny":
        assert path.parent == tmp_path / "cache"
        assert resolve_model_path(None, tmp_path / "cache", "reference") == (path, source)  # written once


def test_cache_dir_default_and_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    assert resolve_cache_dir(None) == DEFAULT_CACHE_DIR == Path("generated/deepseek_v3")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert resolve_cache_dir(None) == tmp_path
    assert resolve_cache_dir(tmp_path / "x") == tmp_path / "x"


def test_cache_dir_is_recorded(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "o.json"
    assert run_cli("--model-path", tiny_model_dir, "--cache-dir", tmp_path / "c", "--max-new-tokens", 2, "--output-path", out, PROMPTS[0]).code == 0
    assert _read(out)["config"]["cache_dir"] == str(tmp_path / "c")


def test_early_print_first_user_streams_the_first_generation(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "o.json"
    r = run_cli("--model-path", tiny_model_dir, "--max-new-tokens", 6, "--early_print_first_user", "--output-path", out, *PROMPTS[:2])
    assert r.code == 0, r.err
    first_text = _read(out)["generations"][0]["generated_text"]
    streamed = r.out.split("\n=== prompt 0")[0]
    assert streamed.strip() == first_text.strip() and first_text.strip()
    quiet = run_cli("--model-path", tiny_model_dir, "--max-new-tokens", 6, *PROMPTS[:2])
    assert quiet.out.startswith("\n=== prompt 0")


def test_generators_bp_and_pp_agree(run_cli, tiny_model_dir, tmp_path):
    tokens = {}
    for name in ("bp", "pp"):
        out = tmp_path / f"{name}.json"
        assert run_cli("--model-path", tiny_model_dir, "--max-new-tokens", N, "--generator", name, "--output-path", out, *PROMPTS).code == 0
        data = _read(out)
        assert data["config"]["generator"] == name
        tokens[name] = [g["generated_token_ids"] for g in data["generations"]]
    assert tokens["bp"] == tokens["pp"]


def test_sampling_seed_is_reproducible(tiny_model_dir):
    kwargs = dict(model_path=tiny_model_dir, max_new_tokens=5, runtime="reference", progress=False, temperature=1.0, top_p=0.95)
    ids = lambda r: [g["generated_token_ids"] for g in r["generations"]]  # noqa: E731
    first = ids(run_demo(PROMPTS[:1], seed=5, **kwargs))
    assert first == ids(run_demo(PROMPTS[:1], seed=5, **kwargs))
    assert first != ids(run_demo(PROMPTS[:1], seed=6, **kwargs))


def test_random_weights_need_no_model_directory_and_no_prompts(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_PATH_ENV, str(tmp_path / "does-not-exist"))
    out = tmp_path / "o.json"
    r = run_cli("--random-weights", "--random-weights-preset", "tiny", "--max-new-tokens", 3, "--output-path", out)
    assert r.code == 0, r.err
    data = _read(out)
    assert data["config"]["random_weights"] is True and data["config"]["model_path"] is None
    assert len(data["generations"]) == 1 and data["generations"][0]["num_prompt_tokens"] == 16
    with_prompt = run_cli("--random-weights", "--random-weights-preset", "tiny", "--single-layer", "mlp", "--max-new-tokens", 2, "--output-path", out, "hi")
    assert with_prompt.code == 0, with_prompt.err
    assert _read(out)["generations"][0]["prompt"] == "hi" and _read(out)["config"]["single_layer"] == "mlp"


def test_random_weights_model_is_one_dense_layer_of_full_dims():
    from deepseek_tt.runtime.reference_model import random_weights_config

    config = random_weights_config()
    assert config.num_hidden_layers == 1 and config.first_k_dense_replace >= 1
    assert (config.hidden_size, config.vocab_size, config.intermediate_size) == (7168, 129280, 18432)


@pytest.fixture(scope="module")
def reference_file(tiny_model_dir, tmp_path_factory) -> Path:
    """A v0 .refpt from the reference model's own greedy continuation (with its top-5 per position)."""
    from reference_models.reference import load_reference_model

    model = load_reference_model(tiny_model_dir)
    prompt = torch.tensor([[0, 17, 250, 31, 77, 5, 900, 12]])
    with torch.no_grad():
        tokens = model.generate(prompt, max_new_tokens=8, do_sample=False, eos_token_id=None)
        logits = model(tokens).logits[0]
    top5 = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.topk(logits[:-1], 5).indices])
    path = tmp_path_factory.mktemp("refpt") / "tiny.refpt"
    torch.save({"reference_tokens": tokens, "top5_tokens": top5}, path)
    return path


def test_token_accuracy_against_reference_file(run_cli, tiny_model_dir, reference_file, tmp_path):
    out = tmp_path / "o.json"
    r = run_cli("--model-path", tiny_model_dir, "--token-accuracy", "--reference-file", reference_file, "--max-new-tokens", 100, "--output-path", out)
    assert r.code == 0, r.err
    acc = _read(out)["token_accuracy"]
    # T = 16 tokens: the prompt is the first 16 // 2 + 1 = 9, and 100 new tokens are capped to the 7 left
    assert acc["prompt_len"] == 9 and acc["num_tokens"] == 7
    # the reference model teacher-forced on its own greedy output agrees everywhere
    assert acc["top1_accuracy"] == 1.0 and acc["top5_accuracy"] == 1.0 and acc["top1_correct"] == 7
    assert "token accuracy: top-1 1.0000" in r.out


def test_tf_prompt_len_overrides_the_split(run_cli, tiny_model_dir, reference_file, tmp_path):
    out = tmp_path / "o.json"
    r = run_cli("--model-path", tiny_model_dir, "--token-accuracy", "--reference-file", reference_file, "--tf-prompt-len", 12, "--max-new-tokens", 2, "--output-path", out)
    assert r.code == 0, r.err
    acc = _read(out)["token_accuracy"]
    assert acc["prompt_len"] == 12 and acc["num_tokens"] == 2


def test_token_accuracy_without_top5_reports_top1_only(tiny_model_dir, reference_file, tmp_path):
    data = torch.load(reference_file)
    path = tmp_path / "no_top5.refpt"
    torch.save({"reference_tokens": data["reference_tokens"]}, path)
    result = run_demo(None, model_path=tiny_model_dir, token_accuracy=True, reference_file=path, max_new_tokens=3, runtime="reference", progress=False)
    acc = result["token_accuracy"]
    assert acc["top1_accuracy"] == 1.0 and acc["top5_accuracy"] is None and acc["top5_correct"] is None


def test_backend_and_mesh_shape_are_applied_and_recorded(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "o.json"
    r = run_cli("--model-path", tiny_model_dir, "--backend", "emulator", "--mesh-shape", "1x2", "--max-new-tokens", 2, "--output-path", out, PROMPTS[0])
    assert r.code == 0, r.err
    config = _read(out)["config"]
    assert config["backend"].startswith("emulator") and config["mesh_shape"] == "1x2"


def test_enable_trace_needs_the_tt_runtime(run_cli, tiny_model_dir):
    r = run_cli("--model-path", tiny_model_dir, "--enable-trace", PROMPTS[0], runtime="reference")
    assert r.code == 2 and "no traceable decode step" in r.err and "--runtime tt" in r.err
