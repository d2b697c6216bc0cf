"""Accuracy metrics: Pearson correlation (PCC) and top-k agreement."""

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


def top1_agreement(expected_logits: torch.Tensor, actual_logits: torch.Tensor) -> float:
    """Fraction of rows (last dim = vocab) whose argmax agrees."""
    return float((expected_logits.argmax(-1) == actual_logits.argmax(-1)).to(torch.float64).mean())


def topk_contains(reference_logits: torch.Tensor, actual_logits: torch.Tensor, k: int = 5) -> float:
    """Fraction of rows where the actual argmax is among the reference's top-k."""
    top = reference_logits.topk(k, dim=-1).indices
    pred = actual_logits.argmax(-1, keepdim=True)
    return float((top == pred).any(-1).to(torch.float64).mean())


def stable_topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k indices sorted ascending per row, for exact-match comparison of routing decisions."""
    return torch.sort(scores.topk(k, dim=-1).indices, dim=-1, stable=True).values
