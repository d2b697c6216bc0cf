"""Next-token selection: greedy, or sampling with temperature, top-k and top-p from a seeded generator.

Every user gets its own ``torch.Generator`` seeded from ``(seed, user index)``, so a user's sampled
tokens do not depend on the batch around it or on the generator's schedule (bp and pp agree).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """``temperature == 0`` is greedy (argmax); otherwise softmax(logits / temperature) after top-k/top-p."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def user_generator(params: SamplingParams, user_index: int) -> torch.Generator:
    """The generator user ``user_index`` samples from (independent of batch and schedule)."""
    return torch.Generator().manual_seed(int(params.seed) * 1_000_003 + int(user_index))


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to -inf (the best token always stays)."""
    logits = logits.clone()
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits[logits < kth] = float("-inf")
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token
        drop_sorted[0] = False
        logits[order[drop_sorted]] = float("-inf")
    return logits


def select_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """One next token from ``logits`` ([V])."""
    logits = logits.float().reshape(-1)
    if params.greedy:
        return int(torch.argmax(logits))
    filtered = filter_logits(logits / params.temperature, params.top_k, params.top_p)
    probs = torch.softmax(filtered, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


__all__ = ["SamplingParams", "filter_logits", "select_token", "user_generator"]
