"""Turn other tools' outputs into result rows: the demo's JSON statistics and pytest-benchmark's JSON.

A metric's direction comes from what declared it, the name only as a last resort: a benchmark's
``extra_info["lower_is_better"]`` (a list of its metric names) and, when rows are added to an existing run,
the rows the tests themselves recorded for that run (:func:`drop_recorded`), which are never duplicated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

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
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 JSON file") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a {what} file") from None


def rows_from_demo_output(path: Path, run_id: str, **metadata: Any) -> list[ResultRow]:
    """Every numeric entry of the demo output's ``statistics`` block becomes one row."""
    data = _read_json(path, "demo output")
    statistics = data.get("statistics") if isinstance(data, dict) else None
    if not isinstance(statistics, dict):
        raise ValueError(f"{path}: no 'statistics' object; is this a demo --output-path file?")
    rows = []
    for metric, value in statistics.items():
        if not _is_number(value):
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


#: ``extra_info`` key of a benchmark's metrics where lower is better (a list of names), for metrics whose name
#: does not say it (``ratio`` may be a slowdown or a speedup).
LOWER_IS_BETTER_KEY = "lower_is_better"


def rows_from_benchmark_json(path: Path, run_id: str, **metadata: Any) -> list[ResultRow]:
    """pytest-benchmark's ``--benchmark-json``: the mean time plus every numeric ``extra_info`` value
    (lower-is-better where ``extra_info["lower_is_better"]`` names it, else as the name suggests)."""
    data = _read_json(path, "pytest-benchmark JSON")
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, list):
        raise ValueError(f"{path}: no 'benchmarks' list; is this pytest-benchmark --benchmark-json output?")
    rows = []
    for index, bench in enumerate(benchmarks):
        where = f"{path}: benchmarks[{index}]"
        if not isinstance(bench, dict):
            raise ValueError(f"{where}: not an object")
        test_id = bench.get("fullname") or bench.get("name")
        if not isinstance(test_id, str) or not test_id:
            raise ValueError(f"{where}: no 'fullname' or 'name'")
        extra = bench.get("extra_info") or {}
        stats = bench.get("stats") or {}
        if not isinstance(extra, dict) or not isinstance(stats, dict):
            raise ValueError(f"{where}: 'extra_info' and 'stats' must be objects")
        common = {"test_id": test_id, "module": str(extra.get("module", "benchmark")), "mode": str(extra.get("mode", "")),
                  "run_id": run_id, **metadata}
        for key in ("seq_len", "batch"):  # the perf suite's extra_info carries the case's shape and mesh
            if _is_number(extra.get(key)) and float(extra[key]).is_integer():
                common[key] = int(extra[key])
        if isinstance(extra.get("mesh"), str) and extra["mesh"]:
            common["mesh"] = extra["mesh"]
        lower = extra.get(LOWER_IS_BETTER_KEY, [])
        if not isinstance(lower, list) or not all(isinstance(name, str) for name in lower):
            raise ValueError(f"{where}: extra_info.{LOWER_IS_BETTER_KEY} must be a list of metric names")
        if "mean" in stats:
            if not _is_number(stats["mean"]):
                raise ValueError(f"{where}: stats.mean is not a number")
            rows.append(ResultRow(metric="mean_s", value=float(stats["mean"]), higher_is_better=False, **common))
        for metric, value in extra.items():
            if metric in ("seq_len", "batch") or not _is_number(value):
                continue
            better = False if metric in lower else higher_is_better(metric)
            rows.append(ResultRow(metric=metric, value=float(value), higher_is_better=better, **common))
    return rows


def drop_recorded(rows: list[ResultRow], recorded: Iterable[tuple[str, str, str]]) -> list[ResultRow]:
    """``rows`` without those whose (test id, metric, stage) the run already holds: a test's own row (with
    the direction it declared) is the measurement; a benchmark's ``extra_info`` copy of it is not added."""
    seen = set(recorded)
    return [row for row in rows if (row.test_id, row.metric, str(row.extra.get("stage") or "")) not in seen]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
