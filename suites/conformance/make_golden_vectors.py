"""Write golden vectors made by the real ttnn wheel to ``fixtures/golden/`` (run under Python 3.12).

    .venv312/bin/python -m suites.conformance.make_golden_vectors

(the mock cluster descriptor the wheel needs is generated: ``suites/conformance/mock_cluster.py``).

Outputs (checked by ``suites/unit/test_emulator_golden.py`` on Python 3.11 without ttnn):
- ``ttnn_host_conversion.pt``: inputs and real outputs of bfloat8_b / bfloat4_b / bfloat16 / integer
  conversions, tile padded shapes, mesh-mapper shards (a ``torch.save`` dict of tensors and lists);
- ``ttnn_api.json``: real ttnn's public names and the signatures of the names the model needs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from . import api_surface, cases
from .real_ttnn import REAL_TTNN_VERSION, load_real_ttnn

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
VECTORS_FILE = "ttnn_host_conversion.pt"
API_FILE = "ttnn_api.json"
PADDED_SHAPE_CASES = [(5,), (3, 5), (2, 5, 40), (1, 1, 32, 64), (33, 1), (2, 3, 64, 65)]


def _compact(values: torch.Tensor) -> torch.Tensor:
    """Real fp32 outputs of bfp conversions stored as bf16 (asserting that this is exact)."""
    packed = values.to(torch.bfloat16)
    same = (packed.float().view(torch.int32) == values.float().view(torch.int32)) | values.isnan()
    assert bool(same.all()), "a bfp value is not exactly representable in bf16"
    return packed


def _placements(ttnn: Any, spec: list) -> list:
    return [ttnn.PlacementShard(dim) if kind == "shard" else ttnn.PlacementReplicate() for kind, dim in spec]


def host_shards(ttnn: Any, tensor: Any) -> torch.Tensor:
    return torch.stack([ttnn.to_torch(t) for t in ttnn.get_device_tensors(tensor)])


def real_vectors(ttnn: Any) -> dict[str, Any]:
    tile = ttnn.TILE_LAYOUT
    bfp: dict[str, dict[str, torch.Tensor]] = {}
    for name, x in cases.bfp_cases().items():
        entry = {"input": x}
        for label, dtype in (("bfloat8_b", ttnn.bfloat8_b), ("bfloat4_b", ttnn.bfloat4_b)):
            entry[label] = _compact(ttnn.to_torch(ttnn.from_torch(x, dtype=dtype, layout=tile)))
        if x.dtype == torch.float32:
            entry["bfloat16"] = ttnn.to_torch(ttnn.from_torch(x, dtype=ttnn.bfloat16))
        bfp[name] = entry

    integers = {}
    for name, x in cases.integer_cases().items():
        entry = {"input": x, "inferred_dtype": ttnn.from_torch(x).dtype.name}
        for label, dtype in (("uint32", ttnn.uint32), ("int32", ttnn.int32), ("uint16", ttnn.uint16)):
            entry[label] = ttnn.to_torch(ttnn.from_torch(x, dtype=dtype)).to(torch.int64)
        integers[name] = entry

    padded = []
    for shape in PADDED_SHAPE_CASES:
        t = ttnn.from_torch(torch.zeros(shape), dtype=ttnn.bfloat16, layout=tile)
        padded.append({"shape": list(shape), "padded_shape": list(t.padded_shape)})

    mappers = {}
    x = cases.mapper_input()
    for name, mesh_shape, spec in cases.MAPPER_CASES:
        mapper = ttnn.create_mesh_mapper(ttnn.MeshShape(list(mesh_shape)), ttnn.MeshMapperConfig(_placements(ttnn, spec)))
        mappers[name] = host_shards(ttnn, ttnn.from_torch(x, dtype=ttnn.float32, mesh_mapper=mapper))
    shard_mapper = ttnn.create_mesh_mapper(ttnn.MeshShape(1, 2), ttnn.MeshMapperConfig([ttnn.PlacementReplicate(), ttnn.PlacementShard(1)]))
    special = {
        "bfp4_per_shard": _compact(host_shards(ttnn, ttnn.from_torch(cases.bfp_shard_input(), dtype=ttnn.bfloat4_b,
                                                                      layout=tile, mesh_mapper=shard_mapper))),
        "bfp4_pad_value_64": _compact(ttnn.to_torch(ttnn.from_torch(torch.ones(3, 20), dtype=ttnn.bfloat4_b, layout=tile,
                                                                    pad_value=64.0))),
        "bfp8_col_tilize": _compact(ttnn.to_torch(ttnn.from_torch(cases.bfp_cases()["outliers_32x128"], dtype=ttnn.bfloat8_b,
                                                                  layout=tile, col_tilize=True))),
    }
    return {"ttnn_version": REAL_TTNN_VERSION, "validation": validation_outcomes(ttnn), "bfp": bfp, "integers": integers, "padded_shapes": padded,
            "mappers": mappers, "special": special}


def validation_outcomes(module: Any) -> dict[str, str]:
    """case name -> "raises" or "ok" for ``cases.VALIDATION_CASES`` run against ``module``."""
    outcomes = {}
    for name, case in cases.VALIDATION_CASES.items():
        try:
            case(module)
            outcomes[name] = "ok"
        except Exception:
            outcomes[name] = "raises"
    return outcomes


def real_api(ttnn: Any) -> dict[str, Any]:
    from deepseek_tt.backend import emulator

    names = set(api_surface.MODEL_API_NAMES) | set(api_surface.model_code_ttnn_names())
    names |= set(api_surface.public_names(emulator))
    real_names = api_surface.public_names(ttnn)
    described = {}
    for name in sorted(names):
        try:
            obj = api_surface.resolve(ttnn, name)
        except AttributeError:
            continue
        described[name] = api_surface.describe(obj)
    return {"ttnn_version": REAL_TTNN_VERSION, "names": real_names, "signatures": described,
            "members": api_surface.describe_members(ttnn)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR, help=f"output directory (default {GOLDEN_DIR})")
    args = parser.parse_args(argv)
    ttnn = load_real_ttnn()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(real_vectors(ttnn), args.out / VECTORS_FILE)
    (args.out / API_FILE).write_text(json.dumps(real_api(ttnn), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for name in (VECTORS_FILE, API_FILE):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
