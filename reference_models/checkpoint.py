"""Write complete Hugging Face model directories in the official DeepSeek-V3 format.

A written directory looks like a real download: an official-style ``config.json`` (``rope_scaling``,
``quantization_config`` fp8 e4m3 with ``weight_block_size`` [128, 128]), ``generation_config.json``,
sharded ``model-0000K-of-0000N.safetensors`` with ``model.safetensors.index.json``, and tokenizer files.
Projection weights are float8_e4m3fn with an fp32 ``<name>.weight_scale_inv`` per 128x128 block (ragged
edge blocks where a dim is not a multiple of 128); embeddings, norms, the router weight and the LM head
are bf16 and the router's ``e_score_correction_bias`` fp32, as in the real checkpoint.

Writing is atomic: everything goes to a temporary sibling directory that is renamed when complete; an
existing non-empty directory is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from deepseek_tt.weights.fp8 import DEFAULT_BLOCK, quantize_fp8_blocks
from deepseek_tt.weights.lazy_state_dict import INDEX_NAME
from reference_models.presets import get_preset
from reference_models.random_weights import random_tensor
from reference_models.state_dict_keys import (
    EMBEDDING,
    LINEAR,
    LM_HEAD,
    NORM,
    ROUTER,
    ROUTER_BIAS,
    official_weight_specs,
    to_official,
)
from reference_models.tokenizers import TOKENIZER_FILES, builtin_corpus, copy_deepseek_v3_tokenizer, train_small_bpe

DEFAULT_MAX_SHARD_BYTES = 1024**3  # a shard is held in memory until written
#: The genuine tokenizer has 128815 tokens; smaller vocabularies get a small BPE of exactly vocab_size.
DEEPSEEK_TOKENIZER_MIN_VOCAB = 128815

OFFICIAL_QUANTIZATION_CONFIG: dict[str, Any] = {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "weight_block_size": list(DEFAULT_BLOCK),
}

#: Stored dtype of each weight kind (LINEAR is fp8 when quantizing, else bf16).
_STORED_DTYPE = {
    NORM: torch.bfloat16,
    EMBEDDING: torch.bfloat16,
    ROUTER: torch.bfloat16,
    ROUTER_BIAS: torch.float32,
    LM_HEAD: torch.bfloat16,
    LINEAR: torch.bfloat16,
}


def official_config_dict(config: DeepseekV3Config, quantized: bool = True) -> dict[str, Any]:
    """``config`` as the official DeepSeek-V3 ``config.json`` writes it (rope_scaling, not rope_parameters)."""
    rope = dict(config.rope_parameters or {})
    rope_theta = rope.pop("rope_theta", 10000)
    rope_type = rope.pop("rope_type", "default")
    rope_scaling = None if rope_type == "default" else {"type": rope_type, **{k: v for k, v in rope.items() if k != "type"}}
    c = config
    data: dict[str, Any] = {
        "architectures": ["DeepseekV3ForCausalLM"],
        "attention_bias": c.attention_bias,
        "attention_dropout": c.attention_dropout,
        "aux_loss_alpha": 0.001,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id,
        "ep_size": 1,
        "first_k_dense_replace": c.first_k_dense_replace,
        "hidden_act": c.hidden_act,
        "hidden_size": c.hidden_size,
        "initializer_range": c.initializer_range,
        "intermediate_size": c.intermediate_size,
        "kv_lora_rank": c.kv_lora_rank,
        "max_position_embeddings": c.max_position_embeddings,
        "model_type": "deepseek_v3",
        "moe_intermediate_size": c.moe_intermediate_size,
        "moe_layer_freq": 1,
        "n_group": c.n_group,
        "n_routed_experts": c.n_routed_experts,
        "n_shared_experts": c.n_shared_experts,
        "norm_topk_prob": c.norm_topk_prob,
        "num_attention_heads": c.num_attention_heads,
        "num_experts_per_tok": c.num_experts_per_tok,
        "num_hidden_layers": c.num_hidden_layers,
        "num_key_value_heads": c.num_key_value_heads,
        "num_nextn_predict_layers": c.num_nextn_predict_layers,
        "pretraining_tp": 1,
        "q_lora_rank": c.q_lora_rank,
        "qk_nope_head_dim": c.qk_nope_head_dim,
        "qk_rope_head_dim": c.qk_rope_head_dim,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_scaling": rope_scaling,
        "rope_theta": rope_theta,
        "routed_scaling_factor": c.routed_scaling_factor,
        "scoring_func": "sigmoid",
        "seq_aux": True,
        "tie_word_embeddings": c.tie_word_embeddings,
        "topk_group": c.topk_group,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "transformers_version": transformers.__version__,
        "use_cache": True,
        "v_head_dim": c.v_head_dim,
        "vocab_size": c.vocab_size,
    }
    if quantized:
        data["quantization_config"] = dict(OFFICIAL_QUANTIZATION_CONFIG)
    return dict(sorted(data.items()))


GENERATION_CONFIG = {"_from_model_config": True, "bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 0.6, "top_p": 0.95}


class _ShardWriter:
    """Collects tensors into shards of at most ``max_bytes`` (a weight and its scale stay together)."""

    def __init__(self, out_dir: Path, max_bytes: int) -> None:
        self.out_dir, self.max_bytes = out_dir, max_bytes
        self.current: dict[str, torch.Tensor] = {}
        self.current_bytes = 0
        self.files: list[tuple[str, list[str]]] = []
        self.total_size = 0

    def add(self, group: dict[str, torch.Tensor]) -> None:
        nbytes = sum(t.numel() * t.element_size() for t in group.values())
        if self.current and self.current_bytes + nbytes > self.max_bytes:
            self.flush()
        self.current.update(group)
        self.current_bytes += nbytes
        self.total_size += nbytes

    def flush(self) -> None:
        if not self.current:
            return
        name = f"shard-{len(self.files):05d}.tmp"
        save_file({k: v.contiguous() for k, v in self.current.items()}, str(self.out_dir / name), metadata={"format": "pt"})
        self.files.append((name, list(self.current)))
        self.current, self.current_bytes = {}, 0

    def finish(self) -> dict[str, Any]:
        """Rename shards to the official pattern and return the index."""
        self.flush()
        weight_map: dict[str, str] = {}
        count = len(self.files)
        for i, (tmp_name, keys) in enumerate(self.files):
            final = f"model-{i + 1:05d}-of-{count:05d}.safetensors"
            (self.out_dir / tmp_name).rename(self.out_dir / final)
            weight_map.update({key: final for key in keys})
        return {"metadata": {"total_size": self.total_size}, "weight_map": weight_map}


def _stored_tensors(key: str, kind: str, tensor: torch.Tensor, quantize: bool) -> dict[str, torch.Tensor]:
    if kind == LINEAR and quantize:
        weight, scale_inv = quantize_fp8_blocks(tensor, DEFAULT_BLOCK)
        return {key: weight, f"{key}_scale_inv": scale_inv}
    return {key: tensor.detach().to(_STORED_DTYPE[kind]).contiguous()}


def _write_tokenizer(tokenizer: str | Path | None, config: DeepseekV3Config, out_dir: Path) -> None:
    if tokenizer is None:
        return
    choice = str(tokenizer)
    if choice == "auto":
        choice = "deepseek-v3" if config.vocab_size >= DEEPSEEK_TOKENIZER_MIN_VOCAB else "bpe"
    if choice == "deepseek-v3":
        if config.vocab_size < DEEPSEEK_TOKENIZER_MIN_VOCAB:
            raise ValueError(f"tokenizer 'deepseek-v3' has {DEEPSEEK_TOKENIZER_MIN_VOCAB} tokens but vocab_size is {config.vocab_size}")
        copy_deepseek_v3_tokenizer(out_dir)
    elif choice == "bpe":
        train_small_bpe(builtin_corpus(), config.vocab_size, out_dir)
    else:
        source = Path(choice)
        missing = [name for name in TOKENIZER_FILES if not (source / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"tokenizer directory {str(source)!r} lacks {', '.join(missing)} "
                "(expected 'auto', 'deepseek-v3', 'bpe', None or a directory with tokenizer files)"
            )
        for name in TOKENIZER_FILES + ("special_tokens_map.json",):
            if (source / name).is_file():
                shutil.copy2(source / name, out_dir / name)


def _prepare_target(out_dir: str | Path, overwrite: bool) -> Path:
    target = Path(out_dir).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _apply_umask(tmp: Path) -> None:
    """mkdtemp makes 0700 and safetensors writes 0600: give the model directory ordinary permissions."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    for path in tmp.iterdir():
        path.chmod(0o666 & ~umask)


