"""The one table of accuracy thresholds (DESIGN.md section 5): module x mode x dtype policy -> PCC.

Anchors are tt-metal's hardware thresholds. ``high_precision`` (bf16 everywhere) must meet at least the
same values. A test asks :func:`pcc_threshold`; nothing else in the repository holds a PCC number.
"""

from __future__ import annotations

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
    ("served_logprobs", "*", "*"): 0.97,  # the server's prompt-token logprobs vs the reference's (= model)
}

#: Teacher-forced next-token agreement: (variant, metric) -> minimum fraction.
TEACHER_FORCING_THRESHOLDS: dict[tuple[str, str], float] = {
    ("strict", "top1"): 0.80,
    ("strict", "top5"): 0.95,
    ("aggregate", "top1"): 0.70,
    ("aggregate", "top5"): 0.85,
    ("high_precision", "top1"): 0.95,
}


def pcc_threshold(module: str, mode: str, dtype_policy: str | None = "default") -> float:
    """The PCC a module's output must reach in ``mode`` (``prefill`` / ``decode``) under a dtype policy."""
    policy = get_dtype_policy(dtype_policy).name
    for key in ((module, mode, policy), (module, mode, "*"), (module, "*", policy), (module, "*", "*")):
        if key in PCC_THRESHOLDS:
            return PCC_THRESHOLDS[key]
    known = sorted({m for m, _, _ in PCC_THRESHOLDS})
    raise KeyError(f"no PCC threshold for module {module!r}; the table has {', '.join(known)}")


def teacher_forcing_threshold(variant: str, metric: str) -> float:
    """Minimum top-1 / top-5 agreement (``variant``: strict, aggregate, high_precision)."""
    try:
        return TEACHER_FORCING_THRESHOLDS[(variant, metric)]
    except KeyError:
        raise KeyError(f"no teacher-forcing threshold for {variant!r}/{metric!r}") from None
