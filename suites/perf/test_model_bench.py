"""Throughput of the full model (``TtModel``) against transformers (``ReferenceModel``) on the same weights,
with the roofline bound of the same config and mesh.

Sources: ``galaxy-tiny`` (random weights of the preset, 1 dense + 1 MoE layer: both sides build the same
tensors for the seed) and, nightly, ``model-path`` (the suite's model under test: ``--model-path`` /
``$DEEPSEEK_V3_HF_MODEL``, else the embedded trained model, else a tiny-preset checkpoint).

Prefill: ``model.prefill(tokens, user_id=0)`` end to end (host tokens in, logits out), so TTFT is what a
user waits for. Decode: ``model.decode`` of a full batch (32 slots per mesh row, 1 or 32 active users per
row at position ``DECODE_CONTEXT``, empty slots -1). The reference decodes its active users as one batch
of transformers' ``DeepseekV3ForCausalLM`` over a KV cache of that context, cropped back after each step.
On the emulator the roofline bound is recorded alone; on real ttnn also the fraction of it achieved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import DynamicCache

from deepseek_tt.config.mesh import format_mesh_shape
from deepseek_tt.modules.base import mesh_shape
from deepseek_tt.runtime.reference_model import ReferenceModel
from deepseek_tt.runtime.tt_model import TtModel
from reference_models.presets import get_preset
from suites.perf.bench_lib import (
    DECODE_CONTEXT,
    PREFILL_LENGTHS,
    USERS_PER_ROW,
    benchmark_side_by_side,
    decode_positions,
    decode_statistics,
    prefill_statistics,
    record_benchmark,
    roofline_statistics,
    rounds_for,
)

pytestmark = pytest.mark.perf

SEED = 11
PRESET = "galaxy-tiny"
MAX_SEQ_LEN = max(max(PREFILL_LENGTHS), DECODE_CONTEXT + 32)
QUICK, NIGHTLY = pytest.mark.quick, pytest.mark.slow
SELECTED_MESH, GALAXY = None, (4, 8)  # None: the mesh of --mesh-shape / $MESH_DEVICE


def _case_id(source: str, what: str, mesh) -> str:
    return f"{source}-{what}" + ("" if mesh is None else f"-mesh{format_mesh_shape(mesh)}")


#: Quick (CI): galaxy-tiny prefill 128 and 32-user decode on the selected mesh; the rest nightly, plus
#: galaxy-tiny on a 4x8 Galaxy mesh.
PREFILL_CASES = [
    pytest.param(source, seq, mesh, id=_case_id(source, f"seq{seq}", mesh),
                 marks=[QUICK] if (source, seq, mesh) == (PRESET, PREFILL_LENGTHS[0], SELECTED_MESH) else [NIGHTLY])
    for source, mesh in ((PRESET, SELECTED_MESH), ("model-path", SELECTED_MESH), (PRESET, GALAXY))
    for seq in PREFILL_LENGTHS
]
DECODE_CASES = [
    pytest.param(source, users, mesh, id=_case_id(source, f"users{users}", mesh),
                 marks=[QUICK] if (source, users, mesh) == (PRESET, 32, SELECTED_MESH) else [NIGHTLY])
    for source, mesh in ((PRESET, SELECTED_MESH), ("model-path", SELECTED_MESH), (PRESET, GALAXY))
    for users in USERS_PER_ROW
]

def _load_pair(source: str, request: pytest.FixtureRequest, mesh_device: Any, cache_dir: Path) -> tuple[TtModel, ReferenceModel]:
    """The TT model and its transformers reference, same weights, same batch and length limits."""
    rows = mesh_shape(mesh_device)[0]
    common = dict(max_batch_size=32 * rows, max_seq_len=MAX_SEQ_LEN)
    if source == PRESET:
        config = get_preset(PRESET, num_layers=2)
        tt = TtModel.load(None, mesh_device, cache_dir, random_weights=True, hf_config=config, seed=SEED, progress=False, **common)
        ref = ReferenceModel.load(None, random_weights=True, hf_config=config, seed=SEED, **common)
    else:
        path = request.getfixturevalue("model_path")
        tt = TtModel.load(path, mesh_device, cache_dir, progress=False, **common)
        ref = ReferenceModel.load(path, **common)
    return tt, ref


def _check_logits(outputs: dict[str, torch.Tensor], shape: tuple[int, int]) -> None:
    """Both sides computed what was asked: logits of the expected shape, finite."""
    for side in ("tt", "ref"):
        logits = outputs[side]
        assert tuple(logits.shape) == shape, f"{side} logits have shape {tuple(logits.shape)}, expected {shape}"
        assert torch.isfinite(logits).all(), f"{side} logits are not finite"


def _module_name(source: str) -> str:
    return f"model.{source}"


@pytest.mark.parametrize("source, seq_len, mesh_device", PREFILL_CASES, indirect=["mesh_device"])
def test_model_prefill_throughput(source, seq_len, mesh_device, cache_dir, benchmark, record_result, request) -> None:
    tt, ref = _load_pair(source, request, mesh_device, cache_dir)
    tokens = torch.randint(2, tt.vocab_size, (seq_len,), generator=torch.Generator().manual_seed(seq_len))
    outputs: dict[str, torch.Tensor] = {}
    tt_s, ref_s = benchmark_side_by_side(benchmark, lambda: outputs.__setitem__("tt", tt.prefill(tokens, 0)),
                                         lambda: outputs.__setitem__("ref", ref.prefill(tokens, 0)), rounds_for(request))
    _check_logits(outputs, (seq_len, tt.vocab_size))
    mesh = mesh_shape(mesh_device)
    measured = prefill_statistics(tt_s, seq_len)
    roofline = roofline_statistics(tt.hf_config, mesh, "prefill", prefill_len=seq_len, measured=measured,
                                   dtype_policy=tt.dtype_policy)
    info = record_benchmark(
        benchmark, record_result, module=_module_name(source), mode="prefill", mesh=mesh, seq_len=seq_len, batch=1,
        tt=measured, reference=prefill_statistics(ref_s, seq_len), extra=roofline,
    )
    assert info["roofline_prefill_time_bound_s"] > 0
    assert info["throughput_ratio_tt_over_reference"] > 0


def _reference_decode_step(ref: ReferenceModel, users: int, generator: torch.Generator):
    """A batched decode step of ``users`` users over a ``DECODE_CONTEXT`` cache; each call leaves the cache as it was."""
    model = ref.model
    cache = DynamicCache(config=model.config)
    context = torch.randint(2, ref.vocab_size, (users, DECODE_CONTEXT), generator=generator)
    with torch.no_grad():
        model(input_ids=context, cache=cache, use_cache=True)
    step_tokens = torch.randint(2, ref.vocab_size, (users, 1), generator=generator)
    step_positions = torch.full((users, 1), DECODE_CONTEXT)

    @torch.no_grad()
    def step() -> torch.Tensor:
        logits = model(input_ids=step_tokens, position_ids=step_positions, cache=cache, use_cache=True).logits
        for layer in cache.layers:
            layer.crop(-1)  # drop the step's token: every round sees the same context
        return logits

    return step, cache


@pytest.mark.parametrize("source, users_per_row, mesh_device", DECODE_CASES, indirect=["mesh_device"])
def test_model_decode_throughput(source, users_per_row, mesh_device, cache_dir, benchmark, record_result, request) -> None:
    tt, ref = _load_pair(source, request, mesh_device, cache_dir)
    rows, cols = mesh = mesh_shape(mesh_device)
    positions, active = decode_positions(rows, users_per_row, DECODE_CONTEXT)
    generator = torch.Generator().manual_seed(users_per_row)
    tokens = torch.where(active, torch.randint(2, tt.vocab_size, (positions.numel(),), generator=generator), 0)
    users = int(active.sum())
    outputs: dict[str, torch.Tensor] = {}
    ref_step, ref_cache = _reference_decode_step(ref, users, generator)
    tt_s, ref_s = benchmark_side_by_side(benchmark, lambda: outputs.__setitem__("tt", tt.decode(tokens, positions)[active]),
                                         lambda: outputs.__setitem__("ref", ref_step()[:, -1]), rounds_for(request))
    assert ref_cache.get_seq_length() == DECODE_CONTEXT, "the reference's KV cache grew across rounds"
    _check_logits(outputs, (users, tt.vocab_size))
    measured = decode_statistics(tt_s, users)
    roofline = roofline_statistics(tt.hf_config, mesh, "decode", users=users, context=DECODE_CONTEXT, measured=measured,
                                   dtype_policy=tt.dtype_policy)
    info = record_benchmark(
        benchmark, record_result, module=_module_name(source), mode="decode", mesh=mesh, seq_len=DECODE_CONTEXT,
        batch=users, tt=measured, reference=decode_statistics(ref_s, users),
        extra={**roofline, "users_per_row": users_per_row, "decode_slots": int(positions.numel())},
    )
    assert info["roofline_decode_step_bound_s"] > 0
    assert info["throughput_ratio_tt_over_reference"] > 0
