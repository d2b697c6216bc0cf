"""The regression report on synthetic histories: what is flagged, and the exit code."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports.__main__ import main as reports_main
from reports.compare import CompareError, CompareSettings, compare
from reports.metrics import accuracy_metrics, is_context_metric, is_ratio_to_one, perf_family
from reports.ingest import rows_from_benchmark_json, rows_from_demo_output
from reports.store import ResultFileError, ResultRow, append_rows, load_results, rows_to_jsonl, run_file

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
    _history(results_dir)
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
    # the Markdown mirrors the report's order: verdict, regressions, accuracy matrix
    assert text.index("REGRESSED") < text.index("## Regressed") < text.index("| regression | mla · decode | pcc |") < text.index("## Accuracy matrix")
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 1  # one chart per benchmark metric: decode_tok_s_u (PCC is in the matrix)


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


def _bench_json(path: Path, test_id: str, extra: dict) -> Path:
    path.write_text(json.dumps({"benchmarks": [{"fullname": test_id, "stats": {"mean": 0.2}, "extra_info": extra}]}))
    return path


def test_ingest_takes_declared_directions(tmp_path):
    """A slowdown named ``ratio`` is lower-is-better when the benchmark says so; the name alone would read it
    as a speedup, and an emulator getting slower would then be reported as an improvement."""
    bench = _bench_json(tmp_path / "b.json", "suites/perf/x.py::test_a",
                        {"ratio": 3.0, "speedup": 2.0, "lower_is_better": ["ratio"]})
    rows = {row.metric: row for row in rows_from_benchmark_json(bench, "r1")}
    assert rows["ratio"].higher_is_better is False and rows["speedup"].higher_is_better is True
    assert "lower_is_better" not in rows


def test_ingest_into_a_run_keeps_its_provenance_and_its_tests_rows(tmp_path, capsys):
    """Rows added to an existing run carry that run's git revision and machine (not the ingesting checkout's),
    and a test's own row is not duplicated by the benchmark's extra_info copy (whose direction is guessed)."""
    results = tmp_path / "results"
    test_id = "suites/perf/x.py::test_a"
    own = ResultRow(test_id=test_id, module="m", mode="decode", metric="slowdown_over_torch", value=3.0,
                    higher_is_better=False, run_id="r1", git_revision="abc1234", machine="bench-host")
    append_rows(run_file(results, "r1"), [own])
    bench = _bench_json(tmp_path / "b.json", test_id, {"slowdown_over_torch": 3.0, "emulated_s": 0.1})
    assert reports_main(["ingest", "--results-dir", str(results), "--run", "r1", "--benchmark-json", str(bench)]) == 0
    assert "1 already recorded" in capsys.readouterr().out
    frame = load_results(results)
    assert sorted(frame["metric"]) == ["emulated_s", "mean_s", "slowdown_over_torch"]
    assert set(frame["git_revision"]) == {"abc1234"} and set(frame["machine"]) == {"bench-host"}
    assert not frame.loc[frame.metric == "slowdown_over_torch", "higher_is_better"].any()


def test_a_growing_declared_slowdown_is_a_regression(results_dir, tmp_path):
    """End to end through ingest and compare: the emulator twice as slow against plain torch regresses."""
    for index, slowdown in enumerate((3.0, 3.0, 3.0, 6.0)):
        run_id = f"run{index:02d}"
        bench = _bench_json(tmp_path / f"b{index}.json", "suites/perf/x.py::test_a",
                            {"ratio": slowdown, "lower_is_better": ["ratio"]})
        assert reports_main(["ingest", "--results-dir", str(results_dir), "--run", run_id, "--benchmark-json", str(bench)]) == 0
    baseline = tmp_path / "baseline.jsonl"
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline), "--run", "run02"]) == 0
    comparison = compare(load_results(results_dir), load_results(baseline), "run03")
    assert _status(comparison, "suites/perf/x.py::test_a", "ratio") == "regression"


# --- verdicts that cannot say OK on nothing (issue: empty baseline, NaN, rows without run id, bands) ---


def _compare_args(results_dir: Path, baseline: Path, *extra: str) -> list[str]:
    return ["compare", "--results-dir", str(results_dir), "--baseline", str(baseline), "--html", str(results_dir.parent / "r.html"), *extra]


def test_empty_baseline_is_an_error(results_dir, baseline, capsys):
    baseline.write_text("\n")
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.995})
    assert reports_main(_compare_args(results_dir, baseline)) == 2
    err = capsys.readouterr().err
    assert "--baseline" in err and "no result rows" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(CompareError, match="baseline holds no result rows"):
        compare(load_results(results_dir), load_results(baseline))


def test_nan_and_infinite_values_are_regressions(results_dir, baseline):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): float("nan"), ("moe-prefill", "pcc"): 0.985,
                                 ("model-decode", "decode_tok_s_u"): float("inf"), ("new-test", "pcc"): float("nan")})
    comparison = compare(load_results(results_dir), load_results(baseline))
    for test_id, metric in (("mla-decode", "pcc"), ("model-decode", "decode_tok_s_u"), ("new-test", "pcc")):
        assert _status(comparison, test_id, metric) == "regression"
        detail = comparison.findings.set_index(["test_id", "metric"]).loc[(test_id, metric), "detail"]
        assert "not a finite number" in detail
    assert comparison.verdict == "REGRESSED"
    assert reports_main(_compare_args(results_dir, baseline)) == 1


def test_a_baseline_with_nan_is_refused(results_dir, baseline, tmp_path, capsys):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): float("nan"), ("moe-prefill", "pcc"): 0.985})
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 2
    assert "non-finite" in capsys.readouterr().err
    bad = tmp_path / "bad-baseline.jsonl"
    bad.write_text(baseline.read_text().replace('"value": 0.995', '"value": NaN'))
    assert reports_main(_compare_args(results_dir, bad)) == 2
    err = capsys.readouterr().err
    assert "bad-baseline.jsonl:" in err and "finite" in err


def test_rows_without_a_run_id_are_an_error(results_dir, baseline, capsys):
    path = run_file(results_dir, "anonymous")
    append_rows(path, [ResultRow(test_id="mla-decode", module="mla", mode="decode", metric="pcc", value=0.5, timestamp=BASE_TIME + 99 * 86400)])
    assert reports_main(_compare_args(results_dir, baseline)) == 2
    err = capsys.readouterr().err
    assert "run-anonymous.jsonl:1" in err and "no run_id" in err
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 2


def test_the_baseline_run_is_not_compared_with_itself(results_dir, baseline, capsys):
    assert reports_main(_compare_args(results_dir, baseline)) == 2  # newest run = the promoted one
    assert "baseline's own run" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--min-band", "-0.05"), ("--sigmas", "-3"), ("--min-band", "nan"), ("--sigmas", "x")])
def test_negative_or_invalid_bands_are_rejected(results_dir, baseline, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        reports_main(_compare_args(results_dir, baseline, flag, value))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1
    with pytest.raises(CompareError, match="min_band"):
        CompareSettings(min_band=-0.01)


def test_a_test_failing_in_both_runs_is_not_green(results_dir, tmp_path):
    failing = {("moe-prefill", "pcc"): False}
    for index in range(3):
        _write_run(results_dir, index, {("mla-decode", "pcc"): 0.995, ("moe-prefill", "pcc"): 0.9}, passed=failing)
    baseline = tmp_path / "b.jsonl"
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 0
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.995, ("moe-prefill", "pcc"): 0.9}, passed=failing)
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert _status(comparison, "moe-prefill", "pcc") == "still_failing"
    assert comparison.verdict == "FAILING" and comparison.regressed
    assert reports_main(_compare_args(results_dir, baseline)) == 1


def test_stages_of_one_test_are_compared_separately(results_dir, tmp_path):
    def write(index: int, second_stage: float) -> None:
        rows = [ResultRow(test_id="block", module="decoder_block", mode="prefill", metric="pcc", value=value, run_id=f"r{index}",
                          timestamp=BASE_TIME + index * 100 + offset, extra={"stage": stage})
                for offset, (stage, value) in enumerate((("layers.0", 0.999), ("layers.1", second_stage)))]
        append_rows(run_file(results_dir, f"r{index}"), rows)

    write(0, 0.999)
    baseline = tmp_path / "b.jsonl"
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 0
    write(1, 0.95)  # only the second stage drops
    comparison = compare(load_results(results_dir), load_results(baseline))
    by_stage = comparison.findings.set_index("stage")["status"]
    assert by_stage["layers.0"] == "ok" and by_stage["layers.1"] == "regression"


def test_metric_kinds_are_generic_over_names():
    frame = pd.DataFrame({"metric": ["pcc", "lm_eval_hellaswag_acc", "norm_ratio", "tokens_with_other_experts", "decode_tokens_per_s",
                                     "throughput_ratio_tt_over_reference", "ttft_s", "top1_agreement"],
                          "threshold": [None, None, None, 0.0, None, None, None, None]})
    assert accuracy_metrics(frame) == {"pcc", "lm_eval_hellaswag_acc", "norm_ratio", "tokens_with_other_experts", "top1_agreement"}
    assert perf_family("reference_decode_tokens_per_s") == "throughput"
    assert not is_ratio_to_one("pcc") and is_ratio_to_one("norm_ratio")
    assert perf_family("throughput_ratio_tt_over_reference") == "ratio" and perf_family("ttft_s") == "latency"


# --- bad input: one clear line, exit 2, nothing the user owns replaced ---


def test_a_result_row_that_is_a_list_is_a_clear_error(results_dir, baseline, capsys):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.995})
    (results_dir / "run-garbage.jsonl").write_text('[1, 2, 3]\n')
    for command in (_compare_args(results_dir, baseline), ["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]):
        assert reports_main(command) == 2
        err = capsys.readouterr().err
        assert "run-garbage.jsonl:1" in err and "JSON object" in err and len(err.strip().splitlines()) == 1


def test_html_pointing_at_a_directory_is_refused_and_leaves_nothing(results_dir, baseline, tmp_path, capsys, monkeypatch):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.995})
    target = tmp_path / "out"
    target.mkdir()
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["compare", "--results-dir", str(results_dir), "--baseline", str(baseline), "--html", "out"]
    assert reports_main(args) == 2
    assert "--html out: is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not any(target.iterdir())


def test_a_failed_write_leaves_no_temp_file(tmp_path):
    from reports.__main__ import ReportError, _write_atomic

    (tmp_path / "dir").mkdir()
    with pytest.raises(ReportError, match="cannot write"):
        _write_atomic(tmp_path / "dir", "text", "--html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


def test_outputs_never_replace_inputs(results_dir, baseline, capsys):
    _write_run(results_dir, 10, {("mla-decode", "pcc"): 0.995})
    run10 = run_file(results_dir, "run10")
    saved = {path: path.read_text() for path in (baseline, run10)}
    cases = [
        _compare_args(results_dir, baseline, "--markdown", str(baseline)),
        ["compare", "--results-dir", str(results_dir), "--baseline", str(baseline), "--html", str(run10)],
        ["promote", "--results-dir", str(results_dir), "--baseline", str(run10)],
    ]
    for args in cases:
        assert reports_main(args) == 2
        assert "input" in capsys.readouterr().err
    assert {path: path.read_text() for path in saved} == saved


@pytest.mark.parametrize("content, message", [
    ('{"benchmarks": [1]}', "benchmarks[0]: not an object"),
    ('{"benchmarks": [{"stats": {"mean": 1}}]}', "no 'fullname'"),
    ('{"benchmarks": [{"name": "t", "stats": {"mean": "fast"}}]}', "stats.mean"),
    ('{"benchmarks": [{"name": "t", "stats": {}, "extra_info": {"lower_is_better": "ratio"}}]}', "lower_is_better"),
    ("\udcff", "not"),
])
def test_ingest_rejects_malformed_benchmark_json(tmp_path, capsys, content, message):
    bench = tmp_path / "bench.json"
    bench.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert reports_main(["ingest", "--results-dir", str(tmp_path / "r"), "--benchmark-json", str(bench)]) == 2
    err = capsys.readouterr().err
    assert "bench.json" in err and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


# --- property-based fuzzing of the result-row reader (bounded, CI-sized) ---

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ROW_KEYS = st.sampled_from(["test_id", "module", "mode", "metric", "value", "threshold", "passed", "seq_len", "batch", "mesh",
                            "dtype_policy", "higher_is_better", "run_id", "timestamp", "extra", "unknown"])


def _load_or_clear_error(path: Path) -> pd.DataFrame | None:
    """The reader's contract: a frame, or ResultFileError naming the file and line; nothing else."""
    try:
        return load_results(path)
    except ResultFileError as exc:
        assert str(exc).startswith(str(path)), exc
        assert "\n" not in str(exc)
        return None


