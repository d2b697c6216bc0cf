"""The vLLM TT-backend adapter driven the way vLLM's scheduler drives it, on the emulated mesh.

A small scheduler harness does continuous batching over the adapter: requests arrive over time, take a
free slot (``empty_slots``), get NON-contiguous KV blocks from a shuffled block allocator (one more when
decode crosses a block boundary, all returned when they finish so later requests reuse them), and leave
their slot when done. Prefill calls alternate host sampling (logits) and device sampling
(``sampling_params``), one carries an empty prompt (``prompt_lens`` 0) aimed at a busy slot, decode calls
alternate sampling modes and synchronous / deferred reads. Every request's greedy tokens must equal the
bp generator's for the same prompt alone. Mesh 1x2 with vLLM block size 32 (users split over the
KV-holding columns) and 2x1 with block size 64 (users split over rows, the data-parallel axis): each device
must see its own users' page-table rows. A 1-layer ``galaxy-tiny`` checkpoint keeps the module to about a
minute on 2 cores.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.mesh import format_mesh_shape
from deepseek_tt.demo.model_source import CACHE_DIR_ENV, MODEL_PATH_ENV
from deepseek_tt.generator import BatchParallelGenerator
from deepseek_tt.serving.vllm_adapter import DeepseekV3ForCausalLM, UnsupportedVllmFeature, check_parallel_layout
from deepseek_tt.weights.hf_config import load_hf_config

pytestmark = pytest.mark.unit

#: (mesh shape, vLLM block size) per module run.
LAYOUTS = [((1, 2), 32), ((2, 1), 64)]
MAX_NUM_SEQS = 4
MAX_MODEL_LEN = 128


@pytest.fixture(scope="module", params=LAYOUTS, ids=lambda p: f"{format_mesh_shape(p[0])}-block{p[1]}")
def layout(request) -> tuple[tuple[int, int], int]:
    """(mesh shape, vLLM block size) of this module run."""
    return request.param


@pytest.fixture(scope="module")
def block_size(layout) -> int:
    return layout[1]


@pytest.fixture(scope="module")
def vllm_model(layout, preset_checkpoint, tmp_path_factory):
    """The adapter as the plugin builds it (env vars, initialize_vllm_model)."""
    path = preset_checkpoint("galaxy-tiny", num_layers=1)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(MODEL_PATH_ENV, str(path))
        env.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("vllm-cache")))
        mesh = ttnn.open_mesh_device(ttnn.MeshShape(*layout[0]))
        try:
            yield DeepseekV3ForCausalLM.initialize_vllm_model(load_hf_config(path), mesh, MAX_NUM_SEQS, MAX_MODEL_LEN)
        finally:
            ttnn.close_mesh_device(mesh)


def _kv_cache_shape(adapter: DeepseekV3ForCausalLM, block_size: int) -> tuple[int, int, int, int]:
    tokens = DeepseekV3ForCausalLM.get_max_tokens_all_users(
        num_devices=adapter.mesh_device.get_num_devices(), max_model_len=MAX_MODEL_LEN, max_num_seqs=MAX_NUM_SEQS
    )
    cfg = adapter.hf_config
    return (tokens // block_size, 1, block_size, cfg.kv_lora_rank + cfg.qk_rope_head_dim)


# --- the scheduler harness ----------------------------------------------------------------------


class BlockAllocator:
    """vLLM's free block pool: blocks handed out in a shuffled order, freed ones go to the back."""

    def __init__(self, num_blocks: int, seed: int = 7) -> None:
        blocks = list(range(num_blocks))
        random.Random(seed).shuffle(blocks)
        self.free = deque(blocks)

    def allocate(self, count: int) -> list[int]:
        assert len(self.free) >= count, "the harness ran out of KV blocks"
        return [self.free.popleft() for _ in range(count)]

    def release(self, blocks: list[int]) -> None:
        self.free.extend(blocks)


