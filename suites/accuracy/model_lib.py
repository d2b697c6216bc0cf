"""Shared pieces of the model-library accuracy tests: the galaxy-tiny reference, meshes, I/O helpers.

The reference is transformers' DeepseekV3 with the realistic random weights of ``reference_models``
(fp32); the TT modules convert the very same tensors. Inputs to the MLPs / LM head are unit-RMS random
activations, as they come out of an RMSNorm; inputs to the norms, MLA and decoder blocks have per-token
RMS spread over five orders of magnitude (:func:`spread_activations`).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import DeepseekV3ForCausalLM

from deepseek_tt.config.mesh import format_mesh_shape
from deepseek_tt.modules.base import AbstractModule, mesh_shape
from reference_models.presets import get_preset
from reference_models.reference import build_reference_model, layer_state_dict, official_state_dict, strip_prefix

PRESET = "galaxy-tiny"
SEED = 2024
USERS_PER_ROW = 32

MESHES = [pytest.param((1, 1), id="mesh1x1"), pytest.param((4, 8), id="mesh4x8")]
#: Prefill lengths: one tile-aligned short one (CI) and a longer one.
PREFILL_LENGTHS = [pytest.param(128, marks=pytest.mark.quick, id="seq128"), pytest.param(1024, id="seq1024")]


@functools.lru_cache(maxsize=2)
def reference_model(num_layers: int = 2) -> DeepseekV3ForCausalLM:
    """Galaxy-tiny with ``num_layers`` layers (layer 0 dense, the rest MoE), fp32, built once per process."""
    return build_reference_model(copy.deepcopy(get_preset(PRESET, num_layers=num_layers)), seed=SEED)


def layer_weights(model: DeepseekV3ForCausalLM, layer: int, prefix: str) -> dict[str, torch.Tensor]:
    """Official-key weights of ``model.layers.{layer}.{prefix}``, prefix stripped."""
    return strip_prefix(layer_state_dict(model, layer), f"model.layers.{layer}.{prefix}")


def model_weights(model: DeepseekV3ForCausalLM, prefix: str) -> dict[str, torch.Tensor]:
    return strip_prefix(official_state_dict(model, prefix), prefix)


def mesh_name(mesh_device: Any) -> str:
    return format_mesh_shape(mesh_shape(mesh_device))


def decode_users(mesh_device: Any) -> int:
    return USERS_PER_ROW * mesh_shape(mesh_device)[0]


def build(module: type[AbstractModule], hf_config: Any, weights: dict[str, torch.Tensor], mesh_device: Any, out: Path, mode: str, **state_kwargs: Any) -> dict[str, Any]:
    """Stage 1 + 2 + 3 of ``module``: convert, model config of ``mode``, state, run config."""
    weight_config = module.convert_weights(hf_config, weights, out, mesh_device)
    model_config = (module.prefill_model_config if mode == "prefill" else module.decode_model_config)(hf_config, mesh_device)
    state = module.create_state(hf_config, mesh_device, **state_kwargs)
    return module.run_config(model_config, weight_config, state)


def activations(tokens: int, hidden: int, seed: int) -> torch.Tensor:
    return torch.randn(tokens, hidden, generator=torch.Generator().manual_seed(seed))


#: Per-token RMS range of :func:`spread_activations` (log-uniform): residual-stream magnitudes differ by
#: orders of magnitude between tokens, and small-RMS rows are where an RMSNorm's epsilon shows.
SPREAD_RMS = (1e-3, 1e2)


def token_scales(tokens: int, generator: torch.Generator, low: float = SPREAD_RMS[0], high: float = SPREAD_RMS[1]) -> torch.Tensor:
    """``[tokens, 1]`` scales log-evenly spaced over ``[low, high]`` (both ends included when ``tokens > 1``)
    in a random order: every call covers the whole range, whatever the seed."""
    scales = torch.logspace(torch.tensor(low).log10(), torch.tensor(high).log10(), tokens)
    return scales[torch.randperm(tokens, generator=generator)].reshape(tokens, 1)


def spread_activations(tokens: int, hidden: int, seed: int | torch.Generator, rms: tuple[float, float] = SPREAD_RMS) -> torch.Tensor:
    """``[tokens, hidden]`` random rows whose RMS is spread log-uniformly over ``rms`` (default :data:`SPREAD_RMS`).

    Bugs these inputs exist to catch (unit-RMS inputs hide them): an RMSNorm that does not normalise (its
    output then keeps the 1e5 spread of scales, and the PCC over all tokens drops), and an RMSNorm epsilon
    far from the config's (at RMS 1e-3 an epsilon of 0.1 shrinks the row ~300x).
    """
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, hidden, generator=generator)
    x = x / x.pow(2).mean(-1, keepdim=True).sqrt()
    return x * token_scales(tokens, generator, *rms)


# --- KVPE of the reference (what the TT cache must hold) --------------------------------------------


@torch.no_grad()
def reference_kvpe(attention: torch.nn.Module, rotary: torch.nn.Module, normed: torch.Tensor) -> torch.Tensor:
    """``[S, kv_lora + rope]`` for an attention's (already normed) input ``[S, hidden]`` at positions 0..S-1:
    the normed latent and the roped key, rope part interleaved as the TT cache stores it."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import apply_rotary_pos_emb_interleave

    from deepseek_tt.modules.rope import halves_to_interleaved

    c = attention.config.kv_lora_rank
    kv = attention.kv_a_proj_with_mqa(normed[None])
    latent = attention.kv_a_layernorm(kv[..., :c])
    k_rope = kv[..., c:][:, None]
    cos, sin = rotary(normed, torch.arange(normed.shape[0])[None])
    _, k_rope = apply_rotary_pos_emb_interleave(k_rope, k_rope, cos, sin)
    return torch.cat((latent[0], halves_to_interleaved(k_rope[0, 0])), dim=-1)


