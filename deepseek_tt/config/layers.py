"""Which decoder layers of a DeepSeek-V3 config are MoE layers: the one rule the model library, the
reference checkpoint tools and the tests share (no transformers or ttnn import)."""

from __future__ import annotations

from typing import Any


def is_moe_layer(hf_config: Any, layer: int) -> bool:
    """Whether decoder layer ``layer`` has a MoE FFN: the config has routed experts, ``layer`` is at or past
    ``first_k_dense_replace``, and ``layer % moe_layer_freq == 0`` (DeepSeek's rule; ``moe_layer_freq``
    defaults to 1, as in every DeepSeek-V3 config).

    transformers' ``DeepseekV3DecoderLayer`` tests only ``layer >= first_k_dense_replace``: the two agree
    whenever ``moe_layer_freq`` is 1; a config with another value describes a model transformers builds
    differently (its checkpoint then does not load into the reference).
    """
    if not getattr(hf_config, "n_routed_experts", None):
        return False
    freq = int(getattr(hf_config, "moe_layer_freq", 1) or 1)
    return layer >= int(getattr(hf_config, "first_k_dense_replace", 0) or 0) and layer % freq == 0


__all__ = ["is_moe_layer"]
