"""The regression report on synthetic histories: what is flagged, and the exit code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reports.__main__ import main as reports_main
from reports.compare import compare
from reports.ingest import rows_from_benchmark_json, rows_from_demo_output
from reports.store import ResultRow, append_rows, load_results, run_file

pytestmark = pytest.mark.unit

BASE_TIME = 1_700_000_000.0


def _write_run(results_dir: Path, run_index: int, values: dict[tuple[str, str], float], passed: dict | None = None) -> str:
    run_id = f"run{run_index:02d}"
    rows = [
        ResultRow(
            test_id=test_id,
            module=test_id.split("-")[0],
            mode="decode",
            metric=metric,
            value=value,
            passed=(passed or {}).get((test_id, metric), True),
            higher_is_better=True,
            run_id=run_id,
            timestamp=BASE_TIME + run_index * 86400,
        )
        for (test_id, metric), value in values.items()
    ]
    append_rows(run_file(results_dir, run_id), rows)
    return run_id


def _history(results_dir: Path, runs: int = 6, seed: int = 0) -> dict[tuple[str, str], float]:
    """Stable PCCs and a throughput with ~1% noise over earlier nights."""
    rng = np.random.default_rng(seed)
    nominal = {("mla-decode", "pcc"): 0.995, ("moe-prefill", "pcc"): 0.985, ("model-decode", "decode_tok_s_u"): 100.0}
    for index in range(runs):
        values = dict(nominal)
        values[("model-decode", "decode_tok_s_u")] = 100.0 * (1 + 0.01 * rng.standard_normal())
        _write_run(results_dir, index, values)
    return nominal


def _status(comparison, test_id: str, metric: str) -> str:
    row = comparison.findings[(comparison.findings.test_id == test_id) & (comparison.findings.metric == metric)]
    assert len(row) == 1, comparison.findings
    return row.iloc[0]["status"]


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def baseline(results_dir: Path, tmp_path: Path) -> Path:
    nominal = _history(results_dir)
    path = tmp_path / "baseline.jsonl"
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(path)]) == 0
    return path


def test_unchanged_run_is_ok(results_dir, baseline):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.995, ("moe-prefill", "pcc"): 0.985, ("model-decode", "decode_tok_s_u"): 100.5})
    assert reports_main(["compare", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 0


def test_pcc_drop_is_a_regression(results_dir, baseline):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.980, ("moe-prefill", "pcc"): 0.985, ("model-decode", "decode_tok_s_u"): 100.0})
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert _status(comparison, "mla-decode", "pcc") == "regression"
    assert _status(comparison, "moe-prefill", "pcc") == "ok"
    assert reports_main(["compare", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 1


def test_throughput_inside_the_noise_band_is_ok_outside_is_flagged(results_dir, baseline):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.995, ("moe-prefill", "pcc"): 0.985, ("model-decode", "decode_tok_s_u"): 97.5})
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert _status(comparison, "model-decode", "decode_tok_s_u") == "ok"

    _write_run(results_dir, 11, {("mla-decode", "pcc"): 0.995, ("moe-prefill", "pcc"): 0.985, ("model-decode", "decode_tok_s_u"): 80.0})
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert _status(comparison, "model-decode", "decode_tok_s_u") == "regression"


def test_noise_band_widens_with_a_noisy_history(results_dir, tmp_path):
    rng = np.random.default_rng(1)
    for index in range(8):
        _write_run(results_dir, index, {("model-decode", "decode_tok_s_u"): 100.0 * (1 + 0.08 * rng.standard_normal())})
    baseline = tmp_path / "b.jsonl"
    reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)])
    baseline_value = load_results(baseline)["value"].iloc[0]
    _write_run(results_dir, 20, {("model-decode", "decode_tok_s_u"): baseline_value * 0.88})
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert comparison.findings.iloc[0]["band"] > 0.12
    assert _status(comparison, "model-decode", "decode_tok_s_u") == "ok"


def test_missing_and_new_tests(results_dir, baseline):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.995, ("model-decode", "decode_tok_s_u"): 100.0, ("lm_head-prefill", "pcc"): 0.99})
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert _status(comparison, "moe-prefill", "pcc") == "missing"
    assert _status(comparison, "lm_head-prefill", "pcc") == "new"
    args = ["compare", "--results-dir", str(results_dir), "--baseline", str(baseline)]
    assert reports_main(args) == 1
    assert reports_main(args + ["--allow-missing"]) == 0


def test_new_failure_is_flagged_even_within_tolerance(results_dir, baseline):
    _write_run(
        results_dir, 10,
        {("mla-decode", "pcc"): 0.995, ("moe-prefill", "pcc"): 0.985, ("model-decode", "decode_tok_s_u"): 100.0},
        passed={("moe-prefill", "pcc"): False},
    )
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert _status(comparison, "moe-prefill", "pcc") == "new_failure"
    assert comparison.regressed


def test_markdown_and_html_are_written(results_dir, baseline, tmp_path, capsys):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.97, ("moe-prefill", "pcc"): 0.985, ("model-decode", "decode_tok_s_u"): 100.0})
    markdown, html = tmp_path / "r.md", tmp_path / "r.html"
    code = reports_main(["compare", "--results-dir", str(results_dir), "--baseline", str(baseline), "--markdown", str(markdown), "--html", str(html)])
    assert code == 1
    text = markdown.read_text()
    assert "REGRESSED" in text and "`mla-decode`" in text
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 2  # one plot per metric: pcc, decode_tok_s_u


def test_promote_keeps_the_previous_baseline(results_dir, baseline):
    before = baseline.read_text()
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.999})
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 0
    assert baseline.with_suffix(".jsonl.prev").read_text() == before
    assert set(load_results(baseline)["run_id"]) == {"run10"}


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert reports_main(["compare", "--results-dir", str(tmp_path / "nope")]) == 2
    assert "--results-dir" in capsys.readouterr().err
    (tmp_path / "r").mkdir()
    _write_run(tmp_path / "r", 0, {("a", "pcc"): 1.0})
    assert reports_main(["compare", "--results-dir", str(tmp_path / "r"), "--baseline", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_ingest_demo_statistics_and_benchmark_json(tmp_path):
    demo = tmp_path / "prompts_output.json"
    demo.write_text(json.dumps({"generations": [], "statistics": {"prefill_t/s": 120.0, "ttft_s": 0.5, "decode_t/s/u": 9.0, "note": "x"}}))
    rows = {row.metric: row for row in rows_from_demo_output(demo, "r1")}
    assert set(rows) == {"prefill_t/s", "ttft_s", "decode_t/s/u"}
    assert rows["ttft_s"].higher_is_better is False and rows["decode_t/s/u"].higher_is_better is True

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"benchmarks": [{"fullname": "suites/perf/x.py::test_a", "stats": {"mean": 0.25}, "extra_info": {"ratio_vs_reference": 3.5}}]}))
    rows = {row.metric: row for row in rows_from_benchmark_json(bench, "r1")}
    assert rows["mean_s"].value == 0.25 and rows["mean_s"].higher_is_better is False
    assert rows["ratio_vs_reference"].value == 3.5

    with pytest.raises(ValueError, match="statistics"):
        rows_from_demo_output(bench, "r1")


def test_lm_eval_scores_are_judged_by_the_agreement_tolerance(tmp_path):
    """lm-eval task scores are bounded scores: a drop beyond 0.05 regresses, one item (1/60) does not."""
    results_dir, baseline = tmp_path / "results", tmp_path / "baseline.jsonl"
    _write_run(results_dir, 0, {("eval", "lm_eval_pydoc_mc_acc"): 0.8333, ("eval", "lm_eval_pydoc_gen_exact_match"): 0.25})
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 0
    _write_run(results_dir, 1, {("eval", "lm_eval_pydoc_mc_acc"): 0.8167, ("eval", "lm_eval_pydoc_gen_exact_match"): 0.175})
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert _status(comparison, "eval", "lm_eval_pydoc_mc_acc") == "ok"
    assert _status(comparison, "eval", "lm_eval_pydoc_gen_exact_match") == "regression"
