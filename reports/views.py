"""The report's tables as data (pandas), shared by the Markdown and HTML renderers.

- :func:`accuracy_matrix`: one cell per (module, mode/shape x mesh x dtype policy) of the latest run, the
  worst margin over threshold of its thresholded accuracy metrics, failures and regressions flagged;
- :func:`teacher_forcing_table`: teacher-forcing top-1 / top-5 per mesh, policy and length;
- :func:`perf_series`: per benchmark test and metric family, the metrics to chart over the run history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reports.compare import Comparison, _flag
from reports.metrics import base_metric, case_labels, is_reference_metric, perf_family, shape_label

REGRESSING = ("new_failure", "regression", "still_failing")


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value != ""


def margin(value: float, threshold: float, higher_is_better: bool = True) -> float:
    """Margin over threshold as a share of the headroom: 1 = perfect score, 0 = on the threshold, < 0 = failing.

    Scores bounded by 1 (PCC, top-k) use ``(value - threshold) / (1 - threshold)``; other metrics the margin
    relative to the threshold's size. Clipped to [-1, 1].
    """
    if not (math.isfinite(value) and math.isfinite(threshold)):
        return -1.0
    signed = (value - threshold) if higher_is_better else (threshold - value)
    if higher_is_better and threshold < 1 and value <= 1:
        scale = 1 - threshold
    else:
        scale = max(abs(threshold), 1e-9)
    return max(-1.0, min(1.0, signed / scale))


def _is_teacher_forcing(mode: str) -> bool:
    return "teacher" in (mode or "")


def _weights(row: dict[str, Any]) -> str:
    extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
    return str(extra["weights"]) if _present(extra.get("weights")) else ""


def _row_label(row: dict[str, Any], tag_weights: bool) -> str:
    """The module, with its weights (random / checkpoint) when the run has more than one kind."""
    label = str(row.get("module") or "?")
    return f"{label} ({_weights(row)})" if tag_weights and _weights(row) else label


def _column_key(row: dict[str, Any]) -> tuple[str, str, str]:
    shape = shape_label(str(row.get("mode") or ""), row.get("seq_len"), row.get("batch")) or "-"
    return shape, str(row.get("mesh") or "-"), str(row.get("dtype_policy") or "-")


@dataclass
class Cell:
    value: float
    threshold: float
    margin: float
    failed: bool
    regressed: bool
    metric: str
    tests: list[str] = field(default_factory=list)
    count: int = 1


def _thresholded(comparison: Comparison) -> pd.DataFrame:
    findings = comparison.findings
    if findings.empty:
        return findings
    rows = findings[(findings["status"] != "missing") & findings["threshold"].notna() & (findings["kind"] == "accuracy")]
    return rows


def _cell_of(rows: list[dict[str, Any]]) -> Cell:
    """The worst row of a cell decides its colour; the others are listed on hover."""
    scored = []
    for row in rows:
        value, threshold = float(row["value"]), float(row["threshold"])
        higher = row.get("higher_is_better")
        scored.append((margin(value, threshold, True if higher is None or (isinstance(higher, float) and math.isnan(higher)) else bool(higher)), row))
    worst_margin, worst = min(scored, key=lambda item: item[0])
    failed = any(_flag(row.get("passed")) is False or score < 0 for score, row in scored)
    regressed = any(row["status"] in REGRESSING for row in rows)
    metric = worst["metric"] + (f"[{worst['stage']}]" if worst.get("stage") else "")
    return Cell(float(worst["value"]), float(worst["threshold"]), worst_margin, failed, regressed, metric,
                sorted({str(row["test_id"]) for row in rows}), len(rows))


def accuracy_matrix(comparison: Comparison) -> tuple[list[str], list[tuple[str, str, str]], dict[tuple[str, tuple], Cell]]:
    """(row labels, column keys (shape, mesh, policy), cells) of the latest run's thresholded accuracy results,
    teacher forcing excluded (see :func:`teacher_forcing_table`)."""
    rows = [r for r in _thresholded(comparison).to_dict("records") if not _is_teacher_forcing(str(r.get("mode")))]
    groups: dict[tuple[str, tuple], list[dict[str, Any]]] = {}
    tag_weights = len({_weights(row) for row in rows}) > 1
    for row in rows:
        groups.setdefault((_row_label(row, tag_weights), _column_key(row)), []).append(row)
    cells = {key: _cell_of(group) for key, group in groups.items()}
    module_order = _module_order([key[0] for key in cells])
    columns = sorted({key[1] for key in cells}, key=_column_sort_key)
    return module_order, columns, cells


_MODULE_ORDER = ["embedding", "rms_norm", "mla", "kvpe_cache", "mlp", "moe_gate", "moe", "decoder_block",
                 "moe_decoder_block", "lm_head", "model", "tt_model"]


def _module_order(labels: list[str]) -> list[str]:
    def key(label: str) -> tuple[int, str]:
        module = label.split(" (")[0]
        return (_MODULE_ORDER.index(module) if module in _MODULE_ORDER else len(_MODULE_ORDER), label)
    return sorted(set(labels), key=key)


def _column_sort_key(column: tuple[str, str, str]) -> tuple:
    shape, mesh, policy = column
    mode, _, size = shape.partition(" ")
    digits = "".join(ch for ch in size if ch.isdigit())
    return (mode != "prefill", mode, int(digits) if digits else 0, mesh, policy != "default", policy)


def teacher_forcing_table(comparison: Comparison) -> pd.DataFrame:
    """Columns: case, metric family (top1/top5), value, threshold, margin, failed, regressed, test_id."""
    rows = []
    for row in _thresholded(comparison).to_dict("records"):
        if not _is_teacher_forcing(str(row.get("mode"))):
            continue
        name = str(row["metric"]).lower()
        which = "top-1" if "top1" in name else "top-5" if "top5" in name else str(row["metric"])
        value, threshold = float(row["value"]), float(row["threshold"])
        rows.append({
            "case": " · ".join(str(p) for p in (row.get("mesh"), row.get("dtype_policy"),
                                                 f"{int(row['seq_len'])} tokens" if _present(row.get("seq_len")) else None) if _present(p)),
            "which": which, "value": value, "threshold": threshold, "margin": margin(value, threshold),
            "failed": _flag(row.get("passed")) is False or value < threshold, "regressed": row["status"] in REGRESSING,
            "test_id": str(row["test_id"]),
        })
    return pd.DataFrame(rows, columns=["case", "which", "value", "threshold", "margin", "failed", "regressed", "test_id"])


@dataclass
class ChartSpec:
    """One chart: a benchmark test and one metric family; TT metrics solid, their reference dashed."""

    test_id: str
    label: str
    family: str
    metrics: list[str]  # TT metrics (each with its baseline band)
    references: dict[str, str]  # TT metric -> its reference_ metric, when recorded
    status: str  # worst status of the charted TT metrics


_FAMILY_TITLES = {"ratio": "TT / reference", "throughput": "throughput", "latency": "latency", "other": "other"}


def perf_series(comparison: Comparison, results: pd.DataFrame) -> list[ChartSpec]:
    """Charts of the perf findings: per test, its ratio metrics and its primary throughput (the one with a
    reference), plus any other perf metric that regressed or improved. Worst tests first."""
    findings = comparison.findings
    perf = findings[(findings["kind"] == "perf") & ~findings["metric"].astype(str).str.startswith("roofline")]
    if perf.empty:
        return []
    labels = case_labels(results)
    metrics_by_test: dict[str, set[str]] = {}
    for test_id, frame in results[results["test_id"].isin(set(perf["test_id"]))].groupby("test_id"):
        metrics_by_test[str(test_id)] = set(frame["metric"].astype(str))
    severity = {"new_failure": 0, "regression": 1, "missing": 2, "still_failing": 3, "new": 4, "improvement": 5, "ok": 6, "context": 7}
    specs: list[tuple[int, str, str, ChartSpec]] = []
    for test_id, frame in perf.groupby("test_id", sort=False):
        test_id = str(test_id)
        known = metrics_by_test.get(test_id, set())
        by_family: dict[str, list[str]] = {}
        for metric in sorted(set(frame["metric"].astype(str))):
            if is_reference_metric(metric) and base_metric(metric) in known:
                continue
            by_family.setdefault(perf_family(metric), []).append(metric)
        statuses = dict(zip(frame["metric"].astype(str), frame["status"]))
        chosen: dict[str, list[str]] = {}
        for family, metrics in by_family.items():
            if family == "ratio":
                chosen[family] = metrics
            elif family == "throughput":
                with_reference = [m for m in metrics if f"reference_{m}" in known]
                primary = sorted(with_reference or metrics, key=lambda m: ("per_user" in m, len(m)))[:1]
                chosen[family] = primary
            else:
                chosen[family] = []
            for metric in metrics:
                if statuses.get(metric) not in ("ok", "new") and metric not in chosen[family]:
                    chosen[family].append(metric)
        for family, metrics in chosen.items():
            for metric in metrics:  # one metric per chart: scales of different metrics differ
                status = statuses.get(metric, "ok")
                spec = ChartSpec(test_id, labels.get(test_id, test_id), family, [metric],
                                 {metric: f"reference_{metric}"} if f"reference_{metric}" in known else {}, status)
                specs.append((severity.get(status, 9), labels.get(test_id, test_id), family, spec))
    worst_per_test: dict[str, int] = {}
    for rank, _, _, spec in specs:
        worst_per_test[spec.test_id] = min(rank, worst_per_test.get(spec.test_id, 99))
    family_order = {"ratio": 0, "throughput": 1, "latency": 2, "other": 3}
    specs.sort(key=lambda item: (worst_per_test[item[3].test_id], item[1], family_order.get(item[2], 9), item[3].metrics[0]))
    return [item[3] for item in specs]


def family_title(family: str) -> str:
    return _FAMILY_TITLES.get(family, family)
