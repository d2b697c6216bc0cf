"""MoE placement and streamed conversion: expert -> device mapping, slot files, bounded host memory."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.modules import experts as experts_module
from deepseek_tt.modules.base import sub_state_dict
from deepseek_tt.modules.experts import Experts, expert_device, experts_per_device
from deepseek_tt.modules.moe import expert_mapping
from deepseek_tt.modules.moe_gate import MoEGate
from reference_models.presets import get_preset
from reference_models.random_weights import random_tensor
from reference_models.state_dict_keys import layer_weight_specs

pytestmark = pytest.mark.unit


def _config(**changes):
    config = get_preset("tiny", num_layers=2)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


class CountingStateDict(Mapping[str, torch.Tensor]):
    """Random official-key weights of the tiny preset's MoE experts; counts reads since the last reset."""

    def __init__(self, config, layer: int = 1) -> None:
        prefix = f"model.layers.{layer}.mlp.experts."
        self.specs = {k[len(prefix):]: (k, s) for k, s in layer_weight_specs(config, layer).items() if k.startswith(prefix)}
        self.reads_since_save = 0
        self.max_reads_between_saves = 0
        self.events: list[str] = []  # one "read" per read (list.append is atomic across threads)

    def __getitem__(self, key: str) -> torch.Tensor:
        full, spec = self.specs[key]
        self.reads_since_save += 1
        self.max_reads_between_saves = max(self.max_reads_between_saves, self.reads_since_save)
        self.events.append("read")
        return random_tensor(full, spec, seed=3)

    def __iter__(self) -> Iterator[str]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)


def test_expert_mapping_places_expert_e_on_device_e_div_el():
    config = get_preset("galaxy-tiny")
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(4, 8))
    per_device = experts_per_device(config, mesh)
    mapping = expert_mapping(config, mesh)[0, 0]
    assert per_device == 2 and mapping.shape == (64, 32)
    assert torch.equal(mapping.sum(dim=1), torch.ones(64, dtype=mapping.dtype))
    assert [int(mapping[e].argmax()) for e in range(64)] == [e // 2 for e in range(64)]
    assert expert_device(63, config, mesh) == 31


def test_experts_that_do_not_split_over_the_mesh_are_refused():
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(4, 8))
    with pytest.raises(ValueError, match="n_routed_experts=16 does not split over the 32 devices"):
        experts_per_device(get_preset("tiny"), mesh)


def test_gate_refuses_unsupported_routing():
    with pytest.raises(ValueError, match="scoring_func 'softmax'"):
        MoEGate.check_config(_config(scoring_func="softmax"))
    with pytest.raises(ValueError, match="groups of at least 2 experts"):
        MoEGate.check_config(_config(n_group=16))


def test_sub_state_dict_is_lazy():
    source = CountingStateDict(get_preset("tiny", num_layers=2))
    view = sub_state_dict(source, "3.")
    assert sorted(view) == ["down_proj.weight", "gate_proj.weight", "up_proj.weight"]
    assert source.reads_since_save == 0
    assert view["up_proj.weight"].shape == (64, 128)


def test_expert_conversion_streams_one_slot_at_a_time_and_places_experts(tmp_path, monkeypatch):
    """On a 2x2 mesh (4 experts per device) each saved file holds two slots (8 experts, two per device),
    read just before it is written (plus the reader's look-ahead of one device's two slots); loading stacks
    the slots so device d holds experts d*4 .. d*4+3."""
    config = get_preset("tiny", num_layers=2)  # 16 experts
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 2))
    source = CountingStateDict(config)
    events = source.events  # "read" (reader thread) / "join" (a file's shards joined, just before its dump)
    saved = []
    real_join, real_dump = ttnn.from_host_shards, ttnn.dump_tensor

    def counting_join(shards, mesh_shape):
        events.append("join")
        return real_join(shards, mesh_shape)

    def recording_dump(path, tensor, **kwargs):
        saved.append((tensor.num_shards, tuple(tensor.shape)))
        return real_dump(path, tensor, **kwargs)

    monkeypatch.setattr(ttnn, "from_host_shards", counting_join)
    monkeypatch.setattr(ttnn, "dump_tensor", recording_dump)
    wc = Experts.convert_weights(config, source, tmp_path, mesh, dtype_policy="high_precision", progress=False)
    windows = [len(w) for w in "".join("r" if e == "read" else "|" for e in events).split("|")[:-1]]
    assert experts_module.EXPERTS_PER_FILE == 8 and len(windows) == 6
    # each file's 8 experts, give or take the reader's look-ahead of one device's 2 slots: never the layer
    assert all(6 <= n <= 8 + 2 for n in windows) and sum(windows) <= 3 * 16, windows
    assert saved == [(4, (1, 2, 128, 64))] * 2 + [(4, (1, 2, 64, 128))] + [(4, (1, 2, 128, 64))] * 2 + [(4, (1, 2, 64, 128))]

    cfg = Experts.run_config(Experts.prefill_model_config(config, mesh, dtype_policy="high_precision"), wc, Experts.create_state(config, mesh))
    w1 = ttnn.to_torch(cfg["w1"].input_tensor_b, mesh_composer=ttnn.ConcatMeshToTensor(mesh, dim=1))[0]  # [16, hidden, I]
    w2 = ttnn.to_torch(cfg["w2"].input_tensor_b, mesh_composer=ttnn.ConcatMeshToTensor(mesh, dim=1))[0]  # [16, I, hidden]
    for e in (0, 5, 15):
        assert torch.equal(w1[e], source[f"{e}.gate_proj.weight"].T.to(torch.bfloat16))
        assert torch.equal(w2[e], source[f"{e}.down_proj.weight"].T.to(torch.bfloat16))


def test_router_weight_split_is_exact_and_tf32_representable():
    from deepseek_tt.modules.moe_gate import split_for_matmul

    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) * 0.02
    hi, lo = split_for_matmul(w)
    assert torch.equal(hi + lo, w)
    assert not (hi.view(torch.int32) & ((1 << 13) - 1)).any()  # 10 mantissa bits
    assert lo.abs().max() <= w.abs().max() * 2.0**-10


def test_slot_chunks_bound_each_file_to_a_few_experts():
    config = get_preset("galaxy-tiny")  # 64 experts
    one = ttnn.open_mesh_device(ttnn.MeshShape(1, 1))
    galaxy = ttnn.open_mesh_device(ttnn.MeshShape(4, 8))
    assert Experts.slot_chunks(config, one) == [(first, 8) for first in range(0, 64, 8)]
    assert Experts.slot_chunks(config, galaxy) == [(0, 1), (1, 1)]
