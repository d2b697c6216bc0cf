"""Dtype policies: which ttnn dtype each kind of converted weight (and the KV cache) is stored in.

``default`` follows the tt-metal anchor: attention weights and the KV cache bfloat8_b, routed-expert
gate/up bfloat4_b and down bfloat8_b, dense MLP / shared expert / LM head bfloat8_b, norms and embedding in
bfloat16. ``high_precision`` stores everything in bfloat16. The router (MoE gate weight and correction
bias) is float32 in every policy, as in transformers: expert selection must match the reference exactly,
and a bf16 router flips near-tied top-k choices (the router is tiny: E x hidden). Dtypes are held as ttnn
attribute names (``"bfloat8_b"``) so a policy is plain JSON data and part of the weight-cache fingerprint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: Every weight category a module may ask for.
WEIGHT_KINDS = (
    "attention",  # MLA projections (wq_a, wq_b, wkv_a, wkv_b, wo)
    "kv_cache",  # the paged KVPE cache
    "dense_mlp",  # w1/w2/w3 of the dense layers
    "shared_expert",  # w1/w2/w3 of the shared expert
    "expert_gate_up",  # routed experts w1/w3
    "expert_down",  # routed experts w2
    "router",  # MoE gate weight and correction bias
    "norm",  # RMSNorm weights
    "embedding",
    "lm_head",
)

_VALID_DTYPES = ("bfloat16", "float32", "bfloat8_b", "bfloat4_b")


@dataclass(frozen=True)
class DtypePolicy:
    """A named mapping from weight kind to ttnn dtype name."""

    name: str
    attention: str = "bfloat8_b"
    kv_cache: str = "bfloat8_b"
    dense_mlp: str = "bfloat8_b"
    shared_expert: str = "bfloat8_b"
    expert_gate_up: str = "bfloat4_b"
    expert_down: str = "bfloat8_b"
    router: str = "float32"
    norm: str = "bfloat16"
    embedding: str = "bfloat16"
    lm_head: str = "bfloat8_b"

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "name" and getattr(self, f.name) not in _VALID_DTYPES:
                raise ValueError(
                    f"dtype policy {self.name!r}: {f.name}={getattr(self, f.name)!r} is not one of {', '.join(_VALID_DTYPES)}"
                )

    def dtype(self, kind: str) -> Any:
        """The ttnn dtype object (``ttnn.bfloat8_b`` ...) for a weight kind of :data:`WEIGHT_KINDS`."""
        if kind not in WEIGHT_KINDS:
            raise KeyError(f"unknown weight kind {kind!r}; expected one of {', '.join(WEIGHT_KINDS)}")
        from deepseek_tt.backend import ttnn

        return getattr(ttnn, getattr(self, kind))

    def to_json(self) -> dict[str, str]:
        return asdict(self)


DEFAULT_POLICY = DtypePolicy(name="default")
HIGH_PRECISION_POLICY = replace(
    DEFAULT_POLICY, name="high_precision", **{kind: "bfloat16" for kind in WEIGHT_KINDS if kind != "router"}
)

DTYPE_POLICIES: dict[str, DtypePolicy] = {p.name: p for p in (DEFAULT_POLICY, HIGH_PRECISION_POLICY)}


def get_dtype_policy(policy: str | DtypePolicy | None) -> DtypePolicy:
    """A policy by name (``"default"``, ``"high_precision"``; ``None`` means default) or as given."""
    if policy is None:
        return DEFAULT_POLICY
    if isinstance(policy, DtypePolicy):
        return policy
    key = policy.strip().lower().replace("-", "_")
    if key not in DTYPE_POLICIES:
        raise ValueError(f"unknown dtype policy {policy!r}; expected one of {', '.join(DTYPE_POLICIES)}")
    return DTYPE_POLICIES[key]
