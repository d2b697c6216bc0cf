"""The matmul precision model: math fidelity phases and destination-register accumulation.

See NUMERICS.md ("Matmul precision model"). Summary:

* Operands enter the matrix engine through 19-bit source registers (sign, 8-bit exponent, 10 mantissa
  bits): fp32 operands are truncated to that (TF32-like) precision; bf16 / bfp8 / bfp4 values fit.
* ``in0`` (activations) is loaded into srcB, ``in1`` (weights) into srcA. One multiplier pass uses the
  top 5 significant bits of srcA (hidden one + 4) and the top 7 of srcB (hidden one + 6). The fidelity
  phases add the remaining bits: LoFi = A_hi*B_hi; HiFi2 adds A_lo*B_hi; HiFi3 adds A_hi*B_lo;
  HiFi4 adds A_lo*B_lo (the exact product of the TF32 operands). Bits are truncated, not rounded.
* ``fp32_dest_acc_en=False``: the destination register holds bf16, so the running sum over K is
  rounded (RNE) to bf16 after every 32-wide K tile. ``True``: the sum stays in fp32.
* ``packer_l1_acc`` has no further numerical effect in this model.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import torch

from .. import types as T
from ._common import broadcast_shapes
from ._kernel_probe import row_granule

TILE = T.TILE_SIZE
_SRC_MANTISSA_BITS = 10
_SRCA_HI_BITS = 4  # explicit mantissa bits of srcA (in1) used per phase, besides the hidden one
_SRCB_HI_BITS = 6  # explicit mantissa bits of srcB (in0) used per phase


@dataclass(frozen=True)
class MatmulPrecision:
    fidelity: T.MathFidelity
    fp32_dest_acc: bool


def matmul_precision(compute_kernel_config: T.WormholeComputeKernelConfig | None) -> MatmulPrecision:
    """The effective precision of a matmul call (ttnn's defaults: LoFi, bf16 destination)."""
    if compute_kernel_config is None:
        return MatmulPrecision(T.MathFidelity.LoFi, False)
    fidelity = compute_kernel_config.math_fidelity
    if fidelity in (None, T.MathFidelity.Invalid):
        fidelity = T.MathFidelity.LoFi
    return MatmulPrecision(fidelity, bool(compute_kernel_config.fp32_dest_acc_en))


def truncate_mantissa(x: torch.Tensor, explicit_bits: int) -> torch.Tensor:
    """Keep ``explicit_bits`` mantissa bits of fp32 values, truncating toward zero."""
    if explicit_bits >= 23:
        return x
    mask = -(1 << (23 - explicit_bits))
    return (x.contiguous().view(torch.int32) & mask).view(torch.float32)


def _split(x: torch.Tensor, hi_bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    full = truncate_mantissa(x, _SRC_MANTISSA_BITS)
    hi = truncate_mantissa(full, hi_bits)
    return full, hi, full - hi


@dataclass(frozen=True)
class In1Operand:
    """in1 (srcA) split for the fidelity phases: ``full`` (TF32) and ``hi`` (top 5 significant bits), both
    ``[..., K, N]``; ``column_major``: views of ``[..., N, K]`` storage (see ``_kernel_probe``)."""

    full: torch.Tensor
    hi: torch.Tensor
    column_major: bool = False

    @property
    def lo(self) -> torch.Tensor:
        return self.full - self.hi

    def expand_devices(self, devices: int) -> "In1Operand":
        """The operand broadcast to ``devices`` devices (its leading dim)."""
        return In1Operand(self.full.expand(devices, *self.full.shape[1:]), self.hi.expand(devices, *self.hi.shape[1:]),
                          self.column_major)

    def row_major(self) -> "In1Operand":
        """The same values in row-major storage."""
        if not self.column_major:
            return self
        return In1Operand(self.full.contiguous(), self.hi.contiguous())


def split_in1(b: torch.Tensor) -> In1Operand:
    full, hi, _ = _split(b, _SRCA_HI_BITS)
    return In1Operand(full, hi)


def in1_parts(fidelity: T.MathFidelity) -> tuple[str, ...]:
    """The parts of in1 a fidelity's phases read: ``full`` (HiFi2, HiFi4), ``hi`` (LoFi) or both (HiFi3)."""
    if fidelity == T.MathFidelity.HiFi3:
        return ("full", "hi")
    return ("hi",) if fidelity == T.MathFidelity.LoFi else ("full",)


def in1_of_parts(parts: dict[str, torch.Tensor]) -> In1Operand:
    """The operand of the parts ``in1_parts`` names; a part the fidelity does not read aliases the other."""
    full = parts.get("full", parts.get("hi"))
    return In1Operand(full, parts.get("hi", full))


def in1_part(b: torch.Tensor, part: str) -> torch.Tensor:
    """Part ``full`` (TF32) or ``hi`` of in1 values ``b``."""
    return getattr(split_in1(b.to(torch.float32)), part)


def split_in1_column_major(b_t: torch.Tensor) -> In1Operand:
    """The operand of the weight whose transpose ``b_t`` [..., N, K] is given, kept column-major."""
    split = split_in1(b_t.contiguous())
    return In1Operand(split.full.transpose(-1, -2), split.hi.transpose(-1, -2), column_major=True)


class OperandCache:
    """LRU cache of prepared in1 operands (weights are reused every step; preparing them is the costly
    part of an emulated matmul). Entries hold a reference to the source storage, so an id is never
    reused while its entry lives; the total size is bounded by ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: "OrderedDict[tuple, tuple[torch.Tensor, In1Operand, int]]" = OrderedDict()
        self._bytes = 0

    def get(self, storage: torch.Tensor, key: tuple, build) -> In1Operand:
        full_key = (id(storage),) + key
        entry = self._entries.get(full_key)
        if entry is not None and entry[0] is storage:
            self._entries.move_to_end(full_key)
            return entry[1]
        value = build()
        size = value.full.numel() * value.full.element_size() * 2
        if size <= self.budget_bytes:
            self._entries[full_key] = (storage, value, size)
            self._bytes += size
            while self._bytes > self.budget_bytes:
                _, (_, _, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
        return value

    def invalidate(self, storage: torch.Tensor) -> None:
        """Forget the entries built from ``storage`` (call after writing into it in place)."""
        for key in [k for k, entry in self._entries.items() if entry[0] is storage]:
            self._bytes -= self._entries.pop(key)[2]

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


operand_cache = OperandCache(int(os.environ.get("DEEPSEEK_TT_EMULATOR_OPERAND_CACHE_MB", "2048")) << 20)


def phase_terms(a: torch.Tensor, b: In1Operand, fidelity: T.MathFidelity) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (in0 part, in1 part) products that the fidelity phases add up.

    in0 -> srcB. Only the parts a fidelity uses are built; truncating to 10 bits and then to 6 keeps the
    same bits as truncating to 6 at once (the masks nest), so ``hi`` is one pass over ``a``.
    """
    if fidelity == T.MathFidelity.HiFi4:
        return [(truncate_mantissa(a, _SRC_MANTISSA_BITS), b.full)]
    if fidelity == T.MathFidelity.HiFi3:
        a_full, a_hi, a_lo = _split(a, _SRCB_HI_BITS)
        return [(a_hi, b.full), (a_lo, b.hi)]
    if fidelity == T.MathFidelity.HiFi2:
        return [(truncate_mantissa(a, _SRCB_HI_BITS), b.full)]
    if fidelity == T.MathFidelity.LoFi:
        return [(truncate_mantissa(a, _SRCB_HI_BITS), b.hi)]
    raise ValueError(f"ttnn: unsupported math fidelity {fidelity!r}")


def fidelity_matmul(a: torch.Tensor, b: In1Operand, fidelity: T.MathFidelity) -> torch.Tensor:
    """fp32 product of in0 ``a`` [..., M, K] and in1 ``b`` [..., K, N] as the fidelity phases compute it."""
    return _sum_of_products(phase_terms(a, b, fidelity))


def _sum_of_products(terms: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    out = torch.matmul(*terms[0])
    for x, y in terms[1:]:
        out = out + torch.matmul(x, y)
    return out


def _as_batched(x: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    return x.expand(*batch, *x.shape[-2:]).reshape(-1, *x.shape[-2:])


def device_matmul(a: torch.Tensor, b: In1Operand, precision: MatmulPrecision) -> torch.Tensor:
    """fp32 result of ``a @ b`` (broadcasting batch dims) under the precision model."""
    if b.column_major and a.shape[-2] % row_granule():
        b = b.row_major()  # a column-major weight gives the row-major bits for a multiple of the granule only
    return matmul_of_terms(phase_terms(a, b, precision.fidelity), precision)


def matmul_of_terms(terms: list[tuple[torch.Tensor, torch.Tensor]], precision: MatmulPrecision) -> torch.Tensor:
    """fp32 sum of the fidelity phases' products ``terms`` (as :func:`phase_terms` builds them) under the
    destination accumulation mode of ``precision``."""
    if precision.fp32_dest_acc:
        return _sum_of_products(terms)
    # bf16 destination: the running sum is rounded to bf16 after every 32-wide K tile.
    a, b = terms[0]
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    terms = [(_as_batched(x, batch), _as_batched(y, batch)) for x, y in terms]
    k = a.shape[-1]
    acc = torch.zeros(terms[0][0].shape[0], a.shape[-2], b.shape[-1], dtype=torch.float32, device=a.device)
    for start in range(0, k, TILE):
        stop = min(k, start + TILE)
        for x, y in terms:
            acc.baddbmm_(x[:, :, start:stop], y[:, start:stop, :])
        acc.copy_(acc.to(torch.bfloat16))
    return acc.reshape(*batch, a.shape[-2], b.shape[-1])
