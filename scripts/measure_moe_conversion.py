"""Time and peak host memory of converting one full-dims MoE layer's routed experts from an fp8 checkpoint.

Writes (once) an official-format fp8 checkpoint of a 1-layer full-dims DeepSeek-V3 whose only layer is a
MoE layer with ``--experts`` routed experts (the full model's 256 do not fit this machine's disk and time:
one layer is 256 x 3 x 7168 x 2048 fp8 bytes = 11.3 GB), then converts the experts with
``Experts.convert_weights`` from the lazy state dict (fp8 dequantized block-wise on access), streamed,
with the default dtype policy, and prints seconds, seconds per expert, peak RSS above the baseline and
the extrapolation to 256 experts::

    python scripts/measure_moe_conversion.py --checkpoint /tmp/ds-full-moe16 --experts 16 --mesh 1x1
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path


def rss_mb() -> float:
    """Current resident set size (MiB), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakRss:
    """Samples the RSS every 20 ms while active (the process-lifetime peak would include the writer)."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="model directory (written when missing)")
    parser.add_argument("--experts", type=int, default=16, help="routed experts of the checkpoint's MoE layer")
    parser.add_argument("--mesh", default="1x1", help="mesh shape RxC to convert for")
    parser.add_argument("--out", type=Path, default=None, help="converted-weight directory (default: a temp dir, removed)")
    args = parser.parse_args()

    import torch

    from deepseek_tt.backend import ttnn
    from deepseek_tt.config.mesh import parse_mesh_shape
    from deepseek_tt.modules.experts import EXPERTS_PER_FILE, Experts
    from deepseek_tt.weights import LazyStateDict, load_hf_config
    from reference_models.checkpoint import write_checkpoint
    from reference_models.presets import get_preset

    if not (args.checkpoint / "config.json").is_file():
        config = get_preset("full", num_layers=1)
        config.first_k_dense_replace = 0
        config.n_routed_experts = config.num_local_experts = args.experts
        config.n_group, config.topk_group = min(8, args.experts // 2), min(4, args.experts // 4)
        config.vocab_size = 1024
        start = time.perf_counter()
        write_checkpoint(config, args.checkpoint, seed=0, tokenizer=None)
        print(f"wrote {args.checkpoint} in {time.perf_counter() - start:.0f} s")
    config = load_hf_config(args.checkpoint)
    experts = config.n_routed_experts
    state = LazyStateDict(args.checkpoint, dequantize=True, dtype=torch.float32).view("model.layers.0.mlp.experts.")
    rows, cols = parse_mesh_shape(args.mesh)
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(rows, cols))
    out = args.out or Path(f"/tmp/moe-conversion-{rows}x{cols}")
    shutil.rmtree(out, ignore_errors=True)

    base_rss = rss_mb()
    start = time.perf_counter()
    with PeakRss() as sampler:
        Experts.convert_weights(config, state, out, mesh)
    seconds = time.perf_counter() - start
    peak = sampler.peak
    per_expert = seconds / experts
    one_expert_fp32_mb = 3 * config.hidden_size * config.moe_intermediate_size * 4 / 2**20
    print(f"mesh {rows}x{cols}: {experts} experts (x3 projections, hidden {config.hidden_size}, I {config.moe_intermediate_size})")
    print(f"conversion: {seconds:.1f} s = {per_expert:.2f} s per expert; files per projection: {len(Experts.slot_chunks(config, mesh))}")
    print(f"RSS: {base_rss:.0f} MiB before, peak during conversion {peak:.0f} MiB (+{peak - base_rss:.0f} MiB)")
    print(f"one expert's three projections in fp32: {one_expert_fp32_mb:.0f} MiB; a file holds "
          f"max(D, {EXPERTS_PER_FILE}) experts of one projection")
    print(f"extrapolated to 256 experts: {per_expert * 256 / 60:.1f} min at the same rate, same peak (bounded by one file)")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
