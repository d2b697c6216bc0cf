"""Refactors and emulator speed-ups must not move a single bit of the model's outputs.

The golden file (``golden/bit_identity.json``) holds digests of the TT outputs of

- the embedded trained model through ``TtModel``: prefill logits of two prompts, a full-batch decode step and
  a decode step with one active user (its row only), and the demo's greedy tokens (bp and pp generators);
- a slice of the accuracy matrix: every stage of the quick 1x1 runs (prefill 128 and decode, random weights).

They were recorded on the code before the runtime redesign. Digests are kept per machine fingerprint (torch
version, CPU architecture and vector ISA, torch's thread count: a reduction split over two threads rounds
differently than over one). On a recorded fingerprint every digest must match exactly. Elsewhere float
kernels may round differently, so the test then compares what is portable: the demo's tokens exactly and the
matrix metrics to 1e-5, and its result row says the comparison was not exact.

Record a fingerprint (only on the reference revision, or for an intended numerics change with the reason in
the commit): ``DEEPSEEK_TT_RECORD_BIT_IDENTITY=1 pytest suites/accuracy/test_bit_identity.py`` adds or
replaces this machine's recording, replaces the portable values (demo tokens, matrix metrics) with this run's,
and fails.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest
import torch

from suites.accuracy.matrix import Case, run_for, tensor_digest
from suites.demo.conftest import run_cli, write_prompts  # noqa: F401  (run_cli: the demo suite's in-process CLI fixture)

pytestmark = [pytest.mark.accuracy, pytest.mark.quick]

GOLDEN = Path(__file__).parent / "golden" / "bit_identity.json"
RECORD_ENV = "DEEPSEEK_TT_RECORD_BIT_IDENTITY"
PROMPTS = ("The capital of France is", "def fibonacci(n):")
DEMO_NEW_TOKENS = 6
MATRIX_SLICE = (
    Case("model", "prefill", 128, 1, (1, 1), "default", "random"),
    Case("model", "decode", 1, 32, (1, 1), "default", "random"),
)
METRIC_TOLERANCE = 1e-5


def fingerprint() -> dict[str, str]:
    """What decides whether float kernels round identically: torch build, CPU architecture and vector ISA."""
    return {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": str(torch.get_num_threads()),
    }


def _embedded_model_dir() -> Path:
    try:
        from reference_models.embedded import embedded_model_path

        return Path(embedded_model_path())
    except (ImportError, FileNotFoundError) as exc:  # pragma: no cover - the checkout ships it
        pytest.fail(f"the bit-identity check needs the embedded model: {exc}")


@pytest.fixture(scope="module")
def embedded_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Digests of TtModel's logits on the embedded model (1x1 emulated mesh, default policy)."""
    from transformers import AutoTokenizer

    from deepseek_tt.backend import ttnn
    from deepseek_tt.runtime.tt_model import TtModel

    model_dir = _embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    prompts = [torch.tensor(tokenizer(p)["input_ids"]) for p in PROMPTS]
    device = ttnn.open_mesh_device(ttnn.MeshShape(1, 1))
    digests: dict[str, str] = {}
    try:
        model = TtModel.load(model_dir, device, tmp_path_factory.mktemp("cache"), max_seq_len=128, progress=False)
        batch = model.max_batch_size
        next_tokens = torch.zeros(batch, dtype=torch.long)
        positions = torch.full((batch,), -1, dtype=torch.long)
        for user, ids in enumerate(prompts):
            logits = model.prefill(ids, user)
            digests[f"prefill/user{user}"] = tensor_digest(logits)
            next_tokens[user] = int(logits[-1].argmax())
            positions[user] = ids.numel()
        logits = model.decode(next_tokens, positions)
        digests["decode/all_active"] = tensor_digest(logits[: len(prompts)])
        one = torch.full((batch,), -1, dtype=torch.long)
        one[0] = positions[0] + 1
        logits = model.decode(torch.where(one >= 0, logits.argmax(-1), 0), one)
        digests["decode/one_active"] = tensor_digest(logits[:1])
    finally:
        ttnn.close_mesh_device(device)
    return digests


