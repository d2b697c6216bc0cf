"""Render a :class:`~reports.compare.Comparison` as Markdown (CI logs) and one self-contained HTML page.

Both read in the same order: the verdict, what regressed or newly failed since the baseline (with the git
revisions of both runs), improvements, the accuracy matrix (margin over threshold) with teacher forcing
beside it, performance per benchmark (HTML: charts over the run history with the baseline's noise band),
and everything else collapsed.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

import pandas as pd

from reports.compare import STATUS_ORDER, Comparison, RunInfo
from reports.metrics import case_label, case_labels
from reports.views import Cell, accuracy_matrix, family_title, perf_series, teacher_forcing_table

_HEADLINE = {
    "new_failure": "newly failing", "regression": "regressed", "missing": "missing", "still_failing": "still failing",
    "new": "new", "improvement": "improved", "ok": "unchanged", "context": "context",
}


# ----------------------------------------------------------------------------------------------- helpers

def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _change(row: dict[str, Any]) -> str:
    delta, base = row.get("delta"), row.get("baseline")
    if delta is None or (isinstance(delta, float) and math.isnan(delta)):
        return "-"
    if row.get("kind") in ("perf", "context") and base not in (None, 0) and not (isinstance(base, float) and math.isnan(base)):
        return f"{delta / abs(float(base)):+.1%}"
    return f"{delta:+.4f}"


def _when(info: RunInfo | None) -> str:
    if info is None or info.finished is None:
        return "unknown time"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info.finished))


def _run_line(label: str, info: RunInfo | None, run_id: str | None) -> str:
    revision = info.revision if info else "unknown"
    return f"{label} `{run_id}` (git `{revision}`, {_when(info)})"


def _counts_line(comparison: Comparison) -> str:
    parts = [f"{comparison.count(s)} {_HEADLINE[s]}" for s in STATUS_ORDER if comparison.count(s)]
    return ", ".join(parts) if parts else "no findings"


def _metric_name(row: dict[str, Any]) -> str:
    stage = row.get("stage")
    return f"{row['metric']} [{stage}]" if stage else str(row["metric"])


def _labels(comparison: Comparison, results: pd.DataFrame | None) -> dict[str, str]:
    labels = case_labels(results) if results is not None and not results.empty else {}
    for row in comparison.findings.to_dict("records"):
        labels.setdefault(str(row["test_id"]), case_label(row))
    return labels


def _regressing(comparison: Comparison) -> pd.DataFrame:
    findings = comparison.findings
    return findings[findings["status"].isin(comparison.regressing_statuses)]


def _column_title(column: tuple[str, str, str]) -> str:
    return " ".join(part for part in column if part != "-")


# ---------------------------------------------------------------------------------------------- Markdown

def render_markdown(comparison: Comparison, results: pd.DataFrame | None = None, max_rows: int = 40) -> str:
    """CI-log summary in the report's order: verdict, regressions, improvements, accuracy matrix, teacher forcing."""
    labels = _labels(comparison, results)
    lines = [
        f"# deepseek-tt nightly report: {comparison.verdict}",
        "",
        _run_line("Latest run", comparison.latest, comparison.latest_run) + "  ",
        _run_line("Baseline", comparison.baseline, comparison.baseline_run) + "  ",
        f"Findings: {_counts_line(comparison)}.",
        "",
    ]
    regressing = _regressing(comparison)
    lines.append(f"## Regressed or newly failing since the baseline ({len(regressing)})")
    lines.append("")
    if regressing.empty:
        lines.append("Nothing regressed or newly failed.")
    else:
        lines += _markdown_findings(regressing, labels, max_rows)
        lines += ["", "Full test ids:"]
        lines += [f"- `{test_id}`" for test_id in dict.fromkeys(regressing["test_id"].astype(str))][:max_rows]
    improvements = comparison.findings[comparison.findings["status"] == "improvement"]
    if len(improvements):
        lines += ["", f"## Improvements ({len(improvements)})", ""]
        lines += _markdown_findings(improvements, labels, max_rows)
    lines += ["", *_markdown_matrix(comparison)]
    tf = teacher_forcing_table(comparison)
    if len(tf):
        lines += ["", "## Teacher forcing", "", "| case | metric | value | threshold |", "|---|---|---:|---:|"]
        for row in tf.itertuples():
            mark = " ✗" if row.failed else ""
            lines.append(f"| {row.case} | {row.which} | {row.value:.3f}{mark} | {row.threshold:g} |")
    others = comparison.findings[~comparison.findings["status"].isin(set(comparison.regressing_statuses) | {"improvement"})]
    if len(others):
        lines += ["", f"Everything else ({_counts_line_for(others)}): see the HTML report."]
    return "\n".join(lines) + "\n"


