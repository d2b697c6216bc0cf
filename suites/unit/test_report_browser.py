"""The HTML report opens in a real browser (headless Chromium), shows every plot, and renders."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reports.__main__ import main as reports_main
from suites.unit.test_reports import _history, _write_run

pytestmark = pytest.mark.unit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=5000",
]


@pytest.fixture
def report_html(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    _history(results)
    baseline = tmp_path / "baseline.jsonl"
    reports_main(["promote", "--results-dir", str(results), "--baseline", str(baseline)])
    _write_run(results, 10, {("mla-decode", "pcc"): 0.98, ("moe-prefill", "pcc"): 0.985, ("model-decode", "decode_tok_s_u"): 70.0})
    html = tmp_path / "report.html"
    assert reports_main(["compare", "--results-dir", str(results), "--baseline", str(baseline), "--html", str(html)]) == 1
    return html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it with apt-get)")
def test_report_renders_in_headless_chromium(report_html: Path, tmp_path: Path):
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", "--dump-dom", report_html.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert 'id="verdict">REGRESSED<' in dom
    plots = re.search(r'data-plots="(\d+)/(\d+)"', dom)
    assert plots, "the page's load script did not run"
    total, decoded = map(int, plots.groups())
    assert total == 2 and decoded == total, f"{decoded} of {total} plots decoded"

    screenshot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", "--window-size=1280,1600", f"--screenshot={screenshot}", report_html.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert screenshot.stat().st_size > 20_000  # a blank page compresses to a few KB
