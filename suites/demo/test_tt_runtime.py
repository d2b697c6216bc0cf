"""The generators and the demo on the TT-NN model (``TtModel`` on the emulated mesh), against the torch
reference behind the same facade and against transformers' ``generate``.

Model: the ``galaxy-tiny`` dims with one dense layer and the project's random weights (``TtModel`` and
``ReferenceModel`` build the same tensors from the same seed), on a 1x1 mesh to stay fast.
"""

from __future__ import annotations

import json

import pytest

from deepseek_tt.backend import ttnn
from deepseek_tt.generator import SamplingParams, make_generator
from deepseek_tt.generator.compare import greedy_prefix_agreement
from deepseek_tt.runtime.reference_model import ReferenceModel, random_weights_config

pytestmark = pytest.mark.demo

PRESET = "galaxy-tiny"
MAX_SEQ_LEN = 128
PROMPTS = [[0, 74, 103, 110, 110, 113], [0, 900, 12, 5, 6, 7, 8, 9, 10]]
NEW_TOKENS = 4
BATCH = 4  # decode slots of the test model (the demo's default is 32 per mesh row)


@pytest.fixture(scope="module")
def config():
    return random_weights_config(PRESET, num_layers=1)


@pytest.fixture(scope="module")
def tt_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tt_cache")


@pytest.fixture(scope="module")
def tt_mesh():
    device = ttnn.open_mesh_device(ttnn.MeshShape(1, 1), trace_region_size=64 * 1024 * 1024)
    yield device
    ttnn.close_mesh_device(device)


def _load_tt(config, tt_mesh, tt_cache, dtype_policy="default"):
    from deepseek_tt.runtime.tt_model import TtModel

    return TtModel.load(None, tt_mesh, tt_cache, dtype_policy=dtype_policy, max_seq_len=MAX_SEQ_LEN,
                        max_batch_size=BATCH, random_weights=True, hf_config=config, progress=False)


@pytest.fixture(scope="module")
def tt_model(config, tt_mesh, tt_cache):
    return _load_tt(config, tt_mesh, tt_cache)


@pytest.fixture(scope="module")
def reference(config):
    return ReferenceModel.load(None, random_weights=True, hf_config=config, max_seq_len=MAX_SEQ_LEN)


def _tokens(output):
    return [r.tokens for r in output.results]


def test_bp_pp_and_traced_give_identical_greedy_tokens(tt_model):
    bp = _tokens(make_generator("bp", tt_model).generate(PROMPTS, NEW_TOKENS))
    traced = _tokens(make_generator("bp", tt_model, enable_trace=True).generate(PROMPTS, NEW_TOKENS))
    pp = _tokens(make_generator("pp", tt_model).generate(PROMPTS, NEW_TOKENS))
    assert bp == traced
    assert bp == pp


@pytest.mark.slow
def test_same_seed_same_sampled_tokens_on_tt(tt_model):
    params = SamplingParams(temperature=1.0, top_k=50, seed=11)
    first = _tokens(make_generator("bp", tt_model).generate(PROMPTS, 3, params))
    again = _tokens(make_generator("pp", tt_model).generate(PROMPTS, 3, params))
    assert first == again


@pytest.mark.slow
@pytest.mark.parametrize("dtype_policy", ["default", "high_precision"])
def test_greedy_prefix_agreement_with_transformers_generate(config, tt_mesh, tt_cache, reference, record_result, dtype_policy):
    """A figure, not a bar: free-running generations part for good at their first differing token."""
    model = _load_tt(config, tt_mesh, tt_cache, dtype_policy)
    new_tokens = 8
    agreement = greedy_prefix_agreement(model, reference.model, PROMPTS, new_tokens)
    record_result(module="model", mode="generate", metric="greedy_prefix_agreement_tokens", value=agreement.mean,
                  dtype_policy=dtype_policy, mesh="1x1", batch=len(PROMPTS), seq_len=new_tokens,
                  per_prompt=agreement.per_prompt, preset=PRESET, num_layers=1)
    print(f"\n[{dtype_policy}] greedy prefix agreement with transformers.generate: mean {agreement.mean:.2f} of "
          f"{new_tokens} tokens, per prompt {agreement.per_prompt}")
    assert len(agreement.per_prompt) == len(PROMPTS) and all(0 <= n <= new_tokens for n in agreement.per_prompt)


def test_demo_cli_on_the_tt_runtime(run_cli, tt_model, tt_cache, tmp_path):
    out = tmp_path / "tt.json"
    r = run_cli("--random-weights", "--random-weights-preset", PRESET, "--max-new-tokens", 2, "--cache-dir", tt_cache,
                "--mesh-shape", "1x1", "--enable-trace", "--output-path", out, "Hello there", runtime="tt")
    assert r.code == 0, r.err
    data = json.loads(out.read_text())
    assert data["config"]["runtime"] == "tt" and data["config"]["enable_trace"] is True
    prompt_ids = [b + 2 for b in b"Hello there"]  # synthetic byte tokens of --random-weights at this vocabulary
    expected = _tokens(make_generator("bp", tt_model).generate([prompt_ids], 2))
    assert [g["generated_token_ids"] for g in data["generations"]] == expected
