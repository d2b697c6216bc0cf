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
    assert pcc_threshold("kvpe_cache", "prefill", "high_precision") == 0.999
    with pytest.raises(KeyError, match="no PCC threshold for module 'nope'"):
        pcc_threshold("nope", "decode")


def test_record_result_writes_a_row(record_result, results_file):
    row = record_result(module="mlp", mode="decode", metric="pcc", value=0.99, threshold=0.975, mesh="1x1")
    assert row.passed is True
    last = json.loads(results_file.read_text().splitlines()[-1])
    assert last["module"] == "mlp" and last["value"] == 0.99 and last["git_revision"]
