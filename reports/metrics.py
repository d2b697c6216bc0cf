"""What a metric is (accuracy or performance, which chart family) and how a case is named, from row fields.

Generic over metric names: a metric is an *accuracy* metric when any of its rows carries a threshold or its
name says so (PCC, top-k, agreement, accuracy, lm-eval scores, magnitude checks ...); a *context* figure when
it describes the yardstick rather than the model (the transformers reference's own ``reference_*`` speed, plain
torch's ``plain_torch_*`` time, the computed ``roofline_*`` bounds) or is derived from judged figures (the serving
benchmark's concurrency gain): reported, never judged; everything else is a *performance* figure (throughput,
latency, ratios), judged against the noise band of its history.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

_ACCURACY_HINTS = (
    "pcc", "top1", "top5", "top_", "accuracy", "agreement", "lm_eval", "magnitude", "norm_ratio", "rel_err",
    "relative_error", "exact_match", "caught",
)
_RATIO_HINTS = ("ratio", "speedup", "_vs_", "_over_")
_THROUGHPUT_HINTS = ("per_s", "t/s", "tok_s", "throughput", "mvalues")
_LATENCY_HINTS = ("ttft", "latency", "time", "_ms", "seconds")

#: Absolute tolerance of an accuracy metric, by exact name; then by the first matching hint; then the default.
ACCURACY_TOLERANCES: dict[str, float] = {"pcc": 0.002, "top1": 0.02, "top5": 0.02, "kvpe_pcc": 0.0005}
_TOLERANCE_HINTS = (("pcc", 0.002), ("top1", 0.02), ("top5", 0.02), ("agreement", 0.02), ("accuracy", 0.02),
                    # lm-eval task scores (deepseek_tt.evaluation): the server-vs-reference agreement tolerance
                    ("lm_eval", 0.05))
DEFAULT_ACCURACY_TOLERANCE = 0.01


def is_accuracy_name(metric: str) -> bool:
    name = metric.lower()
    return any(hint in name for hint in _ACCURACY_HINTS) and not any(hint in name for hint in _THROUGHPUT_HINTS)


def is_ratio_to_one(metric: str) -> bool:
    """Magnitude checks (``norm_ratio``, ``magnitude``): best at 1.0, worse either way."""
    name = metric.lower()
    return ("norm_ratio" in name or "magnitude" in name) and "err" not in name


def accuracy_metrics(frame: pd.DataFrame) -> set[str]:
    """Metrics judged as accuracy: any row has a threshold, or the name is an accuracy name."""
    thresholded = set(frame.loc[frame["threshold"].notna(), "metric"]) if len(frame) else set()
    return thresholded | {m for m in set(frame["metric"]) if is_accuracy_name(str(m))}


def accuracy_tolerance(metric: str, overrides: dict[str, float] | None = None, default: float = DEFAULT_ACCURACY_TOLERANCE) -> float:
    table = overrides if overrides is not None else ACCURACY_TOLERANCES
    if metric in table:
        return table[metric]
    name = metric.lower()
    for hint, tolerance in _TOLERANCE_HINTS:
        if hint in name:
            return tolerance
    return default


def perf_family(metric: str) -> str:
    """``ratio`` | ``throughput`` | ``latency`` | ``other`` (charts never mix families)."""
    name = base_metric(metric).lower()
    if any(hint in name for hint in _RATIO_HINTS):
        return "ratio"
    if any(hint in name for hint in _THROUGHPUT_HINTS):
        return "throughput"
    if any(hint in name for hint in _LATENCY_HINTS) or name.endswith("_s"):
        return "latency"
    return "other"


def base_metric(metric: str) -> str:
    """``reference_decode_tokens_per_s`` -> ``decode_tokens_per_s`` (the TT metric it is the reference of)."""
    return metric.removeprefix("reference_")


def is_reference_metric(metric: str) -> bool:
    return metric.startswith("reference_")


#: Context by exact name: figures derived from judged ones that move for reasons of their own. The serving
#: benchmark's ``throughput_ratio`` (16 concurrent requests' throughput over one request's) falls whenever one
#: request alone gets faster; both throughputs are judged, and the test itself asserts the gain (> 2).
DERIVED_CONTEXT_METRICS = frozenset({"throughput_ratio"})


def is_context_metric(metric: str) -> bool:
    """A figure recorded beside the judged ones, shown and never judged: the reference's own measurements
    (``reference_*``), plain torch's time on the same operands (``plain_torch_*``) and the roofline bounds
    computed from the config (``roofline_*bound*``). They move with the machine, the transformers or torch
    release or the hardware model, not with the model under test, whose own figures and its ratio to the
    yardstick are judged (so is ``roofline_fraction``, the share of the bound a device reaches). Also the
    derived figures of ``DERIVED_CONTEXT_METRICS``."""
    name = str(metric)
    if name in DERIVED_CONTEXT_METRICS:
        return True
    return name.startswith(("reference_", "plain_torch_")) or (name.startswith("roofline_") and "bound" in name)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value)) and value != ""


def shape_label(mode: str, seq_len: Any, batch: Any) -> str:
    """``prefill 128`` / ``decode 32u`` / ``teacher_forcing 64``: the mode with the shape that matters for it."""
    parts = [mode] if mode else []
    if "decode" in (mode or ""):
        if _present(batch):
            parts.append(f"{int(batch)}u")
    elif _present(seq_len):
        parts.append(str(int(seq_len)))
    return " ".join(parts)


def case_label(row: dict[str, Any]) -> str:
    """A short readable case id: module, mode + shape, mesh, dtype policy (fields that are set)."""
    module = row.get("module") or ""
    parts = [module] if module else []
    shape = shape_label(row.get("mode") or "", row.get("seq_len"), row.get("batch"))
    if shape:
        parts.append(shape)
    for key in ("mesh", "dtype_policy"):
        if _present(row.get(key)):
            parts.append(str(row[key]))
    if not parts:
        return short_test_name(str(row.get("test_id", "")))
    return " · ".join(parts)


def short_test_name(test_id: str) -> str:
    """``suites/perf/test_x.py::test_block_decode[abc]`` -> ``test_block_decode[abc]``."""
    return test_id.rsplit("::", 1)[-1]


def _weights(extra: Any) -> str:
    return str(extra.get("weights", "")) if isinstance(extra, dict) else ""


_FUNCTION = re.compile(r"::([^\[]+)")


def case_labels(frame: pd.DataFrame) -> dict[str, str]:
    """test_id -> short label, unique: colliding labels get the test function name, then a counter."""
    labels: dict[str, str] = {}
    if frame.empty:
        return labels
    newest = frame.sort_values("timestamp").groupby("test_id", sort=False).last()
    for test_id, row in newest.iterrows():
        labels[str(test_id)] = case_label({**row.to_dict(), "test_id": test_id})
    by_label: dict[str, list[str]] = {}
    for test_id, label in labels.items():
        by_label.setdefault(label, []).append(test_id)
    for label, test_ids in by_label.items():
        if len(test_ids) < 2:
            continue
        functions = {t: (m.group(1) if (m := _FUNCTION.search(t)) else short_test_name(t)) for t in test_ids}
        weights = {t: _weights(newest.loc[t, "extra"]) for t in test_ids}
        for tags in ([weights[t] or functions[t] for t in test_ids], [functions[t] for t in test_ids],
                     [" · ".join(p for p in (functions[t], weights[t]) if p) for t in test_ids]):
            if len(set(tags)) == len(test_ids):
                labels.update({t: f"{label} · {tag}" for t, tag in zip(test_ids, tags)})
                break
        else:
            labels.update({t: f"{label} #{i + 1}" for i, t in enumerate(sorted(test_ids))})
    return labels
