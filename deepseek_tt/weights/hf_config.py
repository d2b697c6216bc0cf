"""Reading and validating a model directory's ``config.json`` (docs/DESIGN.md section 8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import DeepseekV3Config

from deepseek_tt.weights.errors import CheckpointError, MissingCheckpointFileError

CONFIG_NAME = "config.json"

#: Fields the model library reads; a config.json without one of them is refused.
REQUIRED_FIELDS: tuple[str, ...] = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "moe_intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "n_routed_experts",
    "n_shared_experts",
    "num_experts_per_tok",
    "n_group",
    "topk_group",
    "first_k_dense_replace",
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "rms_norm_eps",
    "routed_scaling_factor",
    "norm_topk_prob",
)


def check_model_dir(model_dir: str | Path) -> Path:
    """``model_dir`` as a Path; raises naming it when it does not exist or is not a directory."""
    path = Path(model_dir).expanduser()
    if not path.exists():
        raise MissingCheckpointFileError(f"model directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise MissingCheckpointFileError(f"model directory {str(path)!r} is not a directory")
    return path


def read_config_dict(model_dir: str | Path) -> dict[str, Any]:
    """The raw, validated ``config.json`` of ``model_dir`` as a dict."""
    path = check_model_dir(model_dir) / CONFIG_NAME
    if not path.is_file():
        raise MissingCheckpointFileError(f"{path}: missing; a DeepSeek-V3 model directory needs config.json")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    model_type = data.get("model_type")
    if model_type != "deepseek_v3":
        raise CheckpointError(f"{path}: model_type is {model_type!r}, expected 'deepseek_v3'")
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        raise CheckpointError(f"{path}: missing required field(s) {', '.join(missing)}")
    if "rope_scaling" not in data and "rope_parameters" not in data:
        raise CheckpointError(f"{path}: missing required field rope_scaling (or rope_parameters)")
    quant = data.get("quantization_config")
    if quant is not None:
        block = quant.get("weight_block_size")
        if quant.get("quant_method") != "fp8" or not (isinstance(block, list) and len(block) == 2):
            raise CheckpointError(
                f"{path}: quantization_config must have quant_method 'fp8' and weight_block_size [rows, cols], got {quant}"
            )
    return data


def load_hf_config(model_dir: str | Path) -> DeepseekV3Config:
    """The ``DeepseekV3Config`` of ``model_dir`` (validated; never touches the network)."""
    data = read_config_dict(model_dir)
    fields = {k: v for k, v in data.items() if k not in ("transformers_version", "auto_map")}
    try:
        return DeepseekV3Config(**fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{Path(model_dir) / CONFIG_NAME}: not a valid DeepSeek-V3 config ({exc})") from exc


def weight_block_size(config: DeepseekV3Config) -> tuple[int, int] | None:
    """The fp8 block of a quantized checkpoint's config, or None when the weights are not quantized."""
    quant = getattr(config, "quantization_config", None)
    if not quant:
        return None
    if not isinstance(quant, dict):
        quant = quant.to_dict()
    rows, cols = quant["weight_block_size"]
    return int(rows), int(cols)


__all__ = ["CONFIG_NAME", "REQUIRED_FIELDS", "check_model_dir", "load_hf_config", "read_config_dict", "weight_block_size"]
