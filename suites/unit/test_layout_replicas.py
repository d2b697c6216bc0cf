"""Prefill read-back checks every mesh row (deepseek_tt.modules.layout): rows 1..R-1 are never skipped.

Bug these tests exist to catch: a prefill comparison that reads mesh row 0 only, so a module that is
wrong on rows 1-3 of a 4x8 Galaxy (a row-dependent index, a collective over the wrong axis) passes.
"""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.backend import backend_name, ttnn
from deepseek_tt.modules.layout import ReplicaMismatchError, replicated_row, residual_to_device, residual_to_torch
from deepseek_tt.modules.lm_head import LMHead

pytestmark = [pytest.mark.unit, pytest.mark.quick]


def test_replicated_row_returns_row_zero_when_rows_agree() -> None:
    rows = torch.randn(1, 5, 7).expand(4, 5, 7).clone()
    assert torch.equal(replicated_row(rows), rows[0])


def test_replicated_row_names_the_row_that_differs() -> None:
    rows = torch.randn(1, 5, 7).expand(4, 5, 7).clone()
    rows[2, 3, 1] += 1e-3
    with pytest.raises(ReplicaMismatchError, match="mesh row 2 differs from row 0"):
        replicated_row(rows, "x")


@pytest.mark.skipif(backend_name() != "emulator", reason="corrupts one device's emulated storage")
def test_prefill_readers_reject_a_corrupted_row() -> None:
    """A 4x2 mesh whose row 2 holds a different residual / logits: both readers raise."""
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(4, 2))
    try:
        x = torch.randn(32, 64)
        t = residual_to_device(x, mesh, decode=False)
        torch.testing.assert_close(residual_to_torch(t, mesh, decode=False), x.bfloat16().float())
        t._data[2 * 2 + 1, ..., 0, 0] += 1.0  # device (row 2, col 1)
        with pytest.raises(ReplicaMismatchError, match="row 2"):
            residual_to_torch(t, mesh, decode=False)
        with pytest.raises(ReplicaMismatchError, match="row 2"):
            LMHead.logits_to_torch(t, mesh, decode=False)
        residual_to_torch(t, mesh, decode=True)  # decode rows hold different users: no check
    finally:
        ttnn.close_mesh_device(mesh)
