"""The nightly HTML report in a real browser (headless Chromium): regressions first, every chart drawn."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reports.__main__ import main as reports_main
from reports.store import ResultRow, append_rows, run_file

pytestmark = pytest.mark.unit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=5000",
]
DAY = 86400.0
START = 1_790_000_000.0

#: (module, mode, seq_len, batch, mesh, policy, pcc, threshold): a slice of the accuracy matrix.
MATRIX = [
    (module, mode, seq, batch, mesh, policy, pcc, threshold)
    for module, pcc, threshold in [("embedding", 0.99999, 0.98), ("rms_norm", 0.9999, 0.99), ("mla", 0.9996, 0.99),
                                   ("mlp", 0.9998, 0.975), ("moe", 0.9937, 0.97), ("decoder_block", 0.9988, 0.988),
                                   ("lm_head", 0.9991, 0.98), ("model", 0.985, 0.97)]
    for mode, seq, batch in [("prefill", 128, 1), ("decode", 1, 32)]
    for mesh in ("1x1", "4x8")
    for policy in ("default", "high_precision")
]
BENCHMARKS = [  # (test id, module, mode, seq_len, batch, tt tokens/s, reference tokens/s)
    ("suites/perf/test_block_bench.py::test_block_prefill_throughput[decoder_block-seq128-mesh-selected]", "decoder_block", "prefill", 128, 1, 900.0, 1500.0),
    ("suites/perf/test_block_bench.py::test_block_decode_throughput[moe_decoder_block-users32-mesh-selected]", "moe_decoder_block", "decode", 128, 32, 60.0, 240.0),
    ("suites/perf/test_model_bench.py::test_model_decode_throughput[galaxy-tiny-users32]", "model", "decode", 128, 32, 40.0, 110.0),
]
PLANTED_CASE = ("mla", "decode", 1, 32, "4x8", "default")  # PCC drops below its threshold in the last run
PLANTED_BENCH = BENCHMARKS[2][0]  # model decode throughput drops 30% in the last run


def _matrix_id(module, mode, seq, batch, mesh, policy) -> str:
    return f"suites/accuracy/test_matrix.py::test_accuracy[{module}-{mode}-seq{seq}-users{batch}-mesh{mesh}-{'bfp8' if policy == 'default' else 'bf16'}-random]"


def write_nightly_history(results_dir: Path, runs: int = 8, plant: bool = True, seed: int = 0) -> list[str]:
    """``runs`` nights of matrix PCCs, teacher forcing and benchmarks (~2% noise); the last night carries the
    planted regressions when ``plant``. Returns the run ids, oldest first."""
    rng = np.random.default_rng(seed)
    run_ids = []
    for night in range(runs):
        run_id, revision, stamp = f"nightly-{night:02d}", f"{0xabc000 + night * 17:07x}", START + night * DAY
        last = plant and night == runs - 1
        rows = []
        for module, mode, seq, batch, mesh, policy, pcc, threshold in MATRIX:
            value = min(1.0, pcc + (0.0005 if policy == "high_precision" else 0.0) + 2e-5 * rng.standard_normal())
            if last and (module, mode, seq, batch, mesh, policy) == PLANTED_CASE:
                value = 0.985
            rows.append(dict(test_id=_matrix_id(module, mode, seq, batch, mesh, policy), module=module, mode=mode, metric="pcc",
                             value=value, threshold=threshold, passed=value >= threshold, seq_len=seq, batch=batch, mesh=mesh,
                             dtype_policy=policy, extra={"stage": f"layers.0.{module}", "weights": "random"}))
        for policy, top1, top5 in (("default", 0.91, 0.99), ("high_precision", 0.97, 1.0)):
            tf_id = f"suites/accuracy/test_teacher_forcing.py::test_teacher_forcing[tokens64-{policy}]"
            for metric, value, threshold in (("tf_top1", top1, 0.8), ("tf_top5", top5, 0.95)):
                rows.append(dict(test_id=tf_id, module="model", mode="teacher_forcing", metric=metric, value=value, threshold=threshold,
                                 passed=True, seq_len=96, batch=1, mesh="1x1", dtype_policy=policy))
        for test_id, module, mode, seq, batch, tt, ref in BENCHMARKS:
            tt_now = tt * (1 + 0.02 * rng.standard_normal()) * (0.7 if last and test_id == PLANTED_BENCH else 1.0)
            ref_now = ref * (1 + 0.02 * rng.standard_normal())
            rate = f"{mode}_tokens_per_s"
            for metric, value in ((rate, tt_now), (f"reference_{rate}", ref_now), ("throughput_ratio_tt_over_reference", tt_now / ref_now),
                                  ("ttft_s", seq / tt_now if mode == "prefill" else 1 / tt_now)):
                rows.append(dict(test_id=test_id, module=module, mode=mode, metric=metric, value=value, seq_len=seq, batch=batch,
                                 mesh="1x1", dtype_policy="default", higher_is_better=metric != "ttft_s"))
        append_rows(run_file(results_dir, run_id), [
            ResultRow(**row, run_id=run_id, git_revision=revision, machine="ci-runner", backend="emulator", timestamp=stamp + i)
            for i, row in enumerate(rows)
        ])
        run_ids.append(run_id)
    return run_ids


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered once for the module: the last night regressed, judged against the baseline of two nights before."""
    tmp_path = tmp_path_factory.mktemp("report")
    results = tmp_path / "results"
    run_ids = write_nightly_history(results)
    baseline = tmp_path / "baseline.jsonl"
    assert reports_main(["promote", "--results-dir", str(results), "--baseline", str(baseline), "--run", run_ids[-3]]) == 0
    html = tmp_path / "report.html"
    assert reports_main(["compare", "--results-dir", str(results), "--baseline", str(baseline), "--html", str(html)]) == 1
    return html