def _demo_tokens(run_cli, tmp_path: Path) -> dict[str, list[list[int]]]:

    model_dir = _embedded_model_dir()
    prompts = write_prompts(tmp_path / "prompts.json", list(PROMPTS))
    tokens = {}
    for generator in ("bp", "pp"):
        out = tmp_path / f"{generator}.json"
        r = run_cli("--model-path", model_dir, "--prompts-file", prompts, "--generator", generator,
                    "--max-new-tokens", DEMO_NEW_TOKENS, "--cache-dir", tmp_path / "cache", "--output-path", out, runtime="tt")
        assert r.code == 0, r.err
        tokens[generator] = [g["generated_token_ids"] for g in json.loads(out.read_text())["generations"]]
    return tokens


def _matrix_slice(request: pytest.FixtureRequest) -> tuple[dict[str, str], dict[str, float]]:
    digests, metrics = {}, {}
    device = request.getfixturevalue("emulated_mesh_1x1")
    for case in MATRIX_SLICE:
        run = run_for(case, request, device)
        assert run.digests, f"{case.id}: the run recorded no outputs"
        digests.update({f"{case.mode}/{k}": v for k, v in run.digests.items()})
        for module, stages in run.values.items():
            for stage, values in stages:
                metrics.update({f"{case.mode}/{module}/{stage}/{name}": float(v) for name, v in values.items()})
    return digests, metrics


@pytest.fixture(scope="module")
def emulated_mesh_1x1():
    from deepseek_tt.backend import ttnn

    device = ttnn.open_mesh_device(ttnn.MeshShape(1, 1))
    yield device
    ttnn.close_mesh_device(device)


def test_outputs_bit_identical_to_the_recorded_golden(embedded_outputs, run_cli, tmp_path, request, record_result):
    matrix_digests, matrix_metrics = _matrix_slice(request)
    observed = {
        "fingerprint": fingerprint(),
        "embedded_digests": embedded_outputs,
        "matrix_digests": matrix_digests,
    }
    portable = {"demo_tokens": _demo_tokens(run_cli, tmp_path), "matrix_metrics": matrix_metrics}
    if os.environ.get(RECORD_ENV) == "1":
        golden = {**(json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {"recordings": []}), **portable}
        golden["recordings"] = [r for r in golden["recordings"] if r["fingerprint"] != observed["fingerprint"]] + [observed]
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        pytest.fail(f"{RECORD_ENV}=1: recorded {observed['fingerprint']} in {GOLDEN}; unset it and rerun (a recording run never passes)")
    assert GOLDEN.is_file(), f"{GOLDEN} is missing: record it with {RECORD_ENV}=1 on the reference revision"
    golden = json.loads(GOLDEN.read_text())

    assert portable["demo_tokens"] == golden["demo_tokens"], "the demo's greedy tokens changed"
    recording = next((r for r in golden["recordings"] if r["fingerprint"] == observed["fingerprint"]), None)
    if recording is not None:
        for key in ("embedded_digests", "matrix_digests"):
            changed = sorted(k for k in recording[key] if observed[key].get(k) != recording[key][k])
            extra = sorted(set(observed[key]) - set(recording[key]))
            assert not changed and not extra, f"{key}: outputs not bit-identical: changed {changed}, not recorded {extra}"
    expected, measured = golden["matrix_metrics"], portable["matrix_metrics"]
    missing = sorted(set(expected) - set(measured))
    assert not missing, f"matrix metrics no longer measured: {missing}"
    drift = {k: (expected[k], measured[k]) for k in expected if abs(expected[k] - measured[k]) > METRIC_TOLERANCE}
    assert not drift, f"matrix metrics moved by more than {METRIC_TOLERANCE}: {drift}"
    record_result(module="model", mode="bit_identity", metric="exact_digest_comparison", value=float(recording is not None),
                  mesh="1x1", running_on=json.dumps(observed["fingerprint"], sort_keys=True))
