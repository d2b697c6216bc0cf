"""Turn other tools' outputs into result rows: the demo's JSON statistics and pytest-benchmark's JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reports.store import ResultRow

_LOWER_IS_BETTER_HINTS = ("time", "ttft", "latency", "runtime", "_s", "seconds", "_ms")
_HIGHER_IS_BETTER_HINTS = ("t/s", "tok_s", "tokens_per_s", "per_second", "throughput", "ratio", "speedup", "accuracy", "top")


def higher_is_better(metric: str) -> bool:
    """Throughputs and accuracies go up, times go down; decided from the metric's name."""
    name = metric.lower()
    if any(hint in name for hint in _HIGHER_IS_BETTER_HINTS):
        return True
    return not any(hint in name for hint in _LOWER_IS_BETTER_HINTS)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what} file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def rows_from_demo_output(path: Path, run_id: str, **metadata: Any) -> list[ResultRow]:
    """Every numeric entry of the demo output's ``statistics`` block becomes one row."""
    data = _read_json(path, "demo output")
    statistics = data.get("statistics") if isinstance(data, dict) else None
    if not isinstance(statistics, dict):
        raise ValueError(f"{path}: no 'statistics' object; is this a demo --output-path file?")
    rows = []
    for metric, value in statistics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        rows.append(
            ResultRow(
                test_id=f"demo::{Path(path).stem}",
                module="model",
                mode="generate",
                metric=metric,
                value=float(value),
                higher_is_better=higher_is_better(metric),
                run_id=run_id,
                **metadata,
            )
        )
    return rows


def rows_from_benchmark_json(path: Path, run_id: str, **metadata: Any) -> list[ResultRow]:
    """pytest-benchmark's ``--benchmark-json``: the mean time plus every numeric ``extra_info`` value."""
    data = _read_json(path, "pytest-benchmark JSON")
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, list):
        raise ValueError(f"{path}: no 'benchmarks' list; is this pytest-benchmark --benchmark-json output?")
    rows = []
    for bench in benchmarks:
        test_id = bench.get("fullname") or bench.get("name")
        extra = bench.get("extra_info") or {}
        stats = bench.get("stats") or {}
        if "mean" in stats:
            rows.append(
                ResultRow(test_id=test_id, module=str(extra.get("module", "benchmark")), mode=str(extra.get("mode", "")),
                          metric="mean_s", value=float(stats["mean"]), higher_is_better=False, run_id=run_id, **metadata)
            )
        for metric, value in extra.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            rows.append(
                ResultRow(test_id=test_id, module=str(extra.get("module", "benchmark")), mode=str(extra.get("mode", "")),
                          metric=metric, value=float(value), higher_is_better=higher_is_better(metric), run_id=run_id, **metadata)
            )
    return rows
