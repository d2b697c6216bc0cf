"""The emulator against golden vectors made by the real ttnn 0.81.1 wheel (fixtures/golden/).

Regenerate them with ``python -m suites.conformance.make_golden_vectors`` under Python 3.12 with the
wheel (``tox -e conformance`` checks the same things live).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepseek_tt.backend import emulator as ttnn
from suites.conformance import api_surface, cases
from suites.conformance.make_golden_vectors import API_FILE, GOLDEN_DIR, VECTORS_FILE, validation_outcomes

pytestmark = pytest.mark.unit

@pytest.fixture(scope="module")
def vectors() -> dict:
    return torch.load(GOLDEN_DIR / VECTORS_FILE, weights_only=True)


@pytest.fixture(scope="module")
def api() -> dict:
    return json.loads((GOLDEN_DIR / API_FILE).read_text(encoding="utf-8"))


def _assert_same_bits(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    a, e = actual.float(), expected.float()
    assert a.shape == e.shape, f"{what}: shape {list(a.shape)} != {list(e.shape)}"
    same = (a.view(torch.int32) == e.view(torch.int32)) | (a.isnan() & e.isnan())
    if not bool(same.all()):
        bad = (~same).nonzero()[:5].tolist()
        detail = [(i, a[tuple(i)].item(), e[tuple(i)].item()) for i in bad]
        pytest.fail(f"{what}: {int((~same).sum())} values differ from real ttnn, e.g. (index, emulator, ttnn) {detail}")


def test_inputs_are_the_committed_ones(vectors):
    for name, x in cases.bfp_cases().items():
        assert torch.equal(vectors["bfp"][name]["input"], x) or bool((x.isnan() == vectors["bfp"][name]["input"].isnan()).all())


@pytest.mark.parametrize("dtype_name", ["bfloat8_b", "bfloat4_b", "bfloat16"])
def test_float_conversions_bit_exact(vectors, dtype_name):
    dtype = getattr(ttnn, dtype_name)
    checked = 0
    for name, entry in vectors["bfp"].items():
        if dtype_name not in entry:
            continue
        layout = ttnn.TILE_LAYOUT if dtype_name != "bfloat16" else ttnn.ROW_MAJOR_LAYOUT
        emulated = ttnn.to_torch(ttnn.from_torch(entry["input"], dtype=dtype, layout=layout))
        _assert_same_bits(emulated, entry[dtype_name], f"{name} -> {dtype_name}")
        checked += 1
    assert checked >= 10


def test_integer_conversions(vectors):
    for name, entry in vectors["integers"].items():
        x = entry["input"]
        assert ttnn.from_torch(x).dtype.name == entry["inferred_dtype"], name
        for label in ("uint32", "int32", "uint16"):
            emulated = ttnn.to_torch(ttnn.from_torch(x, dtype=getattr(ttnn, label))).to(torch.int64)
            keep = torch.ones_like(x, dtype=torch.bool)
            if label == "uint16" and x.is_floating_point():
                keep = (x >= 0) & (x < 65536)  # out of range: ttnn saturates or wraps by SIMD lane (NUMERICS.md)
            assert torch.equal(emulated[keep], entry[label][keep]), f"{name} -> {label}"


def test_tile_padded_shapes(vectors):
    for case in vectors["padded_shapes"]:
        t = ttnn.from_torch(torch.zeros(case["shape"]), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)
        assert list(t.padded_shape) == case["padded_shape"], case


def test_mesh_mapper_shards(vectors):
    x = cases.mapper_input()
    for name, mesh_shape, spec in cases.MAPPER_CASES:
        placements = [ttnn.PlacementShard(d) if kind == "shard" else ttnn.PlacementReplicate() for kind, d in spec]
        mapper = ttnn.create_mesh_mapper(ttnn.MeshShape(list(mesh_shape)), ttnn.MeshMapperConfig(placements))
        emulated = ttnn.from_torch(x, dtype=ttnn.float32, mesh_mapper=mapper)._data
        assert torch.equal(emulated, vectors["mappers"][name]), name


def test_shard2d_none_dims_on_4x8(vectors):
    """``ShardTensor2dMesh`` with a None (replicated) mesh axis, as MLA code uses it on a 4x8 mesh."""
    for name, dims, shape, dtype in cases.SHARD2D_CASES:
        mesh = ttnn.MeshShape(4, 8)
        x = cases.shard2d_input(shape, dtype)
        t = ttnn.from_torch(x, dtype=ttnn.int32 if dtype == torch.int32 else ttnn.float32,
                            mesh_mapper=ttnn.ShardTensor2dMesh(mesh, dims=dims, mesh_shape=mesh))
        shards = torch.stack([ttnn.to_torch(s) for s in ttnn.get_device_tensors(t)])
        assert torch.equal(shards, vectors["shard2d"][name]), name


def test_special_conversions(vectors):
    special = vectors["special"]
    mapper = ttnn.create_mesh_mapper(ttnn.MeshShape(1, 2), ttnn.MeshMapperConfig([ttnn.PlacementReplicate(), ttnn.PlacementShard(1)]))
    per_shard = ttnn.from_torch(cases.bfp_shard_input(), dtype=ttnn.bfloat4_b, layout=ttnn.TILE_LAYOUT, mesh_mapper=mapper)
    _assert_same_bits(per_shard._data, special["bfp4_per_shard"], "bfp4 per shard")
    padded = ttnn.from_torch(torch.ones(3, 20), dtype=ttnn.bfloat4_b, layout=ttnn.TILE_LAYOUT, pad_value=64.0)
    _assert_same_bits(ttnn.to_torch(padded), special["bfp4_pad_value_64"], "bfp4 pad_value 64")
    col = ttnn.from_torch(cases.bfp_cases()["outliers_32x128"], dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, col_tilize=True)
    _assert_same_bits(ttnn.to_torch(col), special["bfp8_col_tilize"], "bfp8 col_tilize")


def test_validation_matches_real_ttnn(vectors):
    assert validation_outcomes(ttnn) == vectors["validation"]


def test_emulator_signatures_match_real_ttnn(api):
    problems = {}
    for name, real in api["signatures"].items():
        if name in api_surface.NOT_CONSTRUCTED:
            continue
        try:
            emulated = api_surface.resolve(ttnn, name)
        except AttributeError:
            continue  # not emulated (yet): covered by the model-use check below
        found = api_surface.signature_problems(real, api_surface.describe(emulated))
        if found:
            problems[name] = found
    assert not problems, "emulator signatures differ from ttnn 0.81.1:\n" + "\n".join(
        f"  ttnn.{name}: {'; '.join(p)}" for name, p in sorted(problems.items()))


def test_tensor_and_mesh_device_members_match_real_ttnn(api):
    emulated = api_surface.describe_members(ttnn)
    problems = {name: api_surface.member_problems(real, emulated.get(name)) for name, real in api["members"].items()}
    problems = {name: p for name, p in problems.items() if p}
    assert not problems, "Tensor / MeshDevice members differ from ttnn 0.81.1:\n" + "\n".join(
        f"  ttnn.{name}: {'; '.join(p)}" for name, p in sorted(problems.items()))


def test_emulator_has_no_names_real_ttnn_lacks(api):
    extra = set(api_surface.public_names(ttnn)) - set(api["names"]) - api_surface.EMULATOR_ONLY_NAMES
    assert not extra, f"emulator exports names that real ttnn 0.81.1 does not have: {sorted(extra)}"


def test_model_code_uses_real_names_that_the_emulator_has(api):
    real_names = set(api["names"])
    uses = api_surface.model_code_ttnn_names()
    not_real = {n: f for n, f in uses.items() if n not in real_names}
    assert not not_real, f"model code uses names real ttnn 0.81.1 lacks: {not_real}"
    missing = {n: f for n, f in uses.items() if not api_surface.has_name(ttnn, n)}
    assert not missing, f"model code uses ttnn names the emulator lacks: {missing}"

