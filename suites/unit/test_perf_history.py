"""docs/PERF_BEFORE_AFTER.md states what the runs committed in reports/history/runtime_redesign/ measured,
and those runs still load and render as a nightly report with today's report code."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from reports.__main__ import main as reports_main
from reports.store import load_results

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
HISTORY = ROOT / "reports" / "history" / "runtime_redesign"
DOC = ROOT / "docs" / "PERF_BEFORE_AFTER.md"
#: A table row of the doc: the benchmark's pytest id, then the ratio before and after.
ROW = re.compile(r"^\| `(?P<id>[^`]+)` \| (?P<before>[0-9.]+) \| (?P<after>[0-9.]+) \|")
RATIO_METRICS = ("throughput_ratio_tt_over_reference", "emulator_over_torch_")


def _ratios(frame: pd.DataFrame) -> dict[str, float]:
    """Per benchmark (pytest id without the file), its TT-over-reference (or emulator-over-torch) ratio."""
    chosen = frame[frame["metric"].map(lambda m: m == RATIO_METRICS[0] or m.startswith(RATIO_METRICS[1]))]
    return {test_id.split("::", 1)[1]: float(value) for test_id, value in zip(chosen["test_id"], chosen["value"])}


def test_the_table_is_the_committed_measurement():
    before = _ratios(load_results(HISTORY / "before.jsonl"))
    after = _ratios(load_results(HISTORY / "after"))
    rows = [match for match in map(ROW.match, DOC.read_text(encoding="utf-8").splitlines()) if match]
    assert {row["id"] for row in rows} == set(before) == set(after), "every measured benchmark has one row"
    for row in rows:
        for side, measured in (("before", before), ("after", after)):
            assert float(row[side]) == pytest.approx(measured[row["id"]], abs=5e-4), (row["id"], side)


def test_the_history_renders_as_a_nightly_report(tmp_path):
    markdown = tmp_path / "summary.md"
    code = reports_main(["compare", "--results-dir", str(HISTORY / "after"), "--baseline", str(HISTORY / "before.jsonl"),
                         "--markdown", str(markdown), "--html", str(tmp_path / "report.html")])
    assert code in (0, 1), "the report code must still read the committed rows"  # 1: noisy metrics moved
    text = markdown.read_text(encoding="utf-8")
    assert "Baseline `before-47385a9`" in text and "improvement" in text
