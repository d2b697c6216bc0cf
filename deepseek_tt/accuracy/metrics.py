"""Accuracy metrics: Pearson correlation (PCC), magnitude (norm ratio, relative error) and top-k agreement.

PCC is blind to scale (``2 * x`` has PCC 1.0 against ``x``); the magnitude metrics see it. All are computed
in float64 and return ``nan`` when either side holds a NaN or inf, so any threshold comparison fails.
"""

from __future__ import annotations

import torch


def pcc(expected: torch.Tensor, actual: torch.Tensor) -> float:
    """Pearson correlation of two same-shaped tensors, computed in float64.

    Two identical constant tensors give 1.0; a constant against a varying one gives 0.0; a NaN or inf
    anywhere gives ``nan`` (so a threshold comparison fails).
    """
    if tuple(expected.shape) != tuple(actual.shape):
        raise ValueError(f"pcc: shapes differ, expected {tuple(expected.shape)} vs actual {tuple(actual.shape)}")
    a = expected.detach().to(torch.float64).flatten()
    b = actual.detach().to(torch.float64).flatten()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return float("nan")
    if torch.equal(a, b):
        return 1.0
    a = a - a.mean()
    b = b - b.mean()
    denom = a.norm() * b.norm()
    if denom == 0:
        return 0.0
    return float((a @ b) / denom)


def _finite_pair(expected: torch.Tensor, actual: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    if tuple(expected.shape) != tuple(actual.shape):
        raise ValueError(f"{what}: shapes differ, expected {tuple(expected.shape)} vs actual {tuple(actual.shape)}")
    a = expected.detach().to(torch.float64).flatten()
    b = actual.detach().to(torch.float64).flatten()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return None
    return a, b


def norm_ratio(expected: torch.Tensor, actual: torch.Tensor) -> float:
    """``||actual|| / ||expected||`` (Frobenius norms, float64): 1.0 when the scale is right.

    Both zero gives 1.0; a zero ``expected`` against a non-zero ``actual`` gives ``inf``; NaN / inf anywhere
    gives ``nan``.
    """
    pair = _finite_pair(expected, actual, "norm_ratio")
    if pair is None:
        return float("nan")
    e, a = float(pair[0].norm()), float(pair[1].norm())
    if e == 0.0:
        return 1.0 if a == 0.0 else float("inf")
    return a / e


def relative_error(expected: torch.Tensor, actual: torch.Tensor) -> float:
    """``||actual - expected|| / ||expected||`` (Frobenius norms, float64): 0.0 for an exact match.

    A zero ``expected`` gives 0.0 when ``actual`` is zero too, else ``inf``; NaN / inf anywhere gives ``nan``.
    """
    pair = _finite_pair(expected, actual, "relative_error")
    if pair is None:
        return float("nan")
    e, a = pair
    denom = float(e.norm())
    diff = float((a - e).norm())
    if denom == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / denom


def top1_agreement(expected_logits: torch.Tensor, actual_logits: torch.Tensor) -> float:
    """Fraction of rows (last dim = vocab) whose argmax agrees; ``nan`` when either side is not finite."""
    if tuple(expected_logits.shape) != tuple(actual_logits.shape):
        raise ValueError(f"top1_agreement: shapes differ, expected {tuple(expected_logits.shape)} vs actual {tuple(actual_logits.shape)}")
    if not (torch.isfinite(expected_logits).all() and torch.isfinite(actual_logits).all()):
        return float("nan")
    return float((expected_logits.argmax(-1) == actual_logits.argmax(-1)).to(torch.float64).mean())


def topk_contains(reference_logits: torch.Tensor, actual_logits: torch.Tensor, k: int = 5) -> float:
    """Fraction of rows where the actual argmax is among the reference's top-k."""
    top = reference_logits.topk(k, dim=-1).indices
    pred = actual_logits.argmax(-1, keepdim=True)
    return float((top == pred).any(-1).to(torch.float64).mean())


def stable_topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k indices sorted ascending per row, for exact-match comparison of routing decisions."""
    return torch.sort(scores.topk(k, dim=-1).indices, dim=-1, stable=True).values
