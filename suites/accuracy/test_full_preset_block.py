"""Decoder blocks at the real DeepSeek-V3 dims (``full`` preset, random weights) on a 1x1 mesh: the dense
block, and a MoE block with the expert count reduced to 16 (real expert shapes, grouped routing).

Prefill of one 128-token sequence and decode of 32 users at random positions over caches prefilled from
the reference, against transformers' DeepseekV3DecoderLayer built alone with the same weights. Marked
slow; measured on a shared 2-core CPU (timings also land in the result rows): dense about 6 min wall
(conversion of ~0.6 B parameters 125 s, TT prefill 24 s, TT decode 28 s) and 8 GB peak RSS; MoE-16 about
19 min (conversion 205 s, TT prefill 81 s, decode 38 s) and 12 GB peak RSS.
"""

from __future__ import annotations

import time

import pytest
import torch

from deepseek_tt.accuracy.checks import check_against_reference
from deepseek_tt.modules import kv_cache
from deepseek_tt.modules.decoder_block import DecoderBlock, MoEDecoderBlock
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.layout import residual_to_device, residual_to_torch
from deepseek_tt.modules.rope import RotarySetup
from deepseek_tt.weights.convert import RandomStateDict
from reference_models.presets import get_preset
from suites.accuracy.model_lib import SEED, block_forward, standalone_layer

pytestmark = [pytest.mark.accuracy, pytest.mark.slow]

USERS = 32
DECODE_MAX_SEQ = 64


def _moe_config():
    """Full dims with layer 0 a MoE layer of 16 routed experts (4 groups of 4, 3 groups eligible, 8 chosen):
    the real expert shapes and routing rules at a size the CPU holds."""
    config = get_preset("full", num_layers=1)
    config.first_k_dense_replace = 0
    config.n_routed_experts, config.n_group, config.topk_group = 16, 4, 3
    return config


BLOCKS = [
    pytest.param(DecoderBlock, lambda: get_preset("full", num_layers=1), "decoder_block", id="dense"),
    pytest.param(MoEDecoderBlock, _moe_config, "moe_decoder_block", id="moe16"),
]


@pytest.mark.parametrize("block_cls, make_config, name", BLOCKS)
@pytest.mark.parametrize("mesh_device", [pytest.param((1, 1), id="mesh1x1")], indirect=True)
def test_full_dims_decoder_block(block_cls, make_config, name, mesh_device, tmp_path, record_result):
    config = make_config()
    block, rotary = standalone_layer(config, 0)
    start = time.perf_counter()
    weights = block_cls.convert_weights(config, RandomStateDict(config, SEED).view("model.layers.0."), tmp_path / "block", mesh_device)
    convert_s = time.perf_counter() - start
    rope = RotarySetup(config, mesh_device)
    record = dict(mesh="1x1", preset="full")

    # prefill
    seq_len = 128
    paged = kv_cache.paged_config_for(max(seq_len, DECODE_MAX_SEQ), mesh_cols=1)
    page_table = kv_cache.default_page_table(paged)
    cfg = block_cls.run_config(
        block_cls.prefill_model_config(config, mesh_device), weights, block_cls.create_state(config, mesh_device, paged)
    )
    x = torch.randn(seq_len, config.hidden_size, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    ctx = ForwardContext.prefill(rope.prefill_tensors(seq_len), kv_cache.create_page_table(paged, mesh_device, page_table), 0)
    y = block_cls.forward_prefill(residual_to_device(x, mesh_device, decode=False), cfg, ctx)
    actual = residual_to_torch(y, mesh_device, decode=False)
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    expected, _ = block_forward(block, rotary, x)
    reference_prefill_s = time.perf_counter() - start
    failures = []
    try:  # both modes recorded before either fails
        check_against_reference(name, "prefill", "default", expected, actual, record_result, what=f"full-dims {name} prefill", seq_len=seq_len,
                                batch=1, convert_s=convert_s, seconds=prefill_s, reference_seconds=reference_prefill_s, **record)
    except AssertionError as exc:
        failures.append(str(exc))

    # decode: 32 users over caches filled from the reference
    generator = torch.Generator().manual_seed(2)
    positions = torch.randint(0, DECODE_MAX_SEQ, (USERS,), generator=generator)
    sequences = [torch.randn(int(p) + 1, config.hidden_size, generator=generator) for p in positions]
    outputs = [block_forward(block, rotary, seq) for seq in sequences]
    paged = kv_cache.paged_config_for(DECODE_MAX_SEQ, mesh_cols=1)
    page_table = kv_cache.default_page_table(paged)
    caches = kv_cache.pack_user_caches([kvpe[:-1] for _, kvpe in outputs], paged, page_table, (1, 1))
    cfg = block_cls.run_config(
        block_cls.decode_model_config(config, mesh_device), weights, block_cls.create_state(config, mesh_device, paged, caches=caches)
    )
    start = time.perf_counter()
    ctx = ForwardContext.decode(
        rope.decode_tensors(positions),
        kv_cache.create_page_table(paged, mesh_device, page_table),
        kv_cache.decode_positions_tensor(positions, mesh_device),
    )
    y = block_cls.forward_decode(residual_to_device(torch.stack([s[-1] for s in sequences]), mesh_device, decode=True), cfg, ctx)
    actual = residual_to_torch(y, mesh_device, decode=True)
    decode_s = time.perf_counter() - start
    try:
        check_against_reference(name, "decode", "default", torch.stack([out[-1] for out, _ in outputs]), actual, record_result,
                                what=f"full-dims {name} decode", seq_len=DECODE_MAX_SEQ, batch=USERS, seconds=decode_s, **record)
    except AssertionError as exc:
        failures.append(str(exc))
    assert not failures, "\n".join(failures)
