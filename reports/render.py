"""Render a :class:`~reports.compare.Comparison` as Markdown (CI logs) and self-contained HTML (plots inline)."""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

from reports.compare import STATUS_ORDER as _STATUS_ORDER, Comparison


def _summary_counts(comparison: Comparison) -> dict[str, int]:
    return {status: comparison.count(status) for status in _STATUS_ORDER}


def render_markdown(comparison: Comparison, max_rows: int = 50) -> str:
    """A short Markdown summary: verdict, counts, then every non-ok finding."""
    counts = _summary_counts(comparison)
    verdict = "REGRESSED" if comparison.regressed else "OK"
    lines = [
        f"# deepseek-tt regression report: {verdict}",
        "",
        f"Latest run `{comparison.latest_run}` against baseline `{comparison.baseline_run}`.",
        "",
        "| " + " | ".join(_STATUS_ORDER) + " |",
        "|" + "---|" * len(_STATUS_ORDER),
        "| " + " | ".join(str(counts[s]) for s in _STATUS_ORDER) + " |",
        "",
    ]
    notable = comparison.findings[comparison.findings["status"] != "ok"]
    if notable.empty:
        lines.append("Nothing moved beyond its tolerance.")
    else:
        lines += ["| status | test | metric | value | baseline | detail |", "|---|---|---|---|---|---|"]
        for row in notable.head(max_rows).itertuples():
            lines.append(
                f"| {row.status} | `{row.test_id}` | {row.metric} | {_fmt(row.value)} | {_fmt(row.baseline)} | {row.detail} |"
            )
        if len(notable) > max_rows:
            lines.append(f"\n... and {len(notable) - max_rows} more (see the HTML report).")
    return "\n".join(lines) + "\n"


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metric_plots(history: pd.DataFrame, max_series: int = 12) -> list[tuple[str, str]]:
    """One PNG (base64) per metric: each test's value over runs, oldest to newest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    if history.empty:
        return plots
    run_order = history.groupby("run_id")["timestamp"].max().sort_values().index.tolist()
    position = {run: i for i, run in enumerate(run_order)}
    for metric, frame in history.groupby("metric"):
        figure, axis = plt.subplots(figsize=(7, 3.2), dpi=90)
        for test_id, series in list(frame.groupby("test_id"))[:max_series]:
            last = series.sort_values("timestamp").groupby("run_id", as_index=False).last()
            last = last.assign(x=last["run_id"].map(position)).sort_values("x")
            axis.plot(last["x"], last["value"].astype(float), marker="o", label=str(test_id)[:48])
        axis.set_title(str(metric))
        axis.set_xlabel("run (oldest to newest)")
        axis.set_xticks(range(len(run_order)))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6, loc="best")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        plots.append((str(metric), base64.b64encode(buffer.getvalue()).decode("ascii")))
    return plots


def render_html(comparison: Comparison, history: pd.DataFrame) -> str:
    """A self-contained HTML page: verdict, counts, findings table and one plot per metric."""
    counts = _summary_counts(comparison)
    verdict = "REGRESSED" if comparison.regressed else "OK"
    colour = "#b00020" if comparison.regressed else "#1b5e20"
    findings = comparison.findings.copy()
    table = findings.to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}", classes="findings", border=0)
    plots = "\n".join(
        f'<figure><img alt="{html.escape(name)} over time" src="data:image/png;base64,{data}"/>'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, data in _metric_plots(history)
    )
    count_cells = "".join(f"<td>{counts[s]}</td>" for s in _STATUS_ORDER)
    header_cells = "".join(f"<th>{s}</th>" for s in _STATUS_ORDER)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deepseek-tt regression report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
h1 span {{ color: {colour}; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }}
</style></head>
<body>
<h1>deepseek-tt regression report: <span id="verdict">{verdict}</span></h1>
<p>Latest run <code>{html.escape(str(comparison.latest_run))}</code> against baseline
<code>{html.escape(str(comparison.baseline_run))}</code>.</p>
<table class="counts"><tr>{header_cells}</tr><tr>{count_cells}</tr></table>
<h2>Findings</h2>
{table}
<h2>Metrics over time</h2>
<div id="plots">{plots}</div>
<script>
// Marks the page once every plot has decoded, so a headless browser check can read the result.
window.addEventListener("load", function () {{
  var images = Array.prototype.slice.call(document.querySelectorAll("#plots img"));
  var decoded = images.filter(function (img) {{ return img.complete && img.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-plots", images.length + "/" + decoded);
}});
</script>
</body></html>
"""
