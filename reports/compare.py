"""Compare the latest run with a baseline and with the history of earlier runs.

Findings, one per (test_id, metric, stage):

- ``new_failure``: the test passed in the baseline and fails now (whatever its value);
- ``regression``: an accuracy metric (PCC, top-1/top-5, ...) dropped by more than its tolerance, a
  throughput/latency metric moved the wrong way by more than the noise band of its history, or the
  latest value is NaN / infinite;
- ``still_failing``: failed in the baseline and fails now;
- ``missing``: in the baseline, absent from the latest run;
- ``new``: in the latest run, absent from the baseline;
- ``improvement`` / ``ok``;
- ``context``: a figure of the yardstick, not of the model (``reference_*``, ``plain_torch_*``, the
  ``roofline_*`` bounds), or one derived from judged figures (the serving concurrency gain;
  ``reports.metrics.is_context_metric``): its change is shown and never decides the verdict. A slower
  transformers reference is not a slower model; the model's own figures and its ratio to the reference
  are judged.

The noise band of a throughput metric is ``max(min_band, sigmas * relative std of its history)``, so a
metric measured on a noisy machine gets a wider band than one measured on a quiet one.

The comparison never says OK on nothing: an empty baseline, an empty latest run, rows without a run id,
a baseline holding non-finite values, judging the baseline's own run, or a negative band or tolerance
raise :class:`CompareError` with a message naming the problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports.metrics import (
    ACCURACY_TOLERANCES,
    DEFAULT_ACCURACY_TOLERANCE,
    accuracy_metrics,
    accuracy_tolerance,
    is_context_metric,
    is_ratio_to_one,
)

KEY = ["test_id", "metric", "stage"]

#: Statuses from most to least severe (reports list findings in this order).
STATUS_ORDER = ["new_failure", "regression", "missing", "still_failing", "new", "improvement", "ok", "context"]

#: Metadata of a finding, taken from the latest row (the baseline row for ``missing``).
CASE_FIELDS = ["module", "mode", "seq_len", "batch", "mesh", "dtype_policy", "threshold", "passed", "higher_is_better", "extra"]

FINDING_COLUMNS = KEY + ["status", "kind", "value", "baseline", "band", "delta", "detail"] + CASE_FIELDS


class CompareError(ValueError):
    """The inputs cannot be compared (the message says why); never a silent OK."""


@dataclass
class CompareSettings:
    accuracy_tolerances: dict[str, float] = field(default_factory=lambda: dict(ACCURACY_TOLERANCES))
    default_accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE
    min_band: float = 0.05
    sigmas: float = 3.0
    fail_on_missing: bool = True

    def __post_init__(self) -> None:
        for name in ("min_band", "sigmas", "default_accuracy_tolerance"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise CompareError(f"{name} must be a finite number >= 0, got {value!r}")
        for metric, value in self.accuracy_tolerances.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise CompareError(f"accuracy tolerance of {metric!r} must be a finite number >= 0, got {value!r}")


@dataclass
class RunInfo:
    """Who made a run: its id, git revisions, machines and time span."""

    run_id: str | None
    revisions: list[str]
    machines: list[str]
    started: float | None
    finished: float | None

    @property
    def revision(self) -> str:
        return ", ".join(self.revisions) if self.revisions else "unknown"

    @classmethod
    def of(cls, frame: pd.DataFrame, run_id: str | None) -> "RunInfo":
        rows = frame[frame["run_id"] == run_id] if run_id is not None else frame
        def unique(column: str) -> list[str]:
            return sorted({str(v) for v in rows[column] if isinstance(v, str) and v})
        stamps = rows["timestamp"].astype(float)
        return cls(run_id, unique("git_revision"), unique("machine"),
                   float(stamps.min()) if len(stamps) else None, float(stamps.max()) if len(stamps) else None)


@dataclass
class Comparison:
    findings: pd.DataFrame  # FINDING_COLUMNS, most severe first
    latest_run: str | None
    baseline_run: str | None
    settings: CompareSettings
    latest: RunInfo | None = None
    baseline: RunInfo | None = None

    @property
    def regressing_statuses(self) -> set[str]:
        return {"regression", "new_failure", "still_failing"} | ({"missing"} if self.settings.fail_on_missing else set())

    @property
    def regressed(self) -> bool:
        """True when the run must not be called green (exit status 1)."""
        statuses = set(self.findings["status"]) if len(self.findings) else set()
        return bool(statuses & self.regressing_statuses)

    @property
    def verdict(self) -> str:
        """``REGRESSED`` (worse than the baseline), ``FAILING`` (only known failures remain) or ``OK``."""
        statuses = set(self.findings["status"]) if len(self.findings) else set()
        if statuses & (self.regressing_statuses - {"still_failing"}):
            return "REGRESSED"
        return "FAILING" if "still_failing" in statuses else "OK"

    def count(self, status: str) -> int:
        return int((self.findings["status"] == status).sum()) if len(self.findings) else 0


def latest_run_id(results: pd.DataFrame) -> str | None:
    """The run with the newest timestamp (rows without a run id are an error, see :func:`check_run_ids`)."""
    if results.empty:
        return None
    by_run = results.dropna(subset=["run_id"]).groupby("run_id")["timestamp"].max()
    return str(by_run.idxmax()) if len(by_run) else None


def check_run_ids(frame: pd.DataFrame, what: str) -> None:
    """Every row must name its run; otherwise the newest rows could silently drop out of the comparison."""
    if frame.empty:
        return
    missing = frame["run_id"].isna() | (frame["run_id"].astype(str).str.strip() == "")
    if missing.any():
        first = frame.loc[missing].iloc[0]
        where = first["source"] if "source" in frame.columns and isinstance(first.get("source"), str) else what
        raise CompareError(f"{where}: {int(missing.sum())} result row(s) in {what} have no run_id; every row must name its run")


def _per_key(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (test_id, metric, stage): the last measurement of that run."""
    if frame.empty:
        return frame
    return frame.sort_values("timestamp", kind="stable").groupby(KEY, as_index=False, dropna=False).last()


