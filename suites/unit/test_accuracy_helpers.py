"""PCC / top-k helpers, the threshold table and the results recorder."""

from __future__ import annotations

import json

import pytest
import torch

from deepseek_tt.accuracy.metrics import pcc, stable_topk_indices, top1_agreement, topk_contains
from deepseek_tt.accuracy.thresholds import pcc_threshold

pytestmark = pytest.mark.unit


def test_pcc_values():
    x = torch.randn(64, 32)
    assert pcc(x, x) == 1.0
    assert pcc(x, 2 * x + 1) == pytest.approx(1.0)
    assert pcc(x, -x) == pytest.approx(-1.0)
    assert pcc(x, torch.randn(64, 32)) < 0.5
    bad = x.clone()
    bad[0, 0] = float("nan")
    assert pcc(x, bad) != pcc(x, bad)  # nan
    with pytest.raises(ValueError, match="shapes differ"):
        pcc(x, x[:1])


def test_topk_helpers():
    ref = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    act = torch.tensor([[0.2, 0.1, 0.9], [0.9, 0.0, 0.0]])
    assert top1_agreement(ref, act) == 0.5
    assert topk_contains(ref, act, k=2) == 1.0
    assert stable_topk_indices(ref, 2).tolist() == [[1, 2], [0, 1]]


def test_threshold_table():
    assert pcc_threshold("mlp", "decode") == 0.975
    assert pcc_threshold("kvpe_cache", "prefill") == 0.999
    assert pcc_threshold("kvpe_cache", "prefill", "high_precision") > 0.9999  # calibrated bf16 tier
    assert pcc_threshold("experts", "decode", "high_precision") == pcc_threshold("experts", "decode")  # no bf16 row: the anchor
    with pytest.raises(KeyError, match="no PCC threshold for module 'nope'"):
        pcc_threshold("nope", "decode")


def test_record_result_writes_a_row(record_result, results_file):
    row = record_result(module="mlp", mode="decode", metric="pcc", value=0.99, threshold=0.975, mesh="1x1")
    assert row.passed is True
    last = json.loads(results_file.read_text().splitlines()[-1])
    assert last["module"] == "mlp" and last["value"] == 0.99 and last["git_revision"]


def test_magnitude_metrics_see_scale():
    from deepseek_tt.accuracy.metrics import norm_ratio, relative_error

    x = torch.randn(64, 32)
    assert norm_ratio(x, x) == 1.0 and relative_error(x, x) == 0.0
    assert pcc(x, 2 * x) == pytest.approx(1.0)  # PCC is blind to this ...
    assert norm_ratio(x, 2 * x) == pytest.approx(2.0) and relative_error(x, 2 * x) == pytest.approx(1.0)  # ... these are not
    zeros = torch.zeros(3)
    assert norm_ratio(zeros, zeros) == 1.0 and relative_error(zeros, zeros) == 0.0
    assert norm_ratio(zeros, torch.ones(3)) == float("inf") and relative_error(zeros, torch.ones(3)) == float("inf")
    bad = x.clone()
    bad[1, 1] = float("inf")
    for metric in (norm_ratio, relative_error, top1_agreement):
        value = metric(x, bad)
        assert value != value, metric.__name__  # nan
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(x, x[:1])


def test_check_against_reference_records_and_asserts_every_metric(record_result, results_file):
    from deepseek_tt.accuracy.checks import check_against_reference
    from deepseek_tt.accuracy.thresholds import magnitude_limits, top1_threshold

    logits = torch.randn(16, 50)
    checks = check_against_reference("model", "prefill", "default", logits, logits.clone(), record_result, logits=True, mesh="1x1")
    assert {m.metric for m in checks} == {"pcc", "relative_error", "norm_ratio_error", "top1_agreement"}
    rows = [json.loads(line) for line in results_file.read_text().splitlines()[-4:]]
    assert {r["metric"] for r in rows} == {m.metric for m in checks} and all(r["passed"] for r in rows)
    assert top1_threshold("model", "prefill") > 0.5 and magnitude_limits("model", "prefill").norm_ratio_error < 0.5

    # A scale error (PCC 1.0) fails on magnitude, the message naming module, metric, value and threshold.
    with pytest.raises(AssertionError, match=r"mlp \(mlp decode, policy default\): relative_error 0\.5.*norm_ratio_error 0\.5"):
        check_against_reference("mlp", "decode", "default", logits, 1.5 * logits, record_result)
    assert json.loads(results_file.read_text().splitlines()[-1])["passed"] is False
    # NaN never passes; argmax changes fail top-1.
    nan = logits.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(AssertionError, match="pcc nan"):
        check_against_reference("mlp", "decode", "default", logits, nan, None)
    with pytest.raises(AssertionError, match="top1_agreement 0 "):
        check_against_reference("model", "decode", "default", logits, logits - 10 * torch.nn.functional.one_hot(logits.argmax(-1), 50), None, logits=True)


def test_high_precision_floors_are_never_below_the_default_ones():
    from deepseek_tt.accuracy.thresholds import PCC_THRESHOLDS, magnitude_limits

    for module, mode, _ in PCC_THRESHOLDS:
        assert pcc_threshold(module, mode, "high_precision") >= pcc_threshold(module, mode, "default"), module
        hp, default = magnitude_limits(module, mode, "high_precision"), magnitude_limits(module, mode, "default")
        assert hp.relative_error <= default.relative_error and hp.norm_ratio_error <= default.norm_ratio_error, module
