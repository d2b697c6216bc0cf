"""Emulator-only: which decode slots hold a user, so that the rows of empty slots are not computed.

A decode step runs a fixed batch of slots (32 per mesh row), the empty ones at position -1. A device
computes every slot; on the emulator the empty slots would be most of a one-user step. The slots of a
decode step never mix (every op works per token; attention skips position -1), so an empty slot cannot
change an active one. While the positions are declared:

- ``all_to_all_combine`` computes the expert rows of active slots only;
- a matmul whose rows are the step's slots multiplies the active rows only (padded to the CPU kernel's
  row granule, so each row keeps the bits the full product gives it: ``_kernel_probe.py``).

Both write NaN into the empty slots' rows, not zero: a bug that let an empty slot's row reach an active
user would make that user's output NaN, loudly.

Declaring and clearing are device ops, so a captured trace re-reads the positions on every replay;
declarations nest. Not a ttnn name: the model reaches it through
``deepseek_tt.backend.skip_empty_decode_slots``, a no-op on a device.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from ._common import data, device_of
from ._kernel_probe import row_granule
from .trace import device_op

_ATTRIBUTE = "_emulator_live_decode_slots"


@device_op
def _declare(positions_tensor: Any) -> None:
    device = device_of(positions_tensor)
    rows, cols = (int(d) for d in tuple(device.shape))
    # device r*C + c holds users r*U + c*u ... (kv_cache.decode_positions_tensor): row r's users in order
    live = data(positions_tensor).reshape(rows, -1).cpu() >= 0  # [R, U]
    _stack(device).append(_Declared(live.repeat_interleave(cols, dim=0)))


@device_op
def _clear(positions_tensor: Any) -> None:
    _stack(device_of(positions_tensor)).pop()


class _Declared:
    """One declaration: the active slots ``[devices, U]`` and, worked out once, the rows products compute."""

    def __init__(self, live: torch.Tensor) -> None:
        self.live = live
        self.rows_to_compute: LiveRows | None = LiveRows.build(live)


def _stack(device: Any) -> list[_Declared]:
    if not hasattr(device, _ATTRIBUTE):
        setattr(device, _ATTRIBUTE, [])
    return getattr(device, _ATTRIBUTE)


def _declared(device: Any, tokens: int) -> _Declared | None:
    stack = getattr(device, _ATTRIBUTE, None)
    top = stack[-1] if stack else None
    return top if top is not None and top.live.shape[1] == tokens else None


@contextmanager
def skip_empty_decode_slots(positions_tensor: Any) -> Iterator[None]:
    """Within the block, ops on this mesh compute a decode step's active slots only (``positions_tensor``:
    the step's int32 per-device positions, -1 for an empty slot)."""
    _declare(positions_tensor)
    try:
        yield
    finally:
        _clear(positions_tensor)


def live_decode_slots(device: Any, tokens: int) -> torch.Tensor | None:
    """``[devices, tokens]`` bool: the declared active slots of ``device``'s decode step, or None (compute
    every token) when none are declared or the op's tokens are not the step's slots."""
    declared = _declared(device, tokens)
    return None if declared is None else declared.live


class LiveRows:
    """The rows of a ``[n, ..., M, K]`` operand worth computing when its ``M`` rows are decode slots: those
    active on any device, padded (with the first) to a multiple of the row granule."""

    def __init__(self, live: torch.Tensor, index: torch.Tensor) -> None:
        self.live, self.index = live, index
        # rows computed that are empty on some device (another's active row, or the padding of no row at all)
        self.per_device = not bool(live.any()) or bool((live != live.any(dim=0, keepdim=True)).any())

    @classmethod
    def of(cls, device: Any, rows: int) -> "LiveRows | None":
        """None when nothing is declared for ``rows`` slots, or when the active rows are not fewer."""
        declared = _declared(device, rows)
        return None if declared is None else declared.rows_to_compute

    @classmethod
    def build(cls, live: torch.Tensor) -> "LiveRows | None":
        """The rows to compute of a declaration's ``live`` slots (None: all of them)."""
        rows = live.shape[1]
        active = live.any(dim=0).nonzero().flatten()
        if not active.numel():
            active = torch.zeros(1, dtype=torch.long)  # no user at all: one granule computed, every row NaN
        granule = row_granule()
        padded = -(-active.numel() // granule) * granule
        if padded >= rows:
            return None
        return cls(live, torch.cat([active, active[:1].expand(padded - active.numel())]))

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """The rows to compute of ``x`` [n, ..., M, K]."""
        return x.index_select(-2, self.index.to(x.device))

    def restore(self, out: torch.Tensor, rows: int) -> torch.Tensor:
        """``out`` [n, ..., m, N] of the selected rows -> [n, ..., M, N], NaN in every device's empty slots."""
        full = out.new_full((*out.shape[:-2], rows, out.shape[-1]), float("nan"))
        full.index_copy_(-2, self.index.to(out.device), out)
        if not self.per_device:
            return full
        dead = ~self.live.to(out.device)
        if full.shape[0] != dead.shape[0]:  # an operand stored once for every device
            full = full.expand(dead.shape[0], *full.shape[1:])
        return full.masked_fill(dead.view(dead.shape[0], *([1] * (out.dim() - 3)), rows, 1), float("nan"))