@FUZZ
@given(lines=st.lists(st.text(max_size=60) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")), max_size=6))
def test_fuzz_arbitrary_lines_never_raise_a_traceback(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "run-x.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    _load_or_clear_error(path)


@FUZZ
@given(rows=st.lists(JSON_VALUES | st.dictionaries(ROW_KEYS, JSON_VALUES, max_size=8), min_size=1, max_size=4))
def test_fuzz_arbitrary_json_rows_parse_or_fail_clearly(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("fuzz") / "run-x.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    frame = _load_or_clear_error(path)
    if frame is not None:  # accepted rows are exactly the objects with the required fields, in order
        assert list(frame["test_id"]) == [row["test_id"] for row in rows]
        assert all(isinstance(v, float) for v in frame["value"])


VALID_ROWS = st.builds(
    ResultRow,
    test_id=st.text(min_size=1, max_size=30).filter(str.strip),
    module=st.text(max_size=10), mode=st.sampled_from(["prefill", "decode", "teacher_forcing"]),
    metric=st.text(min_size=1, max_size=20).filter(str.strip),
    value=st.floats(allow_nan=True, allow_infinity=True),
    threshold=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    passed=st.none() | st.booleans(), seq_len=st.none() | st.integers(0, 1 << 20), batch=st.none() | st.integers(0, 4096),
    mesh=st.none() | st.sampled_from(["1x1", "4x8"]), run_id=st.text(min_size=1, max_size=10),
    timestamp=st.floats(0, 4e9), extra=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)


@settings(FUZZ, max_examples=50)
@given(rows=st.lists(VALID_ROWS, min_size=1, max_size=5))
def test_fuzz_valid_rows_round_trip_through_the_store(tmp_path_factory, rows):
    directory = tmp_path_factory.mktemp("fuzz")
    append_rows(directory / "run-a.jsonl", rows)
    frame = load_results(directory / "run-a.jsonl")
    assert list(frame["test_id"]) == [r.test_id for r in rows] and list(frame["metric"]) == [r.metric for r in rows]
    np.testing.assert_array_equal(frame["value"].to_numpy(), np.array([r.value for r in rows]))  # NaN == NaN here
    (directory / "copy.jsonl").write_text(rows_to_jsonl(frame))
    again = load_results(directory / "copy.jsonl")
    pd.testing.assert_frame_equal(again.drop(columns="source"), frame.drop(columns="source"), check_dtype=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(bad=JSON_VALUES | st.dictionaries(ROW_KEYS, JSON_VALUES, max_size=8), command=st.sampled_from(["compare", "promote"]))
def test_fuzz_reports_cli_answers_bad_rows_with_one_line(tmp_path_factory, bad, command):
    root = tmp_path_factory.mktemp("cli")
    _write_run(root / "results", 0, {("a", "pcc"): 0.99})
    baseline = root / "baseline.jsonl"
    baseline.write_text(run_file(root / "results", "run00").read_text())
    (root / "results" / "run-z.jsonl").write_text(json.dumps(bad) + "\n")
    saved = baseline.read_text()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = reports_main([command, "--results-dir", str(root / "results"), "--baseline", str(baseline)]
                            + (["--html", str(root / "r.html")] if command == "compare" else []))
    assert code in (0, 1, 2)
    if code == 2:
        assert len(stderr.getvalue().strip().splitlines()) == 1 and stderr.getvalue().startswith("error: ")
    if command == "compare":
        assert baseline.read_text() == saved


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(latest=st.lists(VALID_ROWS, min_size=1, max_size=3), base=st.lists(VALID_ROWS, min_size=1, max_size=3))
def test_fuzz_any_valid_rows_render_or_fail_clearly(tmp_path_factory, latest, base):
    from reports.render import render_html, render_markdown

    directory = tmp_path_factory.mktemp("render")
    append_rows(directory / "results" / "run-new.jsonl", [dataclasses.replace(r, run_id="new", timestamp=2e9) for r in latest])
    append_rows(directory / "base.jsonl", [dataclasses.replace(r, run_id="base", timestamp=1e9) for r in base])
    results, baseline = load_results(directory / "results"), load_results(directory / "base.jsonl")
    try:
        comparison = compare(results, baseline)
    except CompareError as exc:
        assert "finite" in str(exc)  # the only refusal possible here: a baseline holding NaN / inf
        return
    assert comparison.verdict in ("OK", "FAILING", "REGRESSED")
    assert render_markdown(comparison, results).startswith("# deepseek-tt nightly report")
    assert render_html(comparison, results).rstrip().endswith("</html>")


def test_a_norm_ratio_moving_away_from_one_is_a_regression_either_way(results_dir, tmp_path):
    _write_run(results_dir, 0, {("norm-a", "norm_ratio"): 1.0, ("norm-b", "norm_ratio"): 1.0, ("norm-c", "norm_ratio"): 0.9})
    baseline = tmp_path / "b.jsonl"
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 0
    _write_run(results_dir, 1, {("norm-a", "norm_ratio"): 1.05, ("norm-b", "norm_ratio"): 0.95, ("norm-c", "norm_ratio"): 1.0})
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert _status(comparison, "norm-a", "norm_ratio") == "regression"
    assert _status(comparison, "norm-b", "norm_ratio") == "regression"
    assert _status(comparison, "norm-c", "norm_ratio") == "improvement"


def test_lm_eval_scores_are_judged_by_the_agreement_tolerance(tmp_path):
    """lm-eval task scores are bounded scores: a drop beyond 0.05 regresses, one item (1/60) does not."""
    results_dir, baseline = tmp_path / "results", tmp_path / "baseline.jsonl"
    _write_run(results_dir, 0, {("eval", "lm_eval_pydoc_mc_acc"): 0.8333, ("eval", "lm_eval_pydoc_gen_exact_match"): 0.25})
    assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 0
    _write_run(results_dir, 1, {("eval", "lm_eval_pydoc_mc_acc"): 0.8167, ("eval", "lm_eval_pydoc_gen_exact_match"): 0.175})
    comparison = compare(load_results(results_dir), load_results(baseline))
    assert _status(comparison, "eval", "lm_eval_pydoc_mc_acc") == "ok"
    assert _status(comparison, "eval", "lm_eval_pydoc_gen_exact_match") == "regression"


def _bench_values(tt: float, reference: float, bound: float = 500.0) -> dict[tuple[str, str], float]:
    """One benchmark's rows: the model's throughput, the reference's, their ratio and a roofline bound."""
    return {("model-decode", "decode_tokens_per_s"): tt, ("model-decode", "reference_decode_tokens_per_s"): reference,
            ("model-decode", "throughput_ratio_tt_over_reference"): tt / reference,
            ("model-decode", "roofline_decode_tokens_per_s_per_user_bound"): bound}


def _bench_run(results_dir: Path, run_index: int, tt: float, reference: float) -> None:
    _write_run(results_dir, run_index, _bench_values(tt, reference))


def test_context_metrics_are_the_yardstick_only():
    for metric in ("reference_decode_tokens_per_s", "reference_ttft_s", "roofline_prefill_time_bound_s",
                   "roofline_decode_tokens_per_s_per_user_bound", "plain_torch_s", "throughput_ratio"):
        assert is_context_metric(metric), metric
    for metric in ("decode_tokens_per_s", "throughput_ratio_tt_over_reference", "roofline_fraction", "ttft_s",
                   "emulated_s", "emulated_over_plain_torch", "concurrent_tok_s", "single_tok_s"):
        assert not is_context_metric(metric), metric


def test_the_reference_and_the_roofline_are_context_never_the_verdict(tmp_path):
    def judge(name: str, latest: dict[tuple[str, str], float]):
        """A steady four-night history, its last night promoted, then ``latest``: (comparison, exit status)."""
        results_dir, baseline = tmp_path / name, tmp_path / f"{name}.jsonl"
        for index in range(4):
            _bench_run(results_dir, index, tt=50.0, reference=100.0)
        assert reports_main(["promote", "--results-dir", str(results_dir), "--baseline", str(baseline)]) == 0
        _write_run(results_dir, 10, latest)
        comparison = compare(load_results(results_dir), load_results(baseline))
        return comparison, reports_main(["compare", "--results-dir", str(results_dir), "--baseline", str(baseline)])

    # The reference got slower (another machine, another transformers) and the bound moved: the model did not.
    comparison, status = judge("slower_reference", _bench_values(tt=50.0, reference=40.0, bound=250.0))
    for metric in ("reference_decode_tokens_per_s", "roofline_decode_tokens_per_s_per_user_bound"):
        assert _status(comparison, "model-decode", metric) == "context"
    assert _status(comparison, "model-decode", "decode_tokens_per_s") == "ok"
    assert _status(comparison, "model-decode", "throughput_ratio_tt_over_reference") == "improvement"
    assert not comparison.regressed and status == 0
    row = comparison.findings[comparison.findings.metric == "reference_decode_tokens_per_s"].iloc[0]
    assert row["kind"] == "context" and "-60.0%" in row["detail"]

    # The model got slower while the reference got faster: the model's figures regress, whatever the context.
    comparison, status = judge("slower_model", _bench_values(tt=25.0, reference=200.0))
    assert _status(comparison, "model-decode", "decode_tokens_per_s") == "regression"
    assert _status(comparison, "model-decode", "throughput_ratio_tt_over_reference") == "regression"
    assert _status(comparison, "model-decode", "reference_decode_tokens_per_s") == "context"
    assert status == 1

    # Context figures that went missing are shown, not failures; the model's own figure missing still is one.
    model_only = {key: value for key, value in _bench_values(tt=50.0, reference=100.0).items() if key[1][:4] not in ("refe", "roof")}
    comparison, status = judge("no_context", model_only)
    assert _status(comparison, "model-decode", "reference_decode_tokens_per_s") == "context"
    assert not comparison.regressed and status == 0
    comparison, status = judge("no_model", {("model-decode", "reference_decode_tokens_per_s"): 100.0})
    assert _status(comparison, "model-decode", "decode_tokens_per_s") == "missing"
    assert comparison.regressed and status == 1