def _noise_band(history: pd.DataFrame, key: tuple, settings: CompareSettings) -> float:
    test_id, metric, stage = key
    values = history.loc[
        (history["test_id"] == test_id) & (history["metric"] == metric) & (history["stage"] == stage), "value"
    ].astype(float)
    values = values[np.isfinite(values)]
    if len(values) < 3 or values.mean() == 0:
        return settings.min_band
    relative_std = float(values.std(ddof=1) / abs(values.mean()))
    return max(settings.min_band, settings.sigmas * relative_std)


def _flag(value: Any) -> bool | None:
    """A ``passed`` cell as True / False / None (pandas may hold numpy bools or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _judge(record: dict[str, Any], kind: str, history: pd.DataFrame, settings: CompareSettings) -> tuple[str, str, float | None, float | None]:
    """status, detail, band, delta of a row present in both the latest run and the baseline."""
    value, reference = float(record["value"]), float(record["value_base"])
    passed, passed_base = _flag(record.get("passed")), _flag(record.get("passed_base"))
    if not math.isfinite(value):
        return "regression", f"value is {value} (not a finite number)", None, None
    delta = value - reference
    if passed is False and passed_base is not False:
        return "new_failure", f"passed in the baseline, fails now (threshold {_num(record.get('threshold'))})", None, delta
    if passed is False:
        return "still_failing", f"failed in the baseline too (threshold {_num(record.get('threshold'))})", None, delta
    higher_is_better = bool(record.get("higher_is_better", True)) if _flag(record.get("higher_is_better")) is not None else True
    signed = delta if higher_is_better else -delta
    if kind == "accuracy" and is_ratio_to_one(record["metric"]):  # closer to 1 is better, whichever side
        signed = abs(reference - 1) - abs(value - 1)
    if kind == "accuracy":
        tolerance = accuracy_tolerance(record["metric"], settings.accuracy_tolerances, settings.default_accuracy_tolerance)
        moved = f"{'rose' if delta > 0 else 'dropped'} {abs(delta):.4g}" + (" (distance from 1)" if is_ratio_to_one(record["metric"]) else "")
        if signed < -tolerance:
            return "regression", f"{moved} (tolerance {tolerance:g})", tolerance, delta
        if signed > tolerance:
            return "improvement", moved, tolerance, delta
        return "ok", "", tolerance, delta
    band = _noise_band(history, (record["test_id"], record["metric"], record["stage"]), settings)
    if reference == 0:
        relative = 0.0 if delta == 0 else math.copysign(math.inf, signed)
    else:
        relative = signed / abs(reference)
    if relative < -band:
        return "regression", f"{_pct(delta, reference)} outside the noise band ±{band:.1%}", band, delta
    if relative > band:
        return "improvement", f"{_pct(delta, reference)} (band ±{band:.1%})", band, delta
    return "ok", f"{_pct(delta, reference)} within ±{band:.1%}", band, delta


def _context_delta(record: dict[str, Any]) -> float | None:
    if record["_merge"] != "both" or not (_finite(record["value"]) and _finite(record["value_base"])):
        return None
    return float(record["value"]) - float(record["value_base"])


def _context_detail(record: dict[str, Any]) -> str:
    """How a context figure moved (it is not judged: the model's own figures are)."""
    if record["_merge"] == "right_only":
        return "in the baseline, not in the latest run (context, not judged)"
    if record["_merge"] == "left_only":
        return "not in the baseline (context, not judged)"
    delta = _context_delta(record)
    if delta is None:
        return f"value is {record['value']} (context, not judged)"
    return f"{_pct(delta, float(record['value_base']))} (context, not judged)"


def _pct(delta: float, reference: float) -> str:
    return f"{delta / abs(reference):+.1%}" if reference else f"{delta:+.4g}"


def _num(value: Any) -> str:
    return f"{float(value):g}" if _finite(value) else "none"


def compare(
    results: pd.DataFrame,
    baseline: pd.DataFrame,
    latest_run: str | None = None,
    settings: CompareSettings | None = None,
) -> Comparison:
    """Compare ``latest_run`` (default: newest in ``results``) with ``baseline``; history = the other runs."""
    settings = settings or CompareSettings()
    if baseline.empty:
        raise CompareError("the baseline holds no result rows; nothing to compare against (promote a run first)")
    if results.empty:
        raise CompareError("the results hold no result rows; nothing to judge")
    check_run_ids(results, "the results")
    check_run_ids(baseline, "the baseline")
    bad_base = baseline[~np.isfinite(baseline["value"].astype(float))]
    if len(bad_base):
        first = bad_base.iloc[0]
        raise CompareError(
            f"{first.get('source', 'baseline')}: baseline value of {first['test_id']} {first['metric']} is {first['value']}; "
            f"a baseline must hold finite values (promote a good run)"
        )
    latest_run = latest_run or latest_run_id(results)
    baseline_run = latest_run_id(baseline)
    if latest_run in set(baseline["run_id"]):
        raise CompareError(f"run {latest_run} is the baseline's own run; comparing it with itself says nothing")

    latest = _per_key(results[results["run_id"] == latest_run])
    if latest.empty:
        raise CompareError(f"run {latest_run} has no result rows")
    history = results[results["run_id"] != latest_run]
    base = _per_key(baseline)
    accuracy = accuracy_metrics(pd.concat([latest, base], ignore_index=True))
    merged = latest.merge(base, on=KEY, how="outer", suffixes=("", "_base"), indicator=True)

    rows = []
    for record in merged.to_dict("records"):
        kind = "accuracy" if record["metric"] in accuracy else "context" if is_context_metric(record["metric"]) else "perf"
        side = "_base" if record["_merge"] == "right_only" else ""
        finding = {key: record[key] for key in KEY}
        finding.update({name: record.get(name + side) for name in CASE_FIELDS})
        finding.update(kind=kind, value=record.get("value"), baseline=record.get("value_base"), band=None, delta=None)
        if kind == "context":
            finding.update(status="context", detail=_context_detail(record), delta=_context_delta(record))
        elif record["_merge"] == "right_only":
            finding.update(value=None, status="missing", detail="in the baseline, not in the latest run")
        elif record["_merge"] == "left_only":
            if not _finite(record["value"]):
                status, detail = "regression", f"value is {record['value']} (not a finite number); not in the baseline"
            elif _flag(record.get("passed")) is False:
                status, detail = "new_failure", f"fails (threshold {_num(record.get('threshold'))}); not in the baseline"
            else:
                status, detail = "new", "not in the baseline"
            finding.update(status=status, detail=detail)
        else:
            status, detail, band, delta = _judge(record, kind, history, settings)
            finding.update(status=status, detail=detail, band=band, delta=delta)
        rows.append(finding)

    findings = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    severity = findings["status"].map({status: rank for rank, status in enumerate(STATUS_ORDER)})
    findings = findings.assign(_severity=severity).sort_values(["_severity", "test_id", "metric", "stage"], ignore_index=True)
    findings = findings.drop(columns="_severity")
    return Comparison(
        findings=findings, latest_run=latest_run, baseline_run=baseline_run, settings=settings,
        latest=RunInfo.of(results, latest_run), baseline=RunInfo.of(baseline, baseline_run),
    )
