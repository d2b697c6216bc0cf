"""Batched sampling parameters as the TT vLLM plugin passes them, turned into per-row token selection.

The plugin hands one object for the whole batch whose ``temperature``, ``top_k``, ``top_p`` (and optional
``seed``) are each a scalar (every row alike) or a sequence with one entry per batch row. vLLM's "off"
values are honoured: ``top_k`` <= 0 or None keeps every token, ``top_p`` >= 1 or None keeps the whole
nucleus, ``temperature`` 0 is greedy. Each slot keeps its own ``torch.Generator`` (seeded when its
request is prefilled), so a request's samples do not depend on the batch around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from deepseek_tt.generator.sampling import SamplingParams, select_token, user_generator


def _row_value(params: Any, name: str, row: int, rows: int, default: Any) -> Any:
    value = getattr(params, name, default)
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 1:
            return value[0]
        if len(value) != rows:
            raise ValueError(f"sampling_params.{name} has {len(value)} entries for a batch of {rows} rows")
        return value[row]
    return value


def row_sampling(params: Any, row: int, rows: int) -> SamplingParams:
    """The sampling parameters of batch row ``row`` (of ``rows``)."""
    temperature = float(_row_value(params, "temperature", row, rows, 0.0) or 0.0)
    top_k = _row_value(params, "top_k", row, rows, None)
    top_p = _row_value(params, "top_p", row, rows, None)
    seed = _row_value(params, "seed", row, rows, None)
    return SamplingParams(
        temperature=temperature,
        top_k=None if top_k is None or int(top_k) <= 0 else int(top_k),
        top_p=None if top_p is None or float(top_p) >= 1.0 or float(top_p) <= 0.0 else float(top_p),
        seed=0 if seed is None else int(seed),
    )


class SlotSamplers:
    """One random generator per decode slot, restarted when a new request takes the slot."""

    def __init__(self, num_slots: int) -> None:
        self._generators: list[torch.Generator | None] = [None] * num_slots

    def start(self, slot: int, params: SamplingParams) -> None:
        self._generators[slot] = user_generator(params, slot)

    def sample(self, slot: int, logits: torch.Tensor, params: SamplingParams) -> int:
        if self._generators[slot] is None:
            self.start(slot, params)
        return select_token(logits, params, self._generators[slot])


__all__ = ["SlotSamplers", "row_sampling"]
