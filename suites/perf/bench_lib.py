"""Shared pieces of the throughput benchmarks: timing, the docs/DESIGN.md section 7 statistics, roofline bounds
and recording (``benchmark.extra_info`` + result rows).

Timing follows the anchor: the first (compile) step is a warm-up round and never counted; a step's time
is the fastest of the measured rounds (on a shared machine the least disturbed one; pytest-benchmark's
JSON keeps every round's statistics as well). :func:`benchmark_side_by_side` interleaves the two sides:
every round times one reference step (transformers, the same module and config) and then one TT-NN step
(timed by pytest-benchmark, ``benchmark.pedantic``), so both figures come from the same machine at the
same moments and their ratio, which the report compares across runs, is not skewed by load that comes
and goes between them.

Statistic names are those of :class:`deepseek_tt.generator.statistics.GenerationStatistics`:
``ttft_s``, ``prefill_tokens_per_s``, ``decode_tokens_per_s_per_user``, ``decode_tokens_per_s``; the
reference's carry a ``reference_`` prefix and ``throughput_ratio_tt_over_reference`` is TT t/s divided
by reference t/s (higher is better; below 1 the TT side is slower).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import torch

from deepseek_tt import backend
from deepseek_tt.config.mesh import format_mesh_shape
from deepseek_tt.perf.hardware import SYSTEMS, System
from deepseek_tt.perf.roofline import estimate
from reports.ingest import higher_is_better

#: Measured rounds after the warm-up round(s): (quick selection, nightly selection).
ROUNDS = {"quick": 5, "full": 7}
WARMUP_ROUNDS = 1
#: Prefill lengths: the quick selection runs the first.
PREFILL_LENGTHS = (128, 512)
#: Decode users per mesh row (active users; the TT batch is always 32 slots per row, empty slots at -1).
USERS_PER_ROW = (1, 32)
DECODE_CONTEXT = 128


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def benchmark_side_by_side(benchmark: Any, tt_fn: Callable[[], Any], reference_fn: Callable[[], Any],
                           rounds: int) -> tuple[float, float]:
    """``(TT seconds, reference seconds)``, each the fastest of ``rounds`` measured calls, interleaved: each
    round calls the reference (timed here, in the round's untimed setup) and then ``tt_fn`` (timed by
    pytest-benchmark). Warm-up rounds (both sides) are not counted. With ``--benchmark-disable`` both sides
    are timed here, interleaved the same way."""
    reference_times: list[float] = []
    benchmark.pedantic(tt_fn, setup=lambda: reference_times.append(_seconds(reference_fn)), rounds=rounds,
                       warmup_rounds=WARMUP_ROUNDS, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        return float(stats.stats.min), min(reference_times[WARMUP_ROUNDS:])
    tt_times, reference_times = [], []  # disabled: pedantic called each side once, untimed
    for round_ in range(WARMUP_ROUNDS + rounds):
        reference_s, tt_s = _seconds(reference_fn), _seconds(tt_fn)
        if round_ >= WARMUP_ROUNDS:
            reference_times.append(reference_s)
            tt_times.append(tt_s)
    return min(tt_times), min(reference_times)


def prefill_statistics(seconds: float, seq_len: int) -> dict[str, float]:
    """One user's prefill of ``seq_len`` tokens in ``seconds``: TTFT and prefill t/s."""
    return {"ttft_s": seconds, "prefill_tokens_per_s": seq_len / seconds}


def decode_statistics(seconds: float, users: int) -> dict[str, float]:
    """One steady-state decode step of ``users`` active users in ``seconds``: t/s/u and t/s."""
    return {"decode_tokens_per_s_per_user": 1.0 / seconds, "decode_tokens_per_s": users / seconds}


def system_for_mesh(mesh: tuple[int, int]) -> System:
    """The roofline system of a mesh shape: a named Wormhole system when one matches, else a Galaxy-like mesh."""
    for system in SYSTEMS.values():
        if tuple(system.mesh) == tuple(mesh):
            return system
    return System(f"Wormhole {format_mesh_shape(mesh)}", tuple(mesh), cores_per_chip=80, dram_gb_s_per_chip=288.0)


def roofline_statistics(
    config: Any, mesh: tuple[int, int], mode: str, *, users: int = 1, context: int = DECODE_CONTEXT,
    prefill_len: int = 128, measured: dict[str, float], dtype_policy: Any = "default",
) -> dict[str, Any]:
    """The roofline bound of the same config and mesh (and, on real ttnn, the fraction of it achieved)."""
    system = system_for_mesh(mesh)
    roof = estimate(config, system, dtype_policy, mode, users=users, context=context, prefill_len=prefill_len)
    out: dict[str, Any] = {"roofline_system": system.name}
    if mode == "prefill":
        out["roofline_prefill_time_bound_s"] = roof.step_time_s
        out["roofline_prefill_tokens_per_s_bound"] = prefill_len / roof.step_time_s
        achieved = measured["prefill_tokens_per_s"] / out["roofline_prefill_tokens_per_s_bound"]
    else:
        out["roofline_decode_step_bound_s"] = roof.step_time_s
        out["roofline_decode_tokens_per_s_per_user_bound"] = roof.tokens_per_s_per_user
        achieved = measured["decode_tokens_per_s_per_user"] / roof.tokens_per_s_per_user
    if backend.backend_name() == "ttnn":
        out["roofline_fraction"] = achieved
    else:
        out["roofline_note"] = "emulator: bound only (emulated time says nothing about the device)"
    return out


def record_benchmark(
    benchmark: Any, record_result: Callable[..., Any], *, module: str, mode: str, mesh: tuple[int, int],
    seq_len: int | None, batch: int, tt: dict[str, float], reference: dict[str, float],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Put the TT and reference statistics, their ratio and ``extra`` into ``benchmark.extra_info`` and one
    result row per numeric value; returns the extra info."""
    rate = "prefill_tokens_per_s" if mode == "prefill" else "decode_tokens_per_s"
    info: dict[str, Any] = {
        "module": module, "mode": mode, "mesh": format_mesh_shape(mesh), "backend": backend.describe_backend(),
        "torch_threads": str(torch.get_num_threads()),
    }
    if seq_len is not None:
        info["seq_len"] = seq_len
    info["batch"] = batch
    info.update(tt)
    info.update({f"reference_{k}": v for k, v in reference.items()})
    info["throughput_ratio_tt_over_reference"] = tt[rate] / reference[rate]
    info.update(extra or {})
    benchmark.extra_info.update(info)
    notes = {k: v for k, v in info.items() if isinstance(v, str) and k not in ("module", "mode", "mesh")}
    for metric, value in info.items():
        if metric in ("seq_len", "batch") or isinstance(value, (str, bool)) or not isinstance(value, (int, float)):
            continue
        record_result(
            module=module, mode=mode, metric=metric, value=float(value), seq_len=seq_len, batch=batch,
            mesh=info["mesh"], higher_is_better=higher_is_better(metric), **notes,
        )
    return info


def rounds_for(request: pytest.FixtureRequest) -> int:
    """Measured rounds: fewer for the quick selection."""
    return ROUNDS["quick" if request.node.get_closest_marker("quick") else "full"]


def decode_positions(rows: int, users_per_row: int, context: int, slots_per_row: int = 32):
    """Positions of a ``rows x slots_per_row`` decode batch: the first ``users_per_row`` slots of each row at
    ``context``, the others empty (-1); returns ``(positions, active_mask)``."""
    positions = torch.full((rows, slots_per_row), -1, dtype=torch.long)
    positions[:, :users_per_row] = context
    positions = positions.reshape(-1)
    return positions, positions >= 0
