"""Matplotlib charts of the report, as base64 PNGs: one benchmark metric over the run history."""

from __future__ import annotations

import base64
import io
import math
import time
import warnings

import pandas as pd

from reports.compare import Comparison
from reports.views import ChartSpec

_STATUS_COLOURS = {"regression": "#c62828", "new_failure": "#c62828", "still_failing": "#c62828", "improvement": "#2e7d32"}
TT_COLOUR = "#1565c0"
REFERENCE_COLOUR = "#757575"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_order(results: pd.DataFrame) -> list[str]:
    """Run ids, oldest to newest."""
    if results.empty:
        return []
    return [str(r) for r in results.groupby("run_id")["timestamp"].max().sort_values().index]


def run_labels(results: pd.DataFrame) -> dict[str, str]:
    """run id -> ``MM-DD`` + short git revision (the tick labels)."""
    labels = {}
    for run_id, frame in results.groupby("run_id"):
        day = time.strftime("%m-%d", time.gmtime(float(frame["timestamp"].max())))
        revisions = sorted({str(v) for v in frame["git_revision"] if isinstance(v, str) and v})
        revision = revisions[0][:8] if len(revisions) == 1 else ("mixed" if revisions else "")
        labels[str(run_id)] = f"{day}\n{revision}" if revision else day
    return labels


def _series(results: pd.DataFrame, test_id: str, metric: str, stage: str, order: dict[str, int]) -> pd.DataFrame:
    rows = results[(results["test_id"] == test_id) & (results["metric"] == metric) & (results["stage"] == stage)]
    if rows.empty:
        return pd.DataFrame(columns=["x", "value"])
    last = rows.sort_values("timestamp").groupby("run_id", as_index=False).last()
    last = last.assign(x=last["run_id"].map(order)).dropna(subset=["x"]).sort_values("x")
    last = last[last["value"].astype(float).abs() < 1e300]  # NaN / inf / absurd values cannot be drawn (the tables list them)
    return last[["x", "value"]]


def perf_chart(spec: ChartSpec, comparison: Comparison, results: pd.DataFrame, runs: list[str], labels: dict[str, str]) -> str:
    """One benchmark metric over the runs: TT solid, reference dashed, baseline band shaded, latest point marked."""
    plt = _pyplot()
    order = {run: index for index, run in enumerate(runs)}
    figure, axis = plt.subplots(figsize=(4.6, 2.5), dpi=100)
    try:
        with warnings.catch_warnings():  # a label with characters the font lacks is drawn as boxes, not worth a warning
            warnings.filterwarnings("ignore", message="Glyph .* missing", category=UserWarning)
            _draw(axis, spec, comparison, results, runs, labels, order)
            figure.tight_layout(pad=0.4)
            return _png(figure, plt)
    finally:
        plt.close(figure)


def _draw(axis, spec: ChartSpec, comparison: Comparison, results: pd.DataFrame, runs: list[str], labels: dict[str, str],
          order: dict[str, int]) -> None:
    findings = comparison.findings
    for metric in spec.metrics:
        row = findings[(findings["test_id"] == spec.test_id) & (findings["metric"] == metric)]
        stage = str(row.iloc[0]["stage"]) if len(row) else ""
        series = _series(results, spec.test_id, metric, stage, order)
        finding = row.iloc[0] if len(row) else None
        base, band = (finding["baseline"], finding["band"]) if finding is not None else (None, None)
        if base is not None and not pd.isna(base) and abs(float(base)) < 1e300:
            base = float(base)
            if band is not None and not pd.isna(band) and math.isfinite(base * (1 + float(band))):
                axis.axhspan(base * (1 - float(band)), base * (1 + float(band)), color=TT_COLOUR, alpha=0.10, lw=0,
                             label=f"baseline ±{float(band):.0%}")
            axis.axhline(base, color=TT_COLOUR, lw=0.8, ls=":", alpha=0.8)
        axis.plot(series["x"], series["value"].astype(float), marker="o", ms=3.5, lw=1.6, color=TT_COLOUR, label="TT")
        reference = spec.references.get(metric) if spec.family != "throughput" else None  # own scale: see caption
        if reference:
            ref_series = _series(results, spec.test_id, reference, stage, order)
            axis.plot(ref_series["x"], ref_series["value"].astype(float), marker="s", ms=2.5, lw=1.2, ls="--",
                      color=REFERENCE_COLOUR, label="reference")
        latest = order.get(str(comparison.latest_run))
        latest_point = series[series["x"] == latest]
        if len(latest_point):
            colour = _STATUS_COLOURS.get(spec.status, TT_COLOUR)
            axis.plot(latest_point["x"], latest_point["value"].astype(float), "o", ms=8, mfc="none", mec=colour, mew=2)
    _x_ticks(axis, runs, labels)
    axis.grid(alpha=0.25, lw=0.6)
    axis.tick_params(labelsize=7)
    axis.spines[["top", "right"]].set_visible(False)
    axis.set_ylabel(_unit(spec), fontsize=7)
    axis.legend(fontsize=6.5, loc="lower left", frameon=False, ncol=3)
    axis.margins(y=0.25)


def _unit(spec: ChartSpec) -> str:
    metric = spec.metrics[0]
    if spec.family == "ratio":
        return "TT / reference"
    if spec.family == "throughput":
        return "tokens/s/user" if "per_user" in metric else "tokens/s"
    if spec.family == "latency":
        return "seconds" if not metric.endswith("_ms") else "ms"
    return metric


def _x_ticks(axis, runs: list[str], labels: dict[str, str]) -> None:
    step = max(1, math.ceil(len(runs) / 8))
    ticks = list(range(0, len(runs), step))
    if runs and ticks[-1] != len(runs) - 1:
        ticks.append(len(runs) - 1)
    axis.set_xticks(ticks)
    axis.set_xticklabels([labels.get(runs[i], str(i)) for i in ticks], fontsize=6.5)
    axis.set_xlim(-0.5, max(len(runs) - 0.5, 0.5))


def _png(figure, plt) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