@dataclass
class Request:
    prompt: list[int]
    max_tokens: int
    arrival: int
    temperature: float = 0.0
    top_k: int = -1
    slot: int | None = None
    blocks: list[int] = field(default_factory=list)
    output: list[int] = field(default_factory=list)
    slots_used: list[int] = field(default_factory=list)


def _table(rows: list[list[int]], width: int) -> torch.Tensor:
    table = torch.zeros(len(rows), width, dtype=torch.int32)  # vLLM zero-pads its block tables
    for i, blocks in enumerate(rows):
        table[i, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
    return table


def _sampling(requests: list[Request | None]) -> SimpleNamespace:
    """Batched sampling parameters as the plugin passes them (one entry per row)."""
    return SimpleNamespace(
        temperature=[r.temperature if r else 0.0 for r in requests],
        top_k=[r.top_k if r else -1 for r in requests],
        top_p=[1.0 for _ in requests],
    )


def run_scheduler(adapter: DeepseekV3ForCausalLM, requests: list[Request], kv_cache: list, kv_cache_shape: tuple) -> dict:
    """Continuous batching over the adapter; returns what the run exercised."""
    num_blocks, _, block_size, _ = kv_cache_shape
    width = MAX_MODEL_LEN // block_size
    allocator = BlockAllocator(num_blocks)
    slots: list[Request | None] = [None] * MAX_NUM_SEQS
    waiting = deque(sorted(requests, key=lambda r: r.arrival))
    seen = {"prefills": 0, "decodes": 0, "max_running": 0, "joined_mid_decode": 0}
    step = 0
    while waiting or any(slots):
        joining = []
        while waiting and waiting[0].arrival <= step and None in slots:
            request = waiting.popleft()
            request.slot = slots.index(None)
            request.slots_used.append(request.slot)
            request.blocks = allocator.allocate(-(-len(request.prompt) // block_size))
            slots[request.slot] = request
            joining.append(request)
        if joining:
            seen["joined_mid_decode"] += any(s is not None and s not in joining for s in slots)
            rows: list[Request | None] = list(joining)
            busy = next((s.slot for s in slots if s is not None and s not in joining), None)
            if seen["prefills"] == 1 and busy is not None:
                rows.append(None)  # an empty prompt aimed at a busy slot: must not touch that user's KV
            seq = max(len(r.prompt) for r in joining)
            tokens = torch.zeros(len(rows), seq, dtype=torch.long)
            for i, r in enumerate(rows):
                if r is not None:
                    tokens[i, : len(r.prompt)] = torch.tensor(r.prompt)
            device_sampling = seen["prefills"] % 2 == 1
            out = adapter.prefill_forward(
                tokens=tokens,
                prompt_lens=torch.tensor([len(r.prompt) if r else 0 for r in rows]),
                page_table=_table([r.blocks if r else [] for r in rows], width),
                kv_cache=kv_cache,
                empty_slots=[r.slot if r else busy for r in rows],
                sampling_params=_sampling(rows) if device_sampling else None,
                start_pos=torch.zeros(len(rows), dtype=torch.long),
            )
            for i, r in enumerate(rows):
                if r is None:
                    assert not out[i].any(), "an empty prompt must give zero output"
                    continue
                if device_sampling:
                    r.output.append(int(out[i]))
                else:
                    assert out.shape == (len(rows), seq, adapter.model.vocab_size)
                    assert torch.equal(out[i, -1], out[i, len(r.prompt) - 1]), "padding rows repeat the last logits"
                    r.output.append(int(out[i, len(r.prompt) - 1].argmax()))
            seen["prefills"] += 1
        _retire(slots, allocator)
        running = [s for s in slots if s is not None]
        if running:
            seen["max_running"] = max(seen["max_running"], len(running))
            positions = torch.full((MAX_NUM_SEQS,), -1, dtype=torch.long)
            tokens = torch.zeros(MAX_NUM_SEQS, 1, dtype=torch.long)
            for r in running:
                pos = len(r.prompt) + len(r.output) - 1
                if pos // block_size >= len(r.blocks):
                    r.blocks += allocator.allocate(1)
                positions[r.slot], tokens[r.slot, 0] = pos, r.output[-1]
            device_sampling = seen["decodes"] % 2 == 1
            deferred = seen["decodes"] % 3 == 2
            out = adapter.decode_forward(
                tokens=tokens,
                start_pos=positions,
                page_table=_table([s.blocks if s else [] for s in slots], width),
                kv_cache=kv_cache,
                enable_trace=False,
                read_from_device=not deferred,
                sampling_params=_sampling(slots) if device_sampling else None,
                reset_batch=bool(joining),
            )
            if deferred:
                out, _events = adapter.read_decode_output(out, async_read=True)
            for r in running:
                r.output.append(int(out[r.slot]) if device_sampling else int(out[r.slot, 0].argmax()))
            seen["decodes"] += 1
            _retire(slots, allocator)
        step += 1
    return seen


def _retire(slots: list[Request | None], allocator: BlockAllocator) -> None:
    for i, r in enumerate(slots):
        if r is not None and len(r.output) >= r.max_tokens:
            allocator.release(r.blocks)
            slots[i] = None


def test_scheduler_harness_matches_generator(vllm_model, block_size):
    """Continuous batching on vLLM's non-contiguous page table == the bp generator per prompt alone."""
    adapter = vllm_model
    shape = _kv_cache_shape(adapter, block_size)
    kv_cache = adapter.allocate_kv_cache(shape, torch.bfloat16, adapter.hf_config.num_hidden_layers)
    assert len(kv_cache) == adapter.hf_config.num_hidden_layers
    assert tuple(kv_cache[0].shape) == shape

    vocab = adapter.model.vocab_size
    gen = torch.Generator().manual_seed(3)
    plan = [  # (prompt length, max tokens, arrival step): crosses block boundaries, joins mid-decode, reuses slots
        (5, 4, 0), (70, 3, 0), (62, 5, 0), (12, 3, 1), (33, 3, 2), (7, 4, 3),
    ]
    requests = [
        Request(torch.randint(3, vocab, (n,), generator=gen).tolist(), m, a) for n, m, a in plan
    ]
    requests[3].temperature, requests[3].top_k = 0.7, 1  # sampled through top_k=1: still the greedy token
    seen = run_scheduler(adapter, requests, kv_cache, shape)

    assert seen["joined_mid_decode"] >= 1 and seen["max_running"] == MAX_NUM_SEQS
    assert len({r.slots_used[0] for r in requests}) < len(requests), "some slot was reused"
    assert any(any(b - a != 1 for a, b in zip(r.blocks, r.blocks[1:])) for r in requests if len(r.blocks) > 1)
    generator = BatchParallelGenerator(adapter.model)
    for i, r in enumerate(requests):
        alone = generator.generate([r.prompt], max_new_tokens=r.max_tokens).results[0].tokens
        assert r.output == list(alone), f"request {i} (slot {r.slots_used}): adapter {r.output} != generator {list(alone)}"


# --- refusals the plugin expects ----------------------------------------------------------------


def test_prefix_caching_refused(vllm_model):
    assert DeepseekV3ForCausalLM.model_capabilities["supports_prefix_caching"] is False
    with pytest.raises(UnsupportedVllmFeature, match="prefix caching is not supported"):
        vllm_model.prefill_forward(
            tokens=torch.zeros(2, 40, dtype=torch.long),
            prompt_lens=[40, 40],
            page_table=torch.zeros(2, 4, dtype=torch.int32),
            kv_cache=None,
            empty_slots=[0, 1],
            start_pos=torch.tensor([0, 32]),
        )


@pytest.mark.parametrize(
    "mesh_shape, data_parallel, batch, message",
    [
        ((1, 2), 2, 4, r"tt_data_parallel=2 must divide the mesh rows \(1 of the 1x2 mesh\)"),
        ((4, 8), 3, 128, r"tt_data_parallel=3 must divide the mesh rows \(4 of the 4x8 mesh\)"),
        ((4, 8), 32, 128, r"must divide the mesh rows"),
        ((4, 8), 0, 128, r"positive integer"),
        ((4, 8), 1, 126, r"multiple of the mesh rows \(4\)"),
        ((2, 4), 1, 6, r"3 users per mesh row, which do not split over the 4 mesh columns"),
    ],
)
def test_mesh_and_data_parallel_refused(mesh_shape, data_parallel, batch, message):
    with pytest.raises(UnsupportedVllmFeature, match=message):
        check_parallel_layout(mesh_shape, data_parallel, batch)


@pytest.mark.parametrize("mesh_shape, data_parallel, batch", [((4, 8), 1, 128), ((4, 8), 2, 128), ((4, 8), 4, 32), ((1, 1), 1, 1)])
def test_mesh_and_data_parallel_accepted(mesh_shape, data_parallel, batch):
    check_parallel_layout(mesh_shape, data_parallel, batch)


def test_initialize_refuses_layout_before_loading(vllm_model, monkeypatch):
    """The refusal comes from initialize_vllm_model itself, before any weights are read."""
    monkeypatch.setenv(MODEL_PATH_ENV, "/nonexistent/model")
    with pytest.raises(UnsupportedVllmFeature, match="tt_data_parallel=3 must divide the mesh rows"):
        DeepseekV3ForCausalLM.initialize_vllm_model(vllm_model.hf_config, vllm_model.mesh_device, 4, 128, tt_data_parallel=3)
    with pytest.raises(UnsupportedVllmFeature, match="optimizations='fastest'"):
        DeepseekV3ForCausalLM.initialize_vllm_model(vllm_model.hf_config, vllm_model.mesh_device, 4, 128, optimizations="fastest")


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({2: 16}, UnsupportedVllmFeature, r"block_size 16 is not supported.*multiple of 32"),
        ({2: 48}, UnsupportedVllmFeature, r"block_size 48"),
        ({1: 8}, ValueError, r"MLA caches 1 latent KV head"),
        ({3: 512}, ValueError, r"head_size 512 != kv_lora_rank \+ qk_rope_head_dim"),
        ({0: 1}, ValueError, r"cannot hold one user's max_seq_len"),
    ],
)
def test_kv_cache_shape_refused(vllm_model, block_size, change, error, message):
    shape = list(_kv_cache_shape(vllm_model, block_size))
    for index, value in change.items():
        shape[index] = value
    with pytest.raises(error, match=message):
        vllm_model.allocate_kv_cache(tuple(shape), torch.bfloat16, vllm_model.hf_config.num_hidden_layers)


def test_kv_cache_layer_count_refused(vllm_model, block_size):
    with pytest.raises(ValueError, match="vLLM asks for 7 layers, the model has 1"):
        vllm_model.allocate_kv_cache(_kv_cache_shape(vllm_model, block_size), torch.bfloat16, 7)


def test_kv_capacity_classmethod():
    assert DeepseekV3ForCausalLM.get_max_tokens_all_users(max_model_len=4096, max_num_seqs=32) == 4096 * 32
    with pytest.raises(ValueError, match="needs max_model_len and max_num_seqs"):
        DeepseekV3ForCausalLM.get_max_tokens_all_users(model_name="deepseek-ai/DeepSeek-R1-0528")


def test_model_page_table_refused(vllm_model):
    """TtModel names what is wrong with an external page table (shape, block ids past the cache)."""
    model = vllm_model.model
    tokens, positions = torch.zeros(MAX_NUM_SEQS, dtype=torch.long), torch.full((MAX_NUM_SEQS,), -1)
    with pytest.raises(ValueError, match=rf"page_table must be \[max_batch_size={MAX_NUM_SEQS}, blocks\], got \(2, 4\)"):
        model.decode(tokens, positions, page_table=torch.zeros(2, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"page_table holds block 100000; the cache has \d+ blocks"):
        model.decode(tokens, positions, page_table=torch.full((MAX_NUM_SEQS, 4), 100000, dtype=torch.int32))
