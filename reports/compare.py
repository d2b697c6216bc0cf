"""Compare the latest run with a baseline and with the history of earlier runs.

Findings, one per (test_id, metric):

- ``regression``: an accuracy metric (PCC, top-1/top-5, ...) dropped by more than its tolerance, or a
  throughput/latency metric moved the wrong way by more than the noise band of its history;
- ``new_failure``: the test passed in the baseline and fails now (whatever its value);
- ``missing``: in the baseline, absent from the latest run;
- ``new``: in the latest run, absent from the baseline;
- ``improvement`` / ``ok``.

The noise band of a throughput metric is ``max(min_band, sigmas * relative std of its history)``, so a
metric measured on a noisy machine gets a wider band than one measured on a quiet one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

KEY = ["test_id", "metric"]

#: Metrics judged by absolute tolerance (bounded scores); everything else is a throughput/latency figure.
ACCURACY_TOLERANCES: dict[str, float] = {
    "pcc": 0.002,
    "top1": 0.02,
    "top5": 0.02,
    "kvpe_pcc": 0.0005,
}

#: lm-eval task scores (``lm_eval_<task>_<metric>``, deepseek_tt.evaluation) are bounded scores too,
#: judged with the tolerance of the server-vs-reference agreement.
LM_EVAL_PREFIX, LM_EVAL_TOLERANCE = "lm_eval_", 0.05

#: Statuses from most to least severe (reports list findings in this order).
STATUS_ORDER = ["new_failure", "regression", "missing", "new", "improvement", "ok"]


@dataclass
class CompareSettings:
    accuracy_tolerances: dict[str, float] = field(default_factory=lambda: dict(ACCURACY_TOLERANCES))
    default_accuracy_tolerance: float = 0.01
    min_band: float = 0.05
    sigmas: float = 3.0
    fail_on_missing: bool = True


@dataclass
class Comparison:
    findings: pd.DataFrame  # columns: test_id, metric, status, value, baseline, band, delta, detail
    latest_run: str | None
    baseline_run: str | None
    settings: CompareSettings

    @property
    def regressed(self) -> bool:
        statuses = set(self.findings["status"]) if len(self.findings) else set()
        regressing = {"regression", "new_failure"} | ({"missing"} if self.settings.fail_on_missing else set())
        return bool(statuses & regressing)

    def count(self, status: str) -> int:
        return int((self.findings["status"] == status).sum()) if len(self.findings) else 0


def latest_run_id(results: pd.DataFrame) -> str | None:
    """The run with the newest timestamp."""
    if results.empty:
        return None
    by_run = results.groupby("run_id")["timestamp"].max()
    return str(by_run.idxmax())


def _per_key(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (test_id, metric): the last measurement of that run."""
    if frame.empty:
        return frame
    return frame.sort_values("timestamp").groupby(KEY, as_index=False).last()


def _is_accuracy(metric: str) -> bool:
    return metric in ACCURACY_TOLERANCES or metric.endswith("pcc") or metric.startswith(("top", LM_EVAL_PREFIX))


def _noise_band(history: pd.DataFrame, test_id: str, metric: str, settings: CompareSettings) -> float:
    values = history.loc[(history["test_id"] == test_id) & (history["metric"] == metric), "value"].astype(float)
    values = values[np.isfinite(values)]
    if len(values) < 3 or values.mean() == 0:
        return settings.min_band
    relative_std = float(values.std(ddof=1) / abs(values.mean()))
    return max(settings.min_band, settings.sigmas * relative_std)


def compare(
    results: pd.DataFrame,
    baseline: pd.DataFrame,
    latest_run: str | None = None,
    settings: CompareSettings | None = None,
) -> Comparison:
    """Compare ``latest_run`` (default: newest in ``results``) with ``baseline``; history = the other runs."""
    settings = settings or CompareSettings()
    latest_run = latest_run or latest_run_id(results)
    latest = _per_key(results[results["run_id"] == latest_run])
    history = results[results["run_id"] != latest_run]
    base = _per_key(baseline)
    merged = latest.merge(base, on=KEY, how="outer", suffixes=("", "_base"), indicator=True)

    rows = []
    for record in merged.to_dict("records"):
        test_id, metric = record["test_id"], record["metric"]
        value, reference = record.get("value"), record.get("value_base")
        finding = {"test_id": test_id, "metric": metric, "value": value, "baseline": reference, "band": None, "delta": None}
        if record["_merge"] == "right_only":
            rows.append({**finding, "status": "missing", "detail": "in the baseline, not in the latest run"})
            continue
        if record["_merge"] == "left_only":
            status = "new_failure" if record.get("passed") is False else "new"
            rows.append({**finding, "status": status, "detail": "not in the baseline"})
            continue
        delta = float(value) - float(reference)
        finding["delta"] = delta
        higher_is_better = bool(record.get("higher_is_better", True))
        signed = delta if higher_is_better else -delta
        if record.get("passed") is False and record.get("passed_base") is not False:
            status, detail = "new_failure", f"passed in the baseline, fails now (threshold {record.get('threshold')})"
        elif _is_accuracy(metric):
            default = LM_EVAL_TOLERANCE if metric.startswith(LM_EVAL_PREFIX) else settings.default_accuracy_tolerance
            tolerance = settings.accuracy_tolerances.get(metric, default)
            finding["band"] = tolerance
            if signed < -tolerance:
                status, detail = "regression", f"dropped {abs(delta):.4g} (tolerance {tolerance:g})"
            elif signed > tolerance:
                status, detail = "improvement", f"rose {abs(delta):.4g}"
            else:
                status, detail = "ok", ""
        else:
            band = _noise_band(history, test_id, metric, settings)
            finding["band"] = band
            relative = signed / abs(float(reference)) if float(reference) else 0.0
            if relative < -band:
                status, detail = "regression", f"{relative:+.1%} outside the noise band ±{band:.1%}"
            elif relative > band:
                status, detail = "improvement", f"{relative:+.1%} (band ±{band:.1%})"
            else:
                status, detail = "ok", f"{relative:+.1%} within ±{band:.1%}"
        rows.append({**finding, "status": status, "detail": detail})

    columns = ["test_id", "metric", "status", "value", "baseline", "band", "delta", "detail"]
    findings = pd.DataFrame(rows, columns=columns)
    severity = findings["status"].map({status: rank for rank, status in enumerate(STATUS_ORDER)})
    findings = findings.assign(_severity=severity).sort_values(["_severity", "test_id", "metric"], ignore_index=True)
    findings = findings.drop(columns="_severity")
    baseline_run = latest_run_id(baseline)
    return Comparison(findings=findings, latest_run=latest_run, baseline_run=baseline_run, settings=settings)
