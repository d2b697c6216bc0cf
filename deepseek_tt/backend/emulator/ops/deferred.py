"""Deferred per-expert values: rows computed only when (and where) they are read.

A MoE layer multiplies every dispatched token by every local expert (``[1, E, T, H]`` against expert
weights ``[1, E, H, N]``), and ``all_to_all_combine`` then reads, per token, the rows of the experts it
selected: on a device most of the product is never read. The emulator defers such batched products: a
tensor's storage may be a :class:`DeferredRows`, which the expert chain (``linear`` with per-batch weights,
element-wise binary ops of two deferred operands, ``to_layout``, ``reshape`` keeping the last dim) passes on
and ``all_to_all_combine`` evaluates for the rows it reads only. Every other access (``Tensor._data``)
evaluates it whole, by the same dense computation as without deferral, so what any op or read-back sees is
unchanged.

Rows are numbered per device in the flattened order of the stacked shape ``[n, *dims, W]``; they form
``groups`` consecutive runs of ``group_rows`` rows, one per weight batch entry (expert). A partial
evaluation takes ``sel`` ``[n, G', M]``: for each device, ``G'`` groups (``groups_idx``) and ``M`` rows within
each, and returns ``[n, G', M, W]``. Its products are the dense ones restricted to those rows: batch
entries (experts) are independent products, and ``M`` is a multiple of the row granule, so each row comes
out of the CPU's matrix kernel with the bits it has in the dense product.

The row granule is a fact about the machine, probed by ``_kernel_probe.row_granule``;
``test_emulator_deferred.py`` checks the bits against the dense evaluation end to end.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._kernel_probe import row_granule

#: Above this fraction of all rows, evaluating the whole tensor (one batched product) is cheaper than
#: group-by-group products of the rows read.
DENSE_FRACTION = 0.5

RowsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _Values:
    """The shared computation behind a deferred tensor and its reshaped views (evaluated whole once)."""

    def __init__(self, full_fn: Callable[[], torch.Tensor], rows_fn: RowsFn) -> None:
        self.full_fn, self.rows_fn = full_fn, rows_fn
        self.full: torch.Tensor | None = None


class DeferredRows:
    """Stacked values ``[n, *dims, W]`` of ``groups`` x ``group_rows`` rows per device, computed on demand."""

    def __init__(self, shape: torch.Size | tuple, dtype: torch.dtype, groups: int, group_rows: int,
                 values: _Values, device: torch.device) -> None:
        self.shape = torch.Size(shape)
        self.dtype, self.device = dtype, device
        self.groups, self.group_rows = groups, group_rows
        self._values = values

    @classmethod
    def create(cls, shape: torch.Size | tuple, dtype: torch.dtype, groups: int, group_rows: int,
               full_fn: Callable[[], torch.Tensor], rows_fn: RowsFn, device: torch.device) -> "DeferredRows":
        return cls(shape, dtype, groups, group_rows, _Values(full_fn, rows_fn), device)

    def dim(self) -> int:
        return len(self.shape)

    def full(self) -> torch.Tensor:
        """All values (the dense computation), in this view's shape."""
        if self._values.full is None:
            self._values.full = self._values.full_fn()
        return self._values.full.reshape(self.shape)

    def rows(self, groups_idx: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        """Rows ``sel`` [n, G', M] of groups ``groups_idx`` [G'] -> [n, G', M, W]."""
        if self._values.full is not None:
            return gather_rows(self.full(), self.groups, groups_idx, sel)
        return self._values.rows_fn(groups_idx, sel)

    def same_rows(self, other: "DeferredRows") -> bool:
        """Whether ``other`` numbers the same rows (same devices, groups, rows and width)."""
        return (self.shape[0], self.groups, self.group_rows, self.shape[-1]) == (
            other.shape[0], other.groups, other.group_rows, other.shape[-1])

    def reshaped(self, shape: torch.Size | tuple) -> "DeferredRows | None":
        """A view with another shape of the same rows (the last dim kept), or None."""
        shape = torch.Size(shape)
        if shape[-1] != self.shape[-1] or shape[0] != self.shape[0] or shape.numel() != self.shape.numel():
            return None
        return DeferredRows(shape, self.dtype, self.groups, self.group_rows, self._values, self.device)


def is_deferred(storage: object) -> bool:
    return isinstance(storage, DeferredRows)


def flat_rows(groups: int, rows: int, groups_idx: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """Per-device flat row numbers [n, G' * M] of rows ``sel`` [n, G', M] of groups ``groups_idx``."""
    return (groups_idx.view(1, -1, 1).to(sel.device) * rows + sel).reshape(sel.shape[0], -1)


def gather_rows(values: torch.Tensor, groups: int, groups_idx: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """Rows ``sel`` [n, G', M] of groups ``groups_idx`` of dense stacked ``values`` -> [n, G', M, W]. Reads
    those rows only (``values`` may be a broadcast view, e.g. tokens repeated per expert)."""
    n, width = values.shape[0], values.shape[-1]
    grouped = values.reshape(n, groups, -1, width)
    dev = torch.arange(n, device=values.device).view(n, 1, 1)
    return grouped[dev, groups_idx.to(values.device).view(1, -1, 1), sel.to(values.device)]


def row_selection(needed: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """``(groups_idx, sel)`` buckets covering the rows ``needed`` [n, groups, rows] (bool), or None when they
    would be more than ``DENSE_FRACTION`` of all rows (the whole tensor is then cheaper). Groups no device
    needs are left out; the others are bucketed by ``M``, the most rows any device needs of the group rounded
    up to a multiple of the row granule, and take ``M`` rows each (the needed ones, ascending, then the
    first again as padding)."""
    n, groups, rows = needed.shape
    granule = row_granule()
    counts = needed.sum(dim=2).amax(dim=0)  # [groups]
    sizes = torch.clamp((counts + granule - 1) // granule * granule, max=rows)
    sizes = torch.where(counts > 0, sizes, 0)
    if int(sizes.sum()) > DENSE_FRACTION * groups * rows:
        return None
    order = torch.sort((~needed).to(torch.int8), dim=2, stable=True).indices  # needed rows first, ascending
    buckets = []
    for m in sorted(set(sizes.tolist()) - {0}):
        groups_idx = (sizes == m).nonzero().flatten()
        kept = order[:, groups_idx, :m]  # [n, G', m]
        valid = torch.arange(m).view(1, 1, m) < needed[:, groups_idx].sum(dim=2, keepdim=True)
        buckets.append((groups_idx, torch.where(valid, kept, kept[..., :1])))
    return buckets
