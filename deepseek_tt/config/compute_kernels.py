"""Compute-kernel configs chosen from the dtype policy, in one place, for every module.

Each op role reads its operand dtype from the policy and gets the math fidelity paired with it on
Wormhole (bfloat16 / float32 -> HiFi4, bfloat8_b -> HiFi2, bfloat4_b -> LoFi: a bfp8 mantissa is fully
consumed in two fidelity phases, a bfp4 one in one), with fp32 accumulation:

- matmuls against weights (``attention``, ``dense_mlp``, ``shared_expert``, ``expert_gate_up``,
  ``expert_down``, ``lm_head``, ``router``): fidelity of that weight kind, packer L1 accumulation;
- ``norm``: fidelity of the norm weights, no packer accumulation (a reduction, not a K-blocked matmul);
- ``sdpa``: HiFi4 in every policy: both of its matmuls multiply activations (a bf16 query or softmax
  probabilities) whose full mantissas need four phases, whatever the cache dtype; accumulation in bf16
  destination registers (fp32 would halve the SDPA tile budget).
"""

from __future__ import annotations

from typing import Any

from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy

#: Math fidelity paired with each operand dtype (BF16-HiFi4, BFP8_B-HiFi2, BFP4_B-LoFi).
FIDELITY_FOR_DTYPE = {"bfloat16": "HiFi4", "float32": "HiFi4", "bfloat8_b": "HiFi2", "bfloat4_b": "LoFi"}

MATMUL_ROLES = ("attention", "dense_mlp", "shared_expert", "expert_gate_up", "expert_down", "lm_head", "router")
ROLES = MATMUL_ROLES + ("norm", "sdpa")


def fidelity_name(dtype_name: str) -> str:
    """``"HiFi2"`` for ``"bfloat8_b"`` etc.; raises ``KeyError`` naming the dtype otherwise."""
    if dtype_name not in FIDELITY_FOR_DTYPE:
        raise KeyError(f"no math fidelity is paired with dtype {dtype_name!r}; expected one of {', '.join(FIDELITY_FOR_DTYPE)}")
    return FIDELITY_FOR_DTYPE[dtype_name]


def matmul_compute_config(weight_dtype_name: str) -> Any:
    """A ``WormholeComputeKernelConfig`` for a matmul against weights of that dtype (fp32 accumulation)."""
    from deepseek_tt.backend import ttnn

    return ttnn.WormholeComputeKernelConfig(
        math_fidelity=getattr(ttnn.MathFidelity, fidelity_name(weight_dtype_name)),
        math_approx_mode=False,
        fp32_dest_acc_en=True,
        packer_l1_acc=True,
    )


def compute_kernel_config(dtype_policy: DtypePolicy | str | None, role: str) -> Any:
    """The compute-kernel config of an op role (see :data:`ROLES`) under a dtype policy."""
    from deepseek_tt.backend import ttnn

    policy = get_dtype_policy(dtype_policy)
    if role in MATMUL_ROLES:
        return matmul_compute_config(getattr(policy, role))
    if role == "norm":
        fidelity, fp32_acc = fidelity_name(policy.norm), True
    elif role == "sdpa":
        fidelity, fp32_acc = "HiFi4", False
    else:
        raise KeyError(f"unknown compute-kernel role {role!r}; expected one of {', '.join(ROLES)}")
    return ttnn.WormholeComputeKernelConfig(
        math_fidelity=getattr(ttnn.MathFidelity, fidelity), math_approx_mode=False, fp32_dest_acc_en=fp32_acc,
        packer_l1_acc=False,
    )
