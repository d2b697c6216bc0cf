"""The perf suite's bookkeeping (suites/perf/bench_lib.py): statistics, ratio, result rows, roofline."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from deepseek_tt import backend
from reference_models.presets import get_preset
from suites.perf import bench_lib

pytestmark = pytest.mark.unit


class _FakeBenchmark:
    def __init__(self, stats: Any = None) -> None:
        self.extra_info: dict[str, Any] = {}
        self.stats = stats
        self.calls: dict[str, int] = {}

    def pedantic(self, fn, rounds: int, warmup_rounds: int, iterations: int, setup=None) -> Any:
        """As pytest-benchmark's: ``setup`` (untimed) before every warm-up and measured round."""
        self.calls = {"rounds": rounds, "warmup_rounds": warmup_rounds, "iterations": iterations}
        for _ in range(warmup_rounds + rounds):
            if setup is not None:
                setup()
            result = fn()
        return result


def test_statistics_follow_the_generator_definitions() -> None:
    assert bench_lib.prefill_statistics(0.5, 128) == {"ttft_s": 0.5, "prefill_tokens_per_s": 256.0}
    assert bench_lib.decode_statistics(0.25, 32) == {"decode_tokens_per_s_per_user": 4.0, "decode_tokens_per_s": 128.0}


def test_side_by_side_interleaves_the_sides_and_drops_the_warmup() -> None:
    order: list[str] = []
    bench = _FakeBenchmark(SimpleNamespace(stats=SimpleNamespace(min=0.2, median=0.3)))
    tt_s, reference_s = bench_lib.benchmark_side_by_side(bench, lambda: order.append("tt"), lambda: order.append("ref"), rounds=4)
    assert tt_s == 0.2 and 0 <= reference_s < 0.1
    assert order == ["ref", "tt"] * (bench_lib.WARMUP_ROUNDS + 4)
    assert bench.calls == {"rounds": 4, "warmup_rounds": bench_lib.WARMUP_ROUNDS, "iterations": 1}


def test_side_by_side_with_the_benchmark_disabled_times_both_sides_itself() -> None:
    class Disabled(_FakeBenchmark):
        def pedantic(self, fn, rounds, warmup_rounds, iterations, setup=None):  # pytest-benchmark's disabled mode
            setup()
            return fn()

    order: list[str] = []
    tt_s, reference_s = bench_lib.benchmark_side_by_side(Disabled(), lambda: order.append("tt"), lambda: order.append("ref"), rounds=3)
    assert order == ["ref", "tt"] * (1 + bench_lib.WARMUP_ROUNDS + 3)
    assert tt_s >= 0 and reference_s >= 0


def test_record_benchmark_rows_ratio_and_directions() -> None:
    rows: list[dict[str, Any]] = []
    bench = _FakeBenchmark()
    info = bench_lib.record_benchmark(
        bench, lambda **row: rows.append(row), module="decoder_block", mode="decode", mesh=(1, 1), seq_len=128, batch=32,
        tt=bench_lib.decode_statistics(2.0, 32), reference=bench_lib.decode_statistics(0.5, 32),
        extra={"roofline_decode_step_bound_s": 1e-4},
    )
    assert info["throughput_ratio_tt_over_reference"] == pytest.approx(0.25)
    assert bench.extra_info == info and info["module"] == "decoder_block" and info["mode"] == "decode"
    by_metric = {row["metric"]: row for row in rows}
    assert set(by_metric) == {
        "decode_tokens_per_s_per_user", "decode_tokens_per_s", "reference_decode_tokens_per_s_per_user",
        "reference_decode_tokens_per_s", "throughput_ratio_tt_over_reference", "roofline_decode_step_bound_s",
    }
    assert by_metric["decode_tokens_per_s"]["higher_is_better"] is True
    assert by_metric["throughput_ratio_tt_over_reference"]["higher_is_better"] is True
    assert by_metric["roofline_decode_step_bound_s"]["higher_is_better"] is False
    assert all(row["mesh"] == "1x1" and row["batch"] == 32 and row["seq_len"] == 128 for row in rows)


def test_ttft_is_lower_is_better() -> None:
    rows: list[dict[str, Any]] = []
    bench_lib.record_benchmark(
        _FakeBenchmark(), lambda **row: rows.append(row), module="model", mode="prefill", mesh=(4, 8), seq_len=128, batch=1,
        tt=bench_lib.prefill_statistics(1.0, 128), reference=bench_lib.prefill_statistics(0.5, 128),
    )
    directions = {row["metric"]: row["higher_is_better"] for row in rows}
    assert directions["ttft_s"] is False and directions["reference_ttft_s"] is False
    assert directions["prefill_tokens_per_s"] is True


def test_roofline_matches_the_mesh_and_reports_a_fraction_only_on_ttnn() -> None:
    assert bench_lib.system_for_mesh((4, 8)).name.startswith("TG")
    assert bench_lib.system_for_mesh((1, 1)).name == "N150"
    assert bench_lib.system_for_mesh((2, 4)).mesh == (2, 4)
    config = get_preset("galaxy-tiny", num_layers=2)
    out = bench_lib.roofline_statistics(config, (4, 8), "decode", users=32, measured={"decode_tokens_per_s_per_user": 1.0})
    assert out["roofline_decode_tokens_per_s_per_user_bound"] == pytest.approx(1.0 / out["roofline_decode_step_bound_s"])
    if backend.backend_name() == "ttnn":
        assert out["roofline_fraction"] == pytest.approx(1.0 / out["roofline_decode_tokens_per_s_per_user_bound"])
    else:
        assert "roofline_fraction" not in out and "emulator" in out["roofline_note"]


def test_decode_positions_fill_the_first_slots_of_each_row() -> None:
    positions, active = bench_lib.decode_positions(rows=2, users_per_row=1, context=64)
    assert positions.numel() == 64 and int(active.sum()) == 2
    assert positions[0] == 64 and positions[32] == 64 and positions[1] == -1
