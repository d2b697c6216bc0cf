"""Throughput of the dense and MoE decoder blocks, TT-NN against transformers' DeepseekV3DecoderLayer.

Galaxy-tiny weights (layer 0 dense, layer 1 MoE) converted once per block and mesh; the reference is
the same layer of ``build_reference_model`` (fp32, CPU). Prefill: one user's sequence of each length
(TTFT = the block's prefill time). Decode: one step with 1 or 32 active users per mesh row at position
``DECODE_CONTEXT`` (the TT batch has 32 slots per row; empty slots are -1, as the generator passes
them); the reference decodes the active users as one batch over a KV cache of that context, cropped
back after each step so every round sees the same context.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch
from transformers import DynamicCache

from deepseek_tt.backend import ttnn
from deepseek_tt.config.mesh import format_mesh_shape
from deepseek_tt.modules import kv_cache
from deepseek_tt.modules.base import mesh_shape
from deepseek_tt.modules.decoder_block import DecoderBlock, MoEDecoderBlock
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.layout import residual_to_device
from deepseek_tt.modules.rope import RotarySetup
from reference_models.presets import get_preset
from reference_models.reference import build_reference_model, get_layer, get_rotary_embedding, layer_state_dict, strip_prefix
from suites.perf.bench_lib import (
    DECODE_CONTEXT,
    PREFILL_LENGTHS,
    USERS_PER_ROW,
    benchmark_side_by_side,
    decode_positions,
    decode_statistics,
    prefill_statistics,
    record_benchmark,
    rounds_for,
)

pytestmark = pytest.mark.perf

PRESET, SEED = "galaxy-tiny", 7
BLOCKS = {"decoder_block": (DecoderBlock, 0), "moe_decoder_block": (MoEDecoderBlock, 1)}
QUICK, NIGHTLY = pytest.mark.quick, pytest.mark.slow
SELECTED_MESH, GALAXY = None, (4, 8)  # None: the mesh of --mesh-shape / $MESH_DEVICE


def _mesh_id(mesh) -> str:
    return "mesh-selected" if mesh is None else f"mesh{format_mesh_shape(mesh)}"


#: Quick (CI): the dense block's shortest prefill and the MoE block's 32-user decode on the selected mesh;
#: the rest, and a 4x8 Galaxy copy of every case, run nightly.
PREFILL_CASES = [
    pytest.param(name, seq, mesh, id=f"{name}-seq{seq}-{_mesh_id(mesh)}",
                 marks=[QUICK] if (name, seq, mesh) == ("decoder_block", PREFILL_LENGTHS[0], SELECTED_MESH) else [NIGHTLY])
    for mesh in (SELECTED_MESH, GALAXY)
    for name in BLOCKS
    for seq in PREFILL_LENGTHS
]
DECODE_CASES = [
    pytest.param(name, users, mesh, id=f"{name}-users{users}-{_mesh_id(mesh)}",
                 marks=[QUICK] if (name, users, mesh) == ("moe_decoder_block", 32, SELECTED_MESH) else [NIGHTLY])
    for mesh in (SELECTED_MESH, GALAXY)
    for name in BLOCKS
    for users in USERS_PER_ROW
]
_converted: dict[tuple[str, tuple[int, int]], dict[str, Any]] = {}


@functools.lru_cache(maxsize=1)
def _reference():
    return build_reference_model(copy.deepcopy(get_preset(PRESET, num_layers=2)), seed=SEED)


def _run_config(name: str, mesh_device: Any, tmp_path_factory, mode: str, paged) -> dict[str, Any]:
    block, layer = BLOCKS[name]
    model = _reference()
    key = (name, mesh_shape(mesh_device))
    if key not in _converted:
        out = tmp_path_factory.mktemp(f"bench_{name}")
        weights = strip_prefix(layer_state_dict(model, layer), f"model.layers.{layer}.")
        _converted[key] = block.convert_weights(model.config, weights, out, mesh_device)
    model_config = (block.prefill_model_config if mode == "prefill" else block.decode_model_config)(model.config, mesh_device)
    return block.run_config(model_config, _converted[key], block.create_state(model.config, mesh_device, paged))


def _causal_mask(seq_len: int) -> torch.Tensor:
    return torch.full((seq_len, seq_len), float("-inf")).triu(1)[None, None]


@pytest.mark.parametrize("name, seq_len, mesh_device", PREFILL_CASES, indirect=["mesh_device"])
def test_block_prefill_throughput(name, seq_len, mesh_device, benchmark, record_result, request, tmp_path_factory) -> None:
    block, layer = BLOCKS[name]
    model = _reference()
    rows, cols = mesh_shape(mesh_device)
    paged = kv_cache.paged_config_for(seq_len, mesh_cols=cols)
    cfg = _run_config(name, mesh_device, tmp_path_factory, "prefill", paged)
    page_table = kv_cache.create_page_table(paged, mesh_device)
    rope = RotarySetup(model.config, mesh_device).prefill_tensors(seq_len)
    x = torch.randn(seq_len, model.config.hidden_size, generator=torch.Generator().manual_seed(seq_len))
    tt_x = residual_to_device(x, mesh_device, decode=False)

    ctx = ForwardContext.prefill(rope, page_table, 0, layer=layer)

    def tt_step() -> None:
        ttnn.deallocate(block.forward_prefill(tt_x, cfg, ctx))

    ref_layer, rotary = get_layer(model, layer), get_rotary_embedding(model)
    positions = torch.arange(seq_len)[None]
    mask = _causal_mask(seq_len)

    @torch.no_grad()
    def ref_step() -> None:
        ref_layer(x[None], attention_mask=mask, position_ids=positions, position_embeddings=rotary(x[None], positions))

    tt_s, ref_s = benchmark_side_by_side(benchmark, tt_step, ref_step, rounds_for(request))
    info = record_benchmark(
        benchmark, record_result, module=name, mode="prefill", mesh=(rows, cols), seq_len=seq_len, batch=1,
        tt=prefill_statistics(tt_s, seq_len), reference=prefill_statistics(ref_s, seq_len),
    )
    assert info["throughput_ratio_tt_over_reference"] > 0


@pytest.mark.parametrize("name, users_per_row, mesh_device", DECODE_CASES, indirect=["mesh_device"])
def test_block_decode_throughput(name, users_per_row, mesh_device, benchmark, record_result, request, tmp_path_factory) -> None:
    block, layer = BLOCKS[name]
    model = _reference()
    rows, cols = mesh_shape(mesh_device)
    hidden = model.config.hidden_size
    paged = kv_cache.paged_config_for(DECODE_CONTEXT + kv_cache.BLOCK_SIZE, mesh_cols=cols)
    cfg = _run_config(name, mesh_device, tmp_path_factory, "decode", paged)
    page_table = kv_cache.create_page_table(paged, mesh_device)
    positions, active = decode_positions(rows, users_per_row, DECODE_CONTEXT)
    rope = RotarySetup(model.config, mesh_device).decode_tensors(positions)
    tt_positions = kv_cache.decode_positions_tensor(positions, mesh_device)
    generator = torch.Generator().manual_seed(users_per_row)
    x = torch.randn(positions.numel(), hidden, generator=generator)
    tt_x = residual_to_device(x, mesh_device, decode=True)

    ctx = ForwardContext.decode(rope, page_table, tt_positions, layer=layer)

    def tt_step() -> None:
        ttnn.deallocate(block.forward_decode(tt_x, cfg, ctx))

    users = int(active.sum())
    ref_layer, rotary = get_layer(model, layer), get_rotary_embedding(model)
    cache = DynamicCache(config=model.config)
    context = torch.randn(users, DECODE_CONTEXT, hidden, generator=generator)
    ctx_positions = torch.arange(DECODE_CONTEXT)[None].expand(users, -1)
    with torch.no_grad():
        ref_layer(context, attention_mask=_causal_mask(DECODE_CONTEXT), position_ids=ctx_positions, cache=cache,
                  use_cache=True, position_embeddings=rotary(context, ctx_positions))
    step_x = x[active][:, None]
    step_positions = torch.full((users, 1), DECODE_CONTEXT)
    step_rope = rotary(step_x, step_positions)

    @torch.no_grad()
    def ref_step() -> None:
        ref_layer(step_x, attention_mask=None, position_ids=step_positions, cache=cache, use_cache=True, position_embeddings=step_rope)
        cache.layers[layer].crop(-1)  # drop the step's token: every round sees the same context

    tt_s, ref_s = benchmark_side_by_side(benchmark, tt_step, ref_step, rounds_for(request))
    assert cache.get_seq_length(layer) == DECODE_CONTEXT
    info = record_benchmark(
        benchmark, record_result, module=name, mode="decode", mesh=(rows, cols), seq_len=DECODE_CONTEXT, batch=users,
        tt=decode_statistics(tt_s, users), reference=decode_statistics(ref_s, users),
        extra={"users_per_row": users_per_row, "decode_slots": int(positions.numel())},
    )
    assert info["throughput_ratio_tt_over_reference"] > 0