def _commit(tmp: Path, target: Path) -> None:
    """Replace ``target`` by the finished ``tmp`` directory (the old one is removed only afterwards)."""
    _apply_umask(tmp)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{tmp.name}")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def write_checkpoint_from_tensors(
    config: DeepseekV3Config,
    tensors: Iterable[tuple[str, torch.Tensor]],
    out_dir: str | Path,
    *,
    tokenizer: str | Path | None = "auto",
    quantize: bool = True,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
) -> Path:
    """Write official-key float ``tensors`` (every tensor of ``config``, any order) as a model directory."""
    target = _prepare_target(out_dir, overwrite)
    specs = official_weight_specs(config)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        shards = _ShardWriter(tmp, max_shard_bytes)
        seen: set[str] = set()
        for key, tensor in tensors:
            spec = specs.get(key)
            if spec is None:
                raise KeyError(f"{key!r} is not a weight of this DeepSeek-V3 config")
            if tuple(tensor.shape) != spec.shape:
                raise ValueError(f"{key!r}: shape {tuple(tensor.shape)} does not match the config's {spec.shape}")
            shards.add(_stored_tensors(key, spec.kind, tensor, quantize))
            seen.add(key)
        missing = [key for key in specs if key not in seen]
        if missing:
            raise KeyError(f"missing {len(missing)} weight(s), e.g. {missing[:3]}")
        index = shards.finish()
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(official_config_dict(config, quantize), indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
        _write_tokenizer(tokenizer, config, tmp)
        _commit(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_checkpoint(
    preset: str | DeepseekV3Config,
    out_dir: str | Path,
    seed: int = 0,
    num_layers: int | None = None,
    *,
    tokenizer: str | Path | None = "auto",
    quantize: bool = True,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
) -> Path:
    """A preset name or config + seed -> a complete model directory with realistic random weights.

    Tensors are generated, quantized and written one at a time (memory: one shard). ``tokenizer``:
    ``"auto"`` (the DeepSeek-V3 tokenizer for the full vocabulary, else a BPE of exactly vocab_size),
    ``"deepseek-v3"``, ``"bpe"``, a directory with tokenizer files, or None.
    """
    if isinstance(preset, str):
        config = get_preset(preset, num_layers)
    else:
        config = preset
        if num_layers is not None:
            config = DeepseekV3Config(**{**config.to_dict(), "num_hidden_layers": int(num_layers)})
    def generate():
        for key, spec in official_weight_specs(config).items():
            # fp32 for what gets quantized, else straight to the stored dtype (no full fp32 copy)
            dtype = torch.float32 if spec.kind == LINEAR and quantize else _STORED_DTYPE[spec.kind]
            yield key, random_tensor(key, spec, seed, dtype)

    tensors = generate()
    return write_checkpoint_from_tensors(
        config, tensors, out_dir, tokenizer=tokenizer, quantize=quantize, max_shard_bytes=max_shard_bytes, overwrite=overwrite
    )


def write_checkpoint_from_model(
    model: DeepseekV3ForCausalLM,
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = "auto",
    *,
    quantize: bool = True,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
) -> Path:
    """An in-memory ``DeepseekV3ForCausalLM`` (e.g. a trained one) -> an official-format model directory."""
    state: Mapping[str, torch.Tensor] = model.state_dict()
    tensors = ((key, tensor.detach().float()) for key, tensor in to_official(state))
    return write_checkpoint_from_tensors(
        model.config, tensors, out_dir, tokenizer=tokenizer_dir, quantize=quantize, max_shard_bytes=max_shard_bytes, overwrite=overwrite
    )


__all__ = [
    "DEFAULT_MAX_SHARD_BYTES",
    "GENERATION_CONFIG",
    "OFFICIAL_QUANTIZATION_CONFIG",
    "official_config_dict",
    "write_checkpoint",
    "write_checkpoint_from_model",
    "write_checkpoint_from_tensors",
]
