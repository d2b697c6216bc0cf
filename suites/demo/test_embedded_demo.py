"""The demo's main job on the embedded trained model and the TT-NN runtime (what ``tox -e demo`` runs):
generation over prompts and ``--token-accuracy`` against the embedded model's ``.refpt``."""

from __future__ import annotations

import json

import pytest

from deepseek_tt.accuracy.thresholds import teacher_forcing_threshold
from suites.demo.conftest import write_prompts

pytestmark = [pytest.mark.demo, pytest.mark.slow]


@pytest.fixture(scope="module")
def embedded():
    try:
        from reference_models.embedded import embedded_model_path, embedded_refpt_path

        return embedded_model_path(), embedded_refpt_path()
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(f"embedded model not available: {exc}")


def test_token_accuracy_on_tt(run_cli, embedded, tmp_path, record_result):
    model_dir, refpt = embedded
    out = tmp_path / "tf.json"
    r = run_cli("--model-path", model_dir, "--token-accuracy", "--reference-file", refpt, "--max-new-tokens", 32,
                "--cache-dir", tmp_path / "cache", "--output-path", out, runtime="tt")
    assert r.code == 0, r.err
    acc = json.loads(out.read_text())["token_accuracy"]
    for metric in ("top1", "top5"):
        value = acc[f"{metric}_accuracy"]
        threshold = teacher_forcing_threshold("strict", metric)
        record_result(module="model", mode="teacher_forcing_demo", metric=metric, value=value, threshold=threshold,
                      seq_len=acc["prompt_len"] + acc["num_tokens"], batch=1, mesh="1x1")
        assert value >= threshold, f"{metric} {value:.3f} < {threshold} over {acc['num_tokens']} tokens"


def test_generation_on_tt_matches_bp_pp(run_cli, embedded, tmp_path):
    model_dir, _ = embedded
    prompts = write_prompts(tmp_path / "p.json", ["The capital of France is", "Once upon a time"])
    tokens = {}
    for generator in ("bp", "pp"):
        out = tmp_path / f"{generator}.json"
        r = run_cli("--model-path", model_dir, "--prompts-file", prompts, "--generator", generator, "--max-new-tokens", 6,
                    "--cache-dir", tmp_path / "cache", "--output-path", out, runtime="tt")
        assert r.code == 0, r.err
        tokens[generator] = [g["generated_token_ids"] for g in json.loads(out.read_text())["generations"]]
    assert tokens["bp"] == tokens["pp"]


@pytest.mark.parametrize("dtype_policy", ["default", "high_precision"])
def test_greedy_prefix_agreement_with_transformers_generate(embedded, tmp_path_factory, record_result, dtype_policy):
    """A figure, not a bar: mean length of the greedy prefix on which TtModel and transformers' generate agree."""
    from deepseek_tt.backend import ttnn
    from deepseek_tt.demo.prompts import load_prompts_file
    from deepseek_tt.generator.compare import greedy_prefix_agreement
    from deepseek_tt.runtime.tt_model import TtModel
    from reference_models.reference import load_reference_model
    from transformers import AutoTokenizer

    model_dir, _ = embedded
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    from importlib import resources

    texts = load_prompts_file(resources.files("deepseek_tt.demo") / "sample_prompts.json")
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    new_tokens = 16
    device = ttnn.open_mesh_device(ttnn.MeshShape(1, 1))
    try:
        model = TtModel.load(model_dir, device, tmp_path_factory.mktemp("cache"), dtype_policy=dtype_policy,
                             max_seq_len=128, progress=False)
        agreement = greedy_prefix_agreement(model, load_reference_model(model_dir), prompts, new_tokens)
    finally:
        ttnn.close_mesh_device(device)
    record_result(module="model", mode="generate", metric="greedy_prefix_agreement_tokens", value=agreement.mean,
                  dtype_policy=dtype_policy, mesh="1x1", batch=len(prompts), seq_len=new_tokens,
                  per_prompt=agreement.per_prompt, model="embedded")
    print(f"\n[{dtype_policy}] embedded model: greedy prefix agreement with transformers.generate: mean "
          f"{agreement.mean:.2f} of {new_tokens}, per prompt {agreement.per_prompt}")
    assert len(agreement.per_prompt) == len(prompts)


def test_traced_demo_on_the_emulated_galaxy_matches_eager_1x1(run_cli, embedded, tmp_path):
    """--mesh-shape TG (4x8, 32 users per row) with --enable-trace gives the 1x1 eager tokens."""
    model_dir, _ = embedded
    prompts = write_prompts(tmp_path / "p.json", ["The capital of France is", "Once upon a time"])
    tokens = {}
    for name, extra in (("tg", ["--mesh-shape", "TG", "--enable-trace"]), ("n150", ["--mesh-shape", "N150"])):
        out = tmp_path / f"{name}.json"
        r = run_cli("--model-path", model_dir, "--prompts-file", prompts, "--max-new-tokens", 6, *extra,
                    "--cache-dir", tmp_path / "cache", "--output-path", out, runtime="tt")
        assert r.code == 0, r.err
        data = json.loads(out.read_text())
        tokens[name] = [g["generated_token_ids"] for g in data["generations"]]
    assert data["config"]["mesh_shape"] == "1x1"
    assert tokens["tg"] == tokens["n150"]