def _png_std(data: str) -> float:
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(data)), format="png")
    return float(np.asarray(pixels)[..., :3].std())


def test_every_chart_is_an_image_with_content(report_html: Path):
    page = report_html.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # 3 benchmarks: ratio + throughput each; the planted one also charts its regressed ttft (latency)
    assert len(images) == 7, len(images)
    assert all(_png_std(data) > 0.02 for data in images)
    assert "http://" not in page and "https://" not in page  # self-contained


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it with apt-get)")
def test_report_renders_in_headless_chromium(report_html: Path, tmp_path: Path):
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", "--dump-dom", report_html.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert 'id="verdict">REGRESSED<' in dom
    plots = re.search(r'data-plots="(\d+)/(\d+)/(\d+)"', dom)
    assert plots, "the page's load script did not run"
    total, decoded, nonblank = map(int, plots.groups())
    assert total == 7 and decoded == total and nonblank == total, f"{decoded} decoded, {nonblank} non-blank of {total} charts"

    # the regressions section comes first, and its first rows are the planted regressions
    assert dom.index('id="regressions"') < dom.index('id="accuracy"') < dom.index('id="performance"')
    first_rows = re.findall(r'<tr class="finding" data-status="([a-z_]+)" data-test-id="([^"]+)"', dom)[:3]
    assert first_rows[0] == ("new_failure", _matrix_id(*PLANTED_CASE).replace("&", "&amp;")), first_rows
    assert {row[1] for row in first_rows[1:]} == {PLANTED_BENCH}
    assert all(status == "regression" for status, _ in first_rows[1:])
    # the heatmap marks the failing cell; the planted benchmark's charts come first in the performance section
    assert re.search(r'class="hm failed regressed"[^>]*>0\.9850', dom)
    assert dom.index(PLANTED_BENCH, dom.index('id="performance"')) < dom.index(BENCHMARKS[0][0], dom.index('id="performance"'))

    screenshot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", "--window-size=1280,1600", f"--screenshot={screenshot}", report_html.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert screenshot.stat().st_size > 20_000  # a blank page compresses to a few KB