def _counts_line_for(frame: pd.DataFrame) -> str:
    counts = frame["status"].value_counts()
    return ", ".join(f"{int(counts[s])} {_HEADLINE[s]}" for s in STATUS_ORDER if s in counts)


def _markdown_findings(frame: pd.DataFrame, labels: dict[str, str], max_rows: int) -> list[str]:
    lines = ["| status | case | metric | baseline | now | change | detail |", "|---|---|---|---:|---:|---:|---|"]
    for row in frame.head(max_rows).to_dict("records"):
        lines.append(
            f"| {row['status']} | {labels.get(str(row['test_id']), row['test_id'])} | {_metric_name(row)} | "
            f"{_fmt(row['baseline'])} | {_fmt(row['value'])} | {_change(row)} | {row['detail']} |"
        )
    if len(frame) > max_rows:
        lines.append(f"\n... and {len(frame) - max_rows} more (see the HTML report).")
    return lines


def _markdown_matrix(comparison: Comparison) -> list[str]:
    modules, columns, cells = accuracy_matrix(comparison)
    if not cells:
        return ["## Accuracy matrix", "", "No thresholded accuracy results in this run."]
    lines = [
        "## Accuracy matrix (worst value per cell; ✗ below threshold, ▼ regressed)",
        "",
        "| module | " + " | ".join(_column_title(c) for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for module in modules:
        cells_text = []
        for column in columns:
            cell = cells.get((module, column))
            cells_text.append("" if cell is None else f"{cell.value:.4f}{' ✗' if cell.failed else ''}{' ▼' if cell.regressed else ''}")
        lines.append(f"| {module} | " + " | ".join(cells_text) + " |")
    return lines


# -------------------------------------------------------------------------------------------------- HTML

def _colour(margin: float, failed: bool) -> str:
    """Red below the threshold, amber near it, green with headroom."""
    import matplotlib
    from matplotlib import colors

    if failed:
        return "#e53935"
    cmap = matplotlib.colormaps["RdYlGn"]
    return colors.to_hex(cmap(0.30 + 0.65 * max(0.0, min(1.0, margin))))


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _findings_table(frame: pd.DataFrame, labels: dict[str, str], table_id: str) -> str:
    rows = []
    for row in frame.to_dict("records"):
        test_id = str(row["test_id"])
        rows.append(
            f'<tr class="finding" data-status="{_esc(row["status"])}" data-test-id="{_esc(test_id)}">'
            f'<td><span class="badge {_esc(row["status"])}">{_esc(_HEADLINE[row["status"]])}</span></td>'
            f'<td class="case"><span title="{_esc(test_id)}">{_esc(labels.get(test_id, test_id))}</span>'
            f'<div class="testid">{_esc(test_id)}</div></td>'
            f'<td class="metric">{_esc(_metric_name(row))}</td>'
            f'<td class="num">{_esc(_fmt(row["baseline"]))}</td><td class="num">{_esc(_fmt(row["value"]))}</td>'
            f'<td class="num">{_esc(_change(row))}</td><td class="detail">{_esc(row["detail"])}</td></tr>'
        )
    return (
        f'<table class="findings" id="{table_id}"><colgroup><col class="c-status"><col class="c-case"><col class="c-metric">'
        '<col class="c-num"><col class="c-num"><col class="c-num"><col class="c-detail"></colgroup>'
        "<thead><tr><th>status</th><th>case</th><th>metric</th><th>baseline</th><th>now</th><th>change</th><th>detail</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _cell_html(cell: Cell | None) -> str:
    if cell is None:
        return '<td class="hm empty"></td>'
    marks = ("✗" if cell.failed else "") + ("▼" if cell.regressed else "")
    hover = "\n".join([f"{cell.metric} = {cell.value:.6g} (threshold {cell.threshold:g}, margin {cell.margin:+.0%} of headroom)",
                       *cell.tests, f"{cell.count} measurement(s)"])
    classes = "hm" + (" failed" if cell.failed else "") + (" regressed" if cell.regressed else "")
    return (f'<td class="{classes}" style="background:{_colour(cell.margin, cell.failed)}" title="{_esc(hover)}">'
            f'{cell.value:.4f}{f"<b>{marks}</b>" if marks else ""}</td>')


def _heatmap_html(comparison: Comparison) -> str:
    modules, columns, cells = accuracy_matrix(comparison)
    if not cells:
        return '<p class="muted">No thresholded accuracy results in this run.</p>'
    head = "".join(f"<th>{'<br>'.join(_esc(p) for p in column)}</th>" for column in columns)
    body = "".join(
        f"<tr><th class='module'>{_esc(module)}</th>{''.join(_cell_html(cells.get((module, c))) for c in columns)}</tr>"
        for module in modules
    )
    return f'<table class="heatmap" id="heatmap"><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>'


def _teacher_forcing_html(comparison: Comparison) -> str:
    tf = teacher_forcing_table(comparison)
    if tf.empty:
        return '<p class="muted">No teacher-forcing results in this run.</p>'
    rows = []
    for case, frame in tf.groupby("case", sort=False):
        cells = []
        for which in ("top-1", "top-5"):
            match = frame[frame["which"] == which]
            if match.empty:
                cells.append('<td class="hm empty"></td>')
                continue
            row = match.iloc[0]
            hover = f"{row['test_id']}\nthreshold {row['threshold']:g}"
            mark = "<b>✗</b>" if row["failed"] else ""
            mark += "<b>▼</b>" if row["regressed"] else ""
            cells.append(f'<td class="hm" style="background:{_colour(row["margin"], bool(row["failed"]))}" title="{_esc(hover)}">'
                         f'{row["value"]:.3f}{mark}<span class="thr">≥{row["threshold"]:g}</span></td>')
        rows.append(f"<tr><th class='module'>{_esc(case)}</th>{''.join(cells)}</tr>")
    return f'<table class="heatmap" id="teacher-forcing"><thead><tr><th></th><th>top-1</th><th>top-5</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _latest_value(results: pd.DataFrame, test_id: str, metric: str, run_id: str | None) -> float | None:
    rows = results[(results["test_id"] == test_id) & (results["metric"] == metric) & (results["run_id"] == run_id)]
    return float(rows.sort_values("timestamp")["value"].iloc[-1]) if len(rows) else None


def _perf_html(comparison: Comparison, results: pd.DataFrame) -> str:
    from reports.charts import perf_chart, run_labels, run_order

    specs = perf_series(comparison, results)
    if not specs:
        return '<p class="muted">No benchmark results in this run.</p>'
    runs, labels = run_order(results), run_labels(results)
    blocks: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    worst: dict[str, str] = {}
    for spec in specs:
        metric = spec.metrics[0]
        try:
            png = perf_chart(spec, comparison, results, runs, labels)
        except (ValueError, OverflowError) as exc:  # values matplotlib cannot place; the tables still list them
            png, note = None, f"chart not drawn: {exc}"
        caption = f"{family_title(spec.family)}: {metric}" if spec.family in ("ratio", "throughput") else metric
        reference = spec.references.get(metric)
        if spec.family == "throughput" and reference:
            latest_ref = _latest_value(results, spec.test_id, reference, comparison.latest_run)
            caption += f" (reference now {_fmt(latest_ref)})" if latest_ref is not None else ""
        blocks.setdefault(spec.test_id, []).append(
            f'<figure class="chart {_esc(spec.status)}"><figcaption>{_esc(caption)}'
            f'{f" <span class=badge {_esc(spec.status)}>{_esc(_HEADLINE[spec.status])}</span>" if spec.status != "ok" else ""}'
            "</figcaption>"
            + (f'<img alt="{_esc(spec.label)}: {_esc(metric)} over runs" src="data:image/png;base64,{png}">' if png
               else f'<p class="muted">{_esc(note)}</p>')
            + "</figure>"
        )
        titles[spec.test_id] = spec.label
        worst.setdefault(spec.test_id, spec.status)
    out = []
    for test_id, figures in blocks.items():
        status = worst[test_id]
        out.append(
            f'<div class="bench" data-status="{_esc(status)}"><h3><span title="{_esc(test_id)}">{_esc(titles[test_id])}</span>'
            f'<span class="testid">{_esc(test_id)}</span></h3><div class="charts">{"".join(figures)}</div></div>'
        )
    return "".join(out)


_CSS = """
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 6px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 0 0 6px; display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.verdict { border-radius: 8px; padding: 14px 18px; color: #fff; }
.verdict.REGRESSED { background: #b71c1c; } .verdict.FAILING { background: #e65100; } .verdict.OK { background: #1b5e20; }
.verdict .counts { font-size: 14px; opacity: .95; }
.runs { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 10px 0 0; font-size: 13px; }
.runs dt { color: #57606a; } .runs dd { margin: 0; } code { font-size: 12px; background: #eaeef2; padding: 1px 4px; border-radius: 4px; }
table { border-collapse: collapse; background: #fff; }
table.findings { width: 100%; table-layout: fixed; font-size: 13px; }
table.findings th, table.findings td { padding: 5px 8px; border-bottom: 1px solid #e5e7eb; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
table.findings th { background: #eef1f4; font-weight: 600; font-size: 12px; white-space: nowrap; overflow-wrap: normal; }
col.c-status { width: 108px; } col.c-case { width: 30%; } col.c-metric { width: 17%; } col.c-num { width: 84px; } col.c-detail { width: auto; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.testid { color: #6e7781; font-size: 11px; font-family: ui-monospace, monospace; overflow-wrap: anywhere; font-weight: normal; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 11px; font-weight: 600; background: #eaeef2; color: #24292f; white-space: nowrap; }
.badge.regression, .badge.new_failure, .badge.still_failing { background: #ffebe9; color: #a40e26; }
.badge.missing { background: #fff8c5; color: #7d4e00; } .badge.improvement { background: #dafbe1; color: #116329; }
.muted { color: #6e7781; }
.acc { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.acc > div { overflow-x: auto; max-width: 100%; }
table.heatmap { font-size: 12px; font-variant-numeric: tabular-nums; }
table.heatmap th { font-weight: 600; font-size: 11px; padding: 4px 6px; color: #57606a; text-align: center; vertical-align: bottom; }
table.heatmap th.module { text-align: right; color: #1f2328; white-space: nowrap; }
table.heatmap td.hm { padding: 5px 7px; text-align: center; border: 2px solid #fff; min-width: 64px; cursor: default; }
table.heatmap td.failed { color: #fff; font-weight: 700; } table.heatmap td.regressed { outline: 2px solid #1f2328; outline-offset: -3px; }
table.heatmap td.empty { background: #f0f2f4; }
table.heatmap b { margin-left: 3px; } .thr { display: block; font-size: 10px; opacity: .75; }
.legend { font-size: 12px; color: #57606a; margin: 6px 0; display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
.legend .bar { width: 160px; height: 10px; border-radius: 3px; background: linear-gradient(90deg, #e53935 0 18%, %GRADIENT%); }
.bench { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 12px; margin: 10px 0; }
.bench[data-status="regression"], .bench[data-status="new_failure"] { border-color: #cf222e; box-shadow: 0 0 0 1px #cf222e inset; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; } figcaption { font-size: 12px; color: #57606a; margin-bottom: 2px; }
figure img { display: block; width: 460px; max-width: 100%; height: auto; }
details { margin-top: 28px; } summary { cursor: pointer; font-weight: 600; font-size: 15px; }
"""

_SCRIPT = """
// Marks the page once every chart has decoded: data-plots="charts/decoded/non-blank" (pixel variance on a canvas),
// so a headless browser check can read the result.
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.querySelectorAll("img"));
  var decoded = 0, nonblank = 0;
  images.forEach(function (img) {
    if (!(img.complete && img.naturalWidth > 0)) return;
    decoded += 1;
    var canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    var context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    var data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    var sum = 0, sumsq = 0, n = data.length / 4;
    for (var i = 0; i < data.length; i += 4) { var v = (data[i] + data[i + 1] + data[i + 2]) / 3; sum += v; sumsq += v * v; }
    var variance = sumsq / n - (sum / n) * (sum / n);
    if (variance > 1) nonblank += 1;
  });
  document.body.setAttribute("data-plots", images.length + "/" + decoded + "/" + nonblank);
});
"""


def render_html(comparison: Comparison, history: pd.DataFrame) -> str:
    """One self-contained HTML page (charts inline as PNG): regressions first, then accuracy and performance."""
    labels = _labels(comparison, history)
    findings = comparison.findings
    regressing = _regressing(comparison)
    improvements = findings[findings["status"] == "improvement"]
    rest = findings[~findings.index.isin(regressing.index) & ~findings.index.isin(improvements.index)]
    latest, base = comparison.latest, comparison.baseline
    since = (f"Baseline <code>{_esc(comparison.baseline_run)}</code> @ <code>{_esc(base.revision if base else 'unknown')}</code> → "
             f"latest <code>{_esc(comparison.latest_run)}</code> @ <code>{_esc(latest.revision if latest else 'unknown')}</code>")
    regress_html = (_findings_table(regressing, labels, "regressions-table") if len(regressing)
                    else '<p id="regressions-table" class="muted">Nothing regressed or newly failed.</p>')
    improve_html = (_findings_table(improvements, labels, "improvements-table") if len(improvements)
                    else '<p class="muted">No improvements beyond tolerance.</p>')
    from reports.charts import run_order

    gradient = ", ".join(f"{_colour(m, False)} {18 + 82 * m:.0f}%" for m in (0.0, 0.25, 0.5, 0.75, 1.0))
    css = _CSS.replace("%GRADIENT%", gradient)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>deepseek-tt nightly report: {comparison.verdict}</title>
<style>{css}</style></head>
<body><main>
<header class="verdict {comparison.verdict}">
<h1>deepseek-tt nightly report: <span id="verdict">{comparison.verdict}</span></h1>
<div class="counts">{_esc(_counts_line(comparison))} · {len(run_order(history))} runs in the history</div>
</header>
<dl class="runs">
<dt>latest run</dt><dd><code>{_esc(comparison.latest_run)}</code> · git <code>{_esc(latest.revision if latest else "unknown")}</code> · {_esc(_when(latest))} · {_esc(", ".join(latest.machines) if latest else "")}</dd>
<dt>baseline</dt><dd><code>{_esc(comparison.baseline_run)}</code> · git <code>{_esc(base.revision if base else "unknown")}</code> · {_esc(_when(base))} · {_esc(", ".join(base.machines) if base else "")}</dd>
</dl>
<section id="regressions"><h2>Regressed or newly failing since the baseline ({len(regressing)})</h2>
<p class="muted">{since}</p>
{regress_html}
</section>
<section id="improvements"><h2>Improvements ({len(improvements)})</h2>
{improve_html}
</section>
<section id="accuracy"><h2>Accuracy: margin over threshold</h2>
<div class="legend"><span>below threshold</span><span class="bar"></span><span>on the threshold → perfect score</span>
<span>· each cell: worst value of its case; <b>✗</b> failing, <b>▼</b> regressed since the baseline; hover for test ids</span></div>
<div class="acc"><div><h3>Module × mode/shape × mesh × dtype policy</h3>{_heatmap_html(comparison)}</div>
<div><h3>Teacher forcing</h3>{_teacher_forcing_html(comparison)}</div></div>
</section>
<section id="performance"><h2>Performance per benchmark</h2>
<p class="muted">Each chart: one test, one metric, over the run history (oldest → newest, date and git revision); TT solid,
reference dashed (throughput: the reference's value is in the caption), the shaded band is the noise band the verdict used around the baseline value; the latest point is circled.</p>
<div id="plots">{_perf_html(comparison, history)}</div>
</section>
<details id="everything-else"><summary>Everything else ({_esc(_counts_line_for(rest)) if len(rest) else "nothing"})</summary>
{_findings_table(rest, labels, "rest-table") if len(rest) else ""}
</details>
</main>
<script>{_SCRIPT}</script>
</body></html>
"""
