"""What the CPU's matrix kernel guarantees about the bits of a product, probed on this machine.

The emulator computes a matmul's rows and weights in whatever arrangement is fastest only where that
cannot change a bit. Two such facts depend on the BLAS build, the CPU and the thread count, so they are
measured here, once per torch thread count, with the emulator's own precision model:

* **Row granule** (:func:`row_granule`). A row's result does not depend on how many rows the product has,
  as long as that count is a multiple of the granule: kernels handle a few leftover rows (and, with
  several threads, each thread's share of rows) with other code paths that may sum in another order.
  Measured: 4 with one or two threads (1-3 rows differ; with two threads so do 5-7 and 9-11).
* **Column-major weights** (:func:`column_major_weights_exact`). A weight kept transposed in memory (the
  layout ``nn.Linear`` uses, faster for the kernels measured) gives the bits of the row-major one for a
  multiple of the granule rows. Other row counts are multiplied with a row-major copy.

* **Group by group** (:func:`group_products_exact`). One group's product (an expert's rows times its
  weight) alone has the bits of its entry in a batched product of several groups, for a multiple of the
  granule rows. Measured: true with one thread; with two, false from K = 1024 (the batched product splits
  its work between the threads otherwise).
  Where it holds, a row-size bucket of few experts is multiplied on their cached weights in place.

Where a probe fails, the emulator falls back to the tile height (granule), row-major weights and batched
products of gathered weights.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from .. import types as T

TILE = T.TILE_SIZE
#: Row granules tried, smallest first (the tile height is the fallback).
GRANULE_CANDIDATES = (4, 8, 16)
#: (K, N) of the probe products: a small weight and expert-sized ones (the kernel paths depend on the row
#: count, not on these sizes, in every build measured; the end-to-end tests cover the model's own shapes).
_PROBE_SHAPES = ((64, 96), (256, 512), (512, 256))
#: Rows of the probe's reference product (a multiple of the tile height, as every dense product here).
_PROBE_ROWS = 96
#: Row counts probed: the multiples of the granule up to this.
_PROBE_MAX_ROWS = 48


def _precisions() -> tuple:
    from ._precision import MatmulPrecision

    return (MatmulPrecision(T.MathFidelity.HiFi2, True), MatmulPrecision(T.MathFidelity.LoFi, False))


def _probe_operands(k: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, _PROBE_ROWS, k, generator=generator), torch.randn(2, k, n, generator=generator) / k**0.5


def granule_holds(granule: int) -> bool:
    """Whether products of every multiple of ``granule`` rows (up to ``_PROBE_MAX_ROWS``, at a few offsets) have the bits of
    the same rows of a ``_PROBE_ROWS``-row product, under both accumulation modes of the precision model."""
    from ._precision import device_matmul, split_in1

    for k, n in _PROBE_SHAPES:
        a, w = _probe_operands(k, n, granule)
        b = split_in1(w)
        for precision in _precisions():
            dense = device_matmul(a, b, precision)
            for m in range(granule, _PROBE_MAX_ROWS + 1, granule):
                for start in (0, 3, _PROBE_ROWS - m):
                    if not torch.equal(device_matmul(a[:, start : start + m], b, precision), dense[:, start : start + m]):
                        return False
    return True


@functools.lru_cache(maxsize=None)
def _row_granule(threads: int) -> int:
    return next((g for g in GRANULE_CANDIDATES if granule_holds(g)), TILE)


def row_granule() -> int:
    """The row granule for the current torch thread count (see the module docstring)."""
    return _row_granule(torch.get_num_threads())


def column_major_holds(granule: int) -> bool:
    """Whether a column-major copy of the weight gives the row-major product's bits for every multiple of
    ``granule`` rows up to ``_PROBE_MAX_ROWS`` and for the whole probe, under both accumulation modes."""
    from ._precision import device_matmul, split_in1, split_in1_column_major

    for k, n in _PROBE_SHAPES:
        a, w = _probe_operands(k, n, granule + 1)
        rows_major, cols_major = split_in1(w), split_in1_column_major(w.transpose(-1, -2))
        for precision in _precisions():
            for m in [*range(granule, _PROBE_MAX_ROWS + 1, granule), _PROBE_ROWS]:
                if not torch.equal(device_matmul(a[:, :m], rows_major, precision), device_matmul(a[:, :m], cols_major, precision)):
                    return False
    return True


def _probed_per_thread_count(holds: Callable[[int], bool]) -> Callable[[], bool]:
    """``holds`` at the row granule, probed once per torch thread count (the answer may differ between counts)."""
    probed = functools.lru_cache(maxsize=None)(lambda threads: holds(_row_granule(threads)))
    return lambda: probed(torch.get_num_threads())


_column_major_weights_exact = _probed_per_thread_count(column_major_holds)


def column_major_weights_exact() -> bool:
    """Whether the emulator may keep dense weights column-major (see the module docstring)."""
    return _column_major_weights_exact()


#: Groups of the group-by-group probe's batched product, and its (K, N): here the kernel path does depend on
#: the size (with two threads a long K is split between them in a batched product only).
_PROBE_GROUPS = 6
_GROUP_PROBE_SHAPES = ((256, 512), (1024, 256), (2048, 256))


def group_products_hold(granule: int) -> bool:
    """Whether each group's product alone equals its entry of a ``_PROBE_GROUPS``-group batched product, for
    every multiple of ``granule`` rows up to ``_PROBE_MAX_ROWS``, under both accumulation modes."""
    from ._precision import device_matmul, split_in1

    for k, n in _GROUP_PROBE_SHAPES:
        generator = torch.Generator().manual_seed(granule + k)
        a = torch.randn(1, _PROBE_GROUPS, _PROBE_MAX_ROWS, k, generator=generator)
        b = split_in1(torch.randn(1, _PROBE_GROUPS, k, n, generator=generator) / k**0.5)
        for precision in _precisions():
            for m in range(granule, _PROBE_MAX_ROWS + 1, granule):
                batched = device_matmul(a[:, :, :m], b, precision)
                for g in range(_PROBE_GROUPS):
                    one = type(b)(b.full[:, g : g + 1], b.hi[:, g : g + 1])
                    if not torch.equal(device_matmul(a[:, g : g + 1, :m], one, precision), batched[:, g : g + 1]):
                        return False
    return True


_group_products_exact = _probed_per_thread_count(group_products_hold)


def group_products_exact() -> bool:
    """Whether the emulator may multiply a few groups one by one (see the module docstring)."""
    return _group_products_exact()


def probe_kernel() -> None:
    """Run every probe for the current torch thread count now (each runs once per count; a few hundred ms),
    so that the first product of a run does not pay for them: ``open_mesh_device`` calls this, as a device's
    initialization precedes its first op."""
    row_granule()
    column_major_weights_exact()
    group_products_exact()
