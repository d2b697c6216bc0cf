"""Convert one full-dims MoE layer (the ``full`` preset: 256 experts, hidden 7168, moe_intermediate 2048)
from random weights into ttnn weight files, and report its wall time, CPU time and peak RSS.

Run it in its own process so that the peak RSS is the conversion's own::

    python -m suites.perf.layer_conversion --mesh 4x8 --out /tmp/layer   # prints one JSON object

``--files N`` converts only the first N slot chunks of the experts (a quick extrapolation); the output
directory is created and left in place (the caller deletes it: a full layer is about 22.5 GB).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

PRESET = "full"
#: the first MoE layer of the preset (layers 0-2 are dense)
LAYER = 3


def convert_layer(mesh: tuple[int, int], out: Path, files: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Convert layer ``LAYER``'s MoE weights on a ``mesh`` (emulated) into ``out``; the measurements."""
    from deepseek_tt.backend import ttnn
    from deepseek_tt.modules.experts import Experts
    from deepseek_tt.modules.moe import MoE
    from deepseek_tt.weights.convert import RandomStateDict
    from reference_models.presets import get_preset

    hf_config = get_preset(PRESET, num_layers=LAYER + 1)
    state_dict = RandomStateDict(hf_config, seed).view(f"model.layers.{LAYER}.mlp.")
    device = ttnn.open_mesh_device(ttnn.MeshShape(*mesh))
    chunks = Experts.slot_chunks(hf_config, device)
    if files is not None:  # a prefix of the experts' files (the other modules are converted whole)
        Experts.slot_chunks = classmethod(lambda cls, *_: chunks[:files])  # type: ignore[method-assign]
    experts = sum(size for _, size in chunks[: files or len(chunks)]) * mesh[0] * mesh[1]
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    MoE.convert_weights(hf_config, state_dict, out, device, progress=False)
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    written = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {
        "mesh": f"{mesh[0]}x{mesh[1]}",
        "experts": experts,
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "bytes_written": written,
    }


def _mesh(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mesh {text!r}: expected ROWSxCOLS, e.g. 4x8") from None
    return rows, cols


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", type=_mesh, default=(1, 1), help="emulated mesh ROWSxCOLS (default 1x1)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (must not exist)")
    parser.add_argument("--files", type=int, default=None, help="convert only the first N expert files per projection")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.exit(2, f"--out {args.out}: already exists; give a new directory\n")
    print(json.dumps(convert_layer(args.mesh, args.out, args.files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
