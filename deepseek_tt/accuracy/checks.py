"""The one assertion of the accuracy suites: PCC + magnitude (+ top-1 for logits) against the thresholds table.

:func:`check_against_reference` compares a TT output with the reference's (``compare``), records every
value as a result row (``record_result``; its threshold and verdict included) and then asserts all of them
at once, the message naming the check, module, mode, policy, each failing metric, its value and threshold,
and (for full-model / block checks) the divergence drill-down computed only on failure.
:func:`check_metrics` does the same for values measured earlier (the matrix computes them once per run).

Metrics: ``pcc`` (higher is better), ``relative_error`` = ``||a - e|| / ||e||`` and ``norm_ratio_error`` =
``| ||a|| / ||e|| - 1 |`` (lower is better; the raw ratio goes in the row as ``norm_ratio``) and, for logits,
``top1_agreement`` (fraction of rows whose argmax agrees, higher is better).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from deepseek_tt.accuracy.metrics import norm_ratio, pcc, relative_error, top1_agreement
from deepseek_tt.accuracy.thresholds import magnitude_limits, pcc_threshold, top1_threshold


@dataclass(frozen=True)
class Measurement:
    """One checked value: ``passed`` is NaN-safe (a NaN never passes)."""

    metric: str
    value: float
    threshold: float
    higher_is_better: bool

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.threshold if self.higher_is_better else self.value <= self.threshold

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return f"{self.metric} {self.value:.6g} (needs {op} {self.threshold:g})"


def compare(expected: torch.Tensor, actual: torch.Tensor, *, logits: bool = False) -> dict[str, float]:
    """``{pcc, norm_ratio, relative_error[, top1_agreement]}`` of ``actual`` against ``expected``
    (same shape; ``logits``: last dim is the vocabulary)."""
    values = {"pcc": pcc(expected, actual), "norm_ratio": norm_ratio(expected, actual), "relative_error": relative_error(expected, actual)}
    if logits:
        values["top1_agreement"] = top1_agreement(expected, actual)
    return values


def measurements(module: str, mode: str, policy: str | None, values: dict[str, float], *, threshold_module: str | None = None,
                 weights: str = "random") -> list[Measurement]:
    """The thresholded checks of ``values`` (from :func:`compare`) for ``module`` / ``mode`` / ``policy``;
    ``threshold_module`` overrides the thresholds-table key (e.g. ``decoder_block_real``, or ``model`` for
    the ``tt_model`` facade)."""
    key = threshold_module or module
    limits = magnitude_limits(key, mode, policy)
    out = [
        Measurement("pcc", values["pcc"], pcc_threshold(key, mode, policy), True),
        Measurement("relative_error", values["relative_error"], limits.relative_error, False),
        Measurement("norm_ratio_error", abs(values["norm_ratio"] - 1.0), limits.norm_ratio_error, False),
    ]
    if "top1_agreement" in values:
        out.append(Measurement("top1_agreement", values["top1_agreement"], top1_threshold(key, mode, policy, weights), True))
    return out


def check_metrics(
    module: str,
    mode: str,
    policy: str | None,
    values: dict[str, float],
    record_result: Callable[..., Any] | None,
    *,
    what: str | None = None,
    threshold_module: str | None = None,
    drilldown: Callable[[], Any] | None = None,
    metric_prefix: str = "",
    **record_fields: Any,
) -> list[Measurement]:
    """Record each of ``values``' checks (``record_fields``: seq_len, batch, mesh, stage, weights (``random`` by
    default; ``checkpoint`` selects the trained-model top-1 floor), ...) and assert them all; on failure the drill-down (a callable returning an object with ``describe()``) is appended."""
    policy = policy or "default"
    checks = measurements(module, mode, policy, values, threshold_module=threshold_module, weights=record_fields.get("weights", "random"))
    if record_result is not None:
        for m in checks:
            extra = {"norm_ratio": values["norm_ratio"]} if m.metric == "norm_ratio_error" else {}
            record_result(module=module, mode=mode, metric=metric_prefix + m.metric, value=m.value, threshold=m.threshold,
                          passed=m.passed, higher_is_better=m.higher_is_better, dtype_policy=policy, **extra, **record_fields)
    failed = [m for m in checks if not m.passed]
    if failed:
        head = f"{what or module} ({module} {mode}, policy {policy}): " + "; ".join(m.describe() for m in failed)
        if drilldown is not None:
            try:
                head += "\n" + drilldown().describe()
            except Exception as exc:  # the drill-down must never hide the original failure
                head += f"\n(drill-down failed: {type(exc).__name__}: {exc})"
        raise AssertionError(head)
    return checks


def check_against_reference(
    module: str,
    mode: str,
    policy: str | None,
    expected: torch.Tensor,
    actual: torch.Tensor,
    record_result: Callable[..., Any] | None,
    *,
    logits: bool = False,
    **kwargs: Any,
) -> list[Measurement]:
    """:func:`compare` then :func:`check_metrics` (same keyword arguments); ``logits`` adds top-1 agreement."""
    return check_metrics(module, mode, policy, compare(expected, actual, logits=logits), record_result, **kwargs)


__all__ = ["Measurement", "check_against_reference", "check_metrics", "compare", "measurements"]
