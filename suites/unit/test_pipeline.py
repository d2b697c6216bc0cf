"""The row-pipelined model's pieces: stage assignment, the socket hand-off between rows, what each row
holds (per-device bytes measured on the loaded tensors), and pp == bp tokens on the embedded trained
model (4 layers: 2 dense, 2 MoE) on a 2x2 mesh (2 stages of 2 layers)."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from deepseek_tt.generator import make_generator
from deepseek_tt.modules.pipeline import PipelineConfigError, assign_stages, create_stage_sockets, stage_meshes
from deepseek_tt.runtime.memory import bytes_per_device, iter_tensors, kv_cache_bytes_per_device, weight_bytes_per_device
from deepseek_tt.runtime.pipelined_model import PipelinedTtModel
from deepseek_tt.runtime.tt_model import TtModel

pytestmark = pytest.mark.unit


def test_stages_are_contiguous_in_model_order():
    assert assign_stages(4, 4) == [range(0, 1), range(1, 2), range(2, 3), range(3, 4)]
    assert assign_stages(61, 4) == [range(0, 16), range(16, 31), range(31, 46), range(46, 61)]
    assert assign_stages(3, 1) == [range(0, 3)]


def test_too_few_layers_for_the_rows_is_a_clear_error():
    with pytest.raises(PipelineConfigError, match="2 layers do not fill 4 rows"):
        assign_stages(2, 4)


def _open(rows: int, cols: int):
    return ttnn.open_mesh_device(ttnn.MeshShape(rows, cols))


def test_socket_hands_each_column_to_the_next_row_only():
    mesh = _open(3, 2)
    meshes = stage_meshes(mesh)
    assert [tuple(m.shape) for m in meshes] == [(1, 2)] * 3 and stage_meshes(mesh) == meshes  # created once
    (send01, recv01), (send12, recv12) = create_stage_sockets(meshes)
    x = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 1, 1, 32, 2)  # device c of row 0 holds x[c]
    sent = ttnn.from_torch(x.reshape(2, 32, 2).permute(1, 0, 2).reshape(1, 1, 32, 4), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                           device=meshes[0], mesh_mapper=ttnn.ShardTensorToMesh(meshes[0], dim=3))
    row1 = ttnn.full([1, 1, 32, 2], 7.0, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=meshes[1])
    row2 = ttnn.full([1, 1, 32, 2], 7.0, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=meshes[2])
    assert ttnn.experimental.send_async(sent, send01) == []
    with pytest.raises(RuntimeError, match="nothing was sent"):
        ttnn.experimental.recv_async(row2, recv12)  # row 2 is not connected to row 0: nothing arrives there
    assert ttnn.experimental.recv_async(row1, recv01) == [row1]
    assert torch.equal(row1._data, sent._data)  # (0, c) -> (1, c): each column's shard, and only into row 1
    assert bool((row2._data == 7.0).all())
    with pytest.raises(RuntimeError, match="not on the socket's mesh"):
        ttnn.experimental.send_async(sent, send12)


def test_recv_keeps_devices_without_a_connection():
    mesh = _open(2, 2)
    a, b = stage_meshes(mesh)
    conn = [ttnn.SocketConnection(ttnn.MeshCoreCoord(ttnn.MeshCoordinate(0, 1), ttnn.CoreCoord(0, 0)),
                                  ttnn.MeshCoreCoord(ttnn.MeshCoordinate(0, 1), ttnn.CoreCoord(0, 0)))]
    send, recv = ttnn.create_socket_pair(a, b, ttnn.SocketConfig(conn, ttnn.SocketMemoryConfig(ttnn.BufferType.L1, 4096)))
    x = ttnn.full([1, 1, 32, 32], 3.0, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=a)
    out = ttnn.zeros([1, 1, 32, 32], dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=b)
    ttnn.experimental.send_async(x, send)
    ttnn.experimental.recv_async(out, recv)
    assert bool((out._data[0] == 0).all()) and bool((out._data[1] == 3.0).all())


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """bp and pp models of the embedded trained model on a 2x2 mesh."""
    from reference_models.embedded import embedded_model_path

    try:
        path = embedded_model_path()
    except FileNotFoundError as exc:
        pytest.skip(f"embedded trained model not available: {exc}")
    mesh = _open(2, 2)
    cache = tmp_path_factory.mktemp("pp-cache")
    common = dict(max_seq_len=64, progress=False)
    return TtModel.load(path, mesh, cache, **common), PipelinedTtModel.load(path, mesh, cache, **common)


def test_each_row_holds_only_its_stage(tiny_models):
    bp, pp = tiny_models
    cols = 2
    for row, (layers, stage, mesh) in enumerate(zip(pp.stage_layers, pp._prefill_cfg["stages"], pp.meshes)):
        assert len(stage["layers"]) == len(layers) == 2
        assert ("embedding" in stage) == (row == 0) and ("lm_head" in stage) == (row == 1)
        tensors = list(iter_tensors(stage))
        assert tensors and all(t.device() is mesh and t.num_shards == cols for t in tensors)  # only this row's devices
    weights_bp, weights_pp = weight_bytes_per_device(bp), weight_bytes_per_device(pp)
    assert len(set(weights_bp)) == 1 and weights_pp[0] == weights_pp[1] and weights_pp[2] == weights_pp[3]
    # Row 0 holds the dense layers and the embedding, row 1 the MoE layers, final norm and LM head: together
    # one copy of what the batched model replicates on every row, and its experts once per row (R x).
    expert = frozenset({"experts"})
    experts_bp = bytes_per_device([(t, range(4)) for t in iter_tensors(bp._prefill_cfg, keys=expert)], 4)
    experts_pp = bytes_per_device([(t, range(2 * r, 2 * r + 2)) for r, s in enumerate(pp._prefill_cfg["stages"])
                                   for t in iter_tensors(s, keys=expert)], 4)
    assert experts_pp[0] == 0 and experts_pp[2] == 2 * experts_bp[0] > 0
    assert (weights_pp[0] - experts_pp[0]) + (weights_pp[2] - experts_pp[2]) == weights_bp[0] - experts_bp[0]
    assert sum(weights_pp) < sum(weights_bp)  # the mesh as a whole stores the replicated weights once, not R times
    # KV: a row's layers keep the pages of both micro-batches: as many bytes as all layers of one row's users
    assert kv_cache_bytes_per_device(pp) == kv_cache_bytes_per_device(bp)


def test_stage_hidden_states_reach_only_the_next_row(tiny_models, monkeypatch):
    _, pp = tiny_models
    sends, recvs = [], []
    real_send, real_recv = ttnn.experimental.send_async, ttnn.experimental.recv_async
    monkeypatch.setattr(ttnn.experimental, "send_async", lambda x, s: (sends.append((x.device(), s, x._data.clone())), real_send(x, s))[1])
    monkeypatch.setattr(ttnn.experimental, "recv_async", lambda o, s: (recvs.append((o.device(), s)), real_recv(o, s))[1])
    item = pp.start_prefill(torch.arange(5, 45), user_id=40)
    pp.run_stage(item, 0)
    assert len(sends) == len(recvs) == 1
    assert sends[0][0] is pp.meshes[0] and recvs[0][0] is pp.meshes[1] and item.x.device() is pp.meshes[1]
    assert torch.equal(item.x._data, sends[0][2])  # the hidden state, column by column, now on row 1 only
    pp.run_stage(item, 1)
    assert len(sends) == 1 and item.logits.shape == (40, pp.vocab_size)  # the last stage hands nothing on
    pp.reset()


def test_pp_tokens_equal_bp_tokens_and_statistics(tiny_models):
    bp, pp = tiny_models
    prompts = [[5, 9, 11, 3], [7, 2], list(range(20, 37)), [100]]
    out_bp = make_generator("bp", bp).generate(prompts, 4)
    out_pp = make_generator("pp", pp).generate(prompts, 4)
    assert [r.tokens for r in out_pp.results] == [r.tokens for r in out_bp.results]
    stats = out_pp.statistics.to_dict()
    pipe = stats["pipeline"]
    assert pipe["stages"] == 2 and pipe["micro_batches"] == 2 and pipe["layers_per_stage"] == [[0, 1], [2, 3]]
    assert len(pipe["stage_time_s"]) == 2 and all(t > 0 for t in pipe["stage_time_s"])
    assert 0.0 < pipe["bubble_fraction"] < 1.0 and pipe["ticks"] > 0
    assert stats["decode_steps"] == 3 and stats["new_tokens"] == 16
    assert "pipeline" not in out_bp.statistics.to_dict()
    with pytest.raises(ValueError, match="not supported with --generator pp"):
        make_generator("pp", pp, enable_trace=True)


def test_external_page_table_is_refused_in_one_line_naming_the_option(tiny_models):
    from deepseek_tt.serving.vllm_adapter import DeepseekV3ForCausalLM

    _, pp = tiny_models
    table = torch.zeros(pp.max_batch_size, 2, dtype=torch.int32)
    calls = {
        "prefill: page_table=": lambda: pp.prefill(torch.tensor([5, 9]), 0, page_table=table),
        "decode: page_table=": lambda: pp.decode(torch.zeros(pp.max_batch_size, dtype=torch.long),
                                                 torch.full((pp.max_batch_size,), -1), page_table=table),
        "allocate_kv_cache": lambda: pp.allocate_kv_cache(64, 32),
        "allocate_kv_cache ": lambda: DeepseekV3ForCausalLM(pp).allocate_kv_cache((64, 1, 32, pp.hf_config.kv_lora_rank + pp.hf_config.qk_rope_head_dim),
                                                                                  torch.bfloat16, pp.hf_config.num_hidden_layers),
    }
    for option, call in calls.items():
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and message.startswith(option.strip()) and "--generator pp" in message and "--generator bp" in message


def test_roofline_stored_bytes_equal_the_measured_per_device_bytes(tiny_models):
    """The roofline's per-device weight and KV-cache bytes (bp and pp) are those the loaded models hold, byte for
    byte (the demo's device-memory check relies on them)."""
    from deepseek_tt.perf.roofline import stored_kv_cache_bytes_per_device, stored_weight_bytes_per_device

    bp, pp = tiny_models
    for model, parallelism in ((bp, "bp"), (pp, "pp")):
        measured = weight_bytes_per_device(model)
        computed = stored_weight_bytes_per_device(model.hf_config, "default", (2, 2), parallelism)
        assert [round(c) for c in computed] == [measured[0], measured[2]], parallelism
        measured_kv = kv_cache_bytes_per_device(model)
        computed_kv = stored_kv_cache_bytes_per_device(model.hf_config, "default", (2, 2), parallelism, model.max_seq_len)
        assert [round(c) for c in computed_kv] == [measured_kv[0], measured_kv[2]] and measured_kv[0] > 0, parallelism
