"""The one table of accuracy thresholds (DESIGN.md section 5): module x mode x dtype policy -> PCC.

Anchors are tt-metal's hardware thresholds. ``high_precision`` (bf16 everywhere) must meet at least the
same values. A test asks :func:`pcc_threshold`; nothing else in the repository holds a PCC number.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepseek_tt.config.dtype_policy import get_dtype_policy

#: (module, mode, dtype policy) -> minimum PCC; mode / policy ``"*"`` matches any.
PCC_THRESHOLDS: dict[tuple[str, str, str], float] = {
    ("rms_norm", "*", "*"): 0.98,
    ("distributed_rms_norm", "*", "*"): 0.98,
    ("embedding", "*", "*"): 0.98,
    ("lm_head", "*", "*"): 0.98,
    ("mla", "*", "*"): 0.99,
    ("kvpe_cache", "*", "*"): 0.999,
    ("mlp", "*", "*"): 0.975,
    ("shared_expert", "*", "*"): 0.975,
    ("moe_gate", "*", "*"): 0.99,  # weights; indices must match exactly after a stable sort
    ("experts", "*", "*"): 0.98,
    ("moe", "*", "*"): 0.97,
    ("decoder_block", "*", "*"): 0.988,  # random weights
    ("decoder_block_real", "*", "*"): 0.9899,  # trained weights
    ("moe_decoder_block", "*", "*"): 0.988,
    ("model", "*", "*"): 0.97,  # full-model logits
}

@dataclass(frozen=True)
class MagnitudeLimits:
    """Upper bounds of the scale-aware metrics: ``||a - e|| / ||e||`` and ``| ||a|| / ||e|| - 1 |``."""

    relative_error: float
    norm_ratio_error: float


#: (module, mode, dtype policy) -> magnitude limits; same lookup as the PCC table.
MAGNITUDE_LIMITS: dict[tuple[str, str, str], MagnitudeLimits] = {
    (module, "*", "*"): MagnitudeLimits(1.0, 1.0) for module in {m for m, _, _ in PCC_THRESHOLDS}
}

#: Full-model logits: (module, mode, dtype policy) -> minimum fraction of positions whose argmax agrees.
TOP1_THRESHOLDS: dict[tuple[str, str, str], float] = {
    ("model", "*", "*"): 0.0,
}

#: Largest relative deviation of a token's routing-weight sum from ``routed_scaling_factor`` under
#: ``norm_topk_prob``: the gate normalises in float32 and casts each weight to bfloat16 (relative rounding
#: at most 2^-9 ~ 1.95e-3 each, so the sum is off by at most that much); twice that bound.
GATE_WEIGHT_SUM_TOLERANCE = 4e-3

#: Teacher-forced next-token agreement: (variant, metric) -> minimum fraction.
TEACHER_FORCING_THRESHOLDS: dict[tuple[str, str], float] = {
    ("strict", "top1"): 0.80,
    ("strict", "top5"): 0.95,
    ("aggregate", "top1"): 0.70,
    ("aggregate", "top5"): 0.85,
    ("high_precision", "top1"): 0.95,
    ("embedded", "top1"): 0.80,
    ("embedded", "top5"): 0.95,
    ("embedded_high_precision", "top1"): 0.95,
    ("embedded_high_precision", "top5"): 0.95,
}


def _lookup(table: dict, what: str, module: str, mode: str, dtype_policy: str | None):
    policy = get_dtype_policy(dtype_policy).name
    for key in ((module, mode, policy), (module, mode, "*"), (module, "*", policy), (module, "*", "*")):
        if key in table:
            return table[key]
    known = sorted({m for m, _, _ in table})
    raise KeyError(f"no {what} threshold for module {module!r}; the table has {', '.join(known)}")


def pcc_threshold(module: str, mode: str, dtype_policy: str | None = "default") -> float:
    """The PCC a module's output must reach in ``mode`` (``prefill`` / ``decode``) under a dtype policy."""
    return _lookup(PCC_THRESHOLDS, "PCC", module, mode, dtype_policy)


def magnitude_limits(module: str, mode: str, dtype_policy: str | None = "default") -> MagnitudeLimits:
    """The largest relative error and norm-ratio error a module's output may have."""
    return _lookup(MAGNITUDE_LIMITS, "magnitude", module, mode, dtype_policy)


def top1_threshold(module: str, mode: str, dtype_policy: str | None = "default") -> float:
    """The fraction of positions whose logits' argmax must agree with the reference's."""
    return _lookup(TOP1_THRESHOLDS, "top-1", module, mode, dtype_policy)


def teacher_forcing_threshold(variant: str, metric: str) -> float:
    """Minimum top-1 / top-5 agreement (``variant``: strict, aggregate, high_precision)."""
    try:
        return TEACHER_FORCING_THRESHOLDS[(variant, metric)]
    except KeyError:
        raise KeyError(f"no teacher-forcing threshold for {variant!r}/{metric!r}") from None