def causal_mask(seq_len: int) -> torch.Tensor:
    return torch.full((seq_len, seq_len), float("-inf")).triu(1)[None, None]


@torch.no_grad()
def reference_layer(model: DeepseekV3ForCausalLM, layer: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder layer ``layer`` over one sequence ``[S, hidden]`` (positions 0..S-1): ``(output, kvpe)``."""
    from reference_models.reference import get_layer, get_rotary_embedding

    return block_forward(get_layer(model, layer), get_rotary_embedding(model), x)


def standalone_layer(config: Any, layer: int, seed: int = SEED) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(DeepseekV3DecoderLayer, rotary)`` of ``layer`` with the weights ``build_reference_model(config, seed)``
    gives it, built alone (no embedding / LM head: what matters at full dims). Returns fp32 modules."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer, DeepseekV3RotaryEmbedding

    from reference_models.random_weights import random_tensor
    from reference_models.state_dict_keys import from_official, layer_weight_specs

    config = copy.deepcopy(config)
    config._attn_implementation = "eager"
    prefix = f"model.layers.{layer}."
    official = {key: random_tensor(key, spec, seed) for key, spec in layer_weight_specs(config, layer).items()}
    weights = {key.removeprefix(prefix): value for key, value in from_official(official).items()}
    with torch.device("meta"):
        block = DeepseekV3DecoderLayer(config, layer_idx=layer)
    block.load_state_dict(weights, assign=True)
    return block.eval(), DeepseekV3RotaryEmbedding(config)


@torch.no_grad()
def block_forward(block: torch.nn.Module, rotary: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``DeepseekV3DecoderLayer`` over one sequence ``[S, hidden]`` (positions 0..S-1): ``(output, kvpe)``."""
    positions = torch.arange(x.shape[0])[None]
    cos, sin = rotary(x[None], positions)
    out = block(x[None], attention_mask=causal_mask(x.shape[0]), position_ids=positions, position_embeddings=(cos, sin))
    out = out[0] if isinstance(out, tuple) else out
    kvpe = reference_kvpe(block.self_attn, rotary, block.input_layernorm(x))
    return out[0], kvpe


def facade_prefill_then_decode(tt: Any, model: DeepseekV3ForCausalLM, steps: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Two users of a runtime facade (``TtModel`` / ``PipelinedTtModel``), the first and the last slot, prefilled
    (37 and 64 tokens) and then decoded ``steps`` teacher-forced tokens; the other slots empty (-1).

    Returns ``{"prefill": (reference, tt), "decode": (reference, tt)}``: logits of every prompt position, and
    of each decode step (the step at position ``len(prompt) + k`` predicts what the reference predicts there).
    """
    generator = torch.Generator().manual_seed(5)
    last_user = tt.max_batch_size - 1  # the last mesh row and column (pp: the last micro-batch)
    prompts = {0: torch.randint(0, tt.vocab_size, (37,), generator=generator),
               last_user: torch.randint(0, tt.vocab_size, (64,), generator=generator)}
    continuations = {u: torch.randint(0, tt.vocab_size, (steps,), generator=generator) for u in prompts}
    with torch.no_grad():
        reference = {u: model(input_ids=torch.cat([p, continuations[u]])[None]).logits[0] for u, p in prompts.items()}
    prefill_out = {u: tt.prefill(p, u) for u, p in prompts.items()}
    decode_out: dict[int, list[torch.Tensor]] = {u: [] for u in prompts}
    for step in range(steps):
        tokens = torch.zeros(tt.max_batch_size, dtype=torch.long)
        positions = torch.full((tt.max_batch_size,), -1, dtype=torch.long)
        for user, prompt in prompts.items():
            tokens[user], positions[user] = continuations[user][step], len(prompt) + step
        out = tt.decode(tokens, positions)
        assert out.shape == (tt.max_batch_size, tt.vocab_size), f"decode logits {tuple(out.shape)}"
        for user in prompts:
            decode_out[user].append(out[user])
    return {
        "prefill": (torch.cat([reference[u][: len(p)] for u, p in prompts.items()]), torch.cat([prefill_out[u] for u in prompts])),
        "decode": (torch.cat([reference[u][len(p):] for u, p in prompts.items()]),
                   torch.cat([torch.stack(decode_out[u]) for u in prompts])),
    }
