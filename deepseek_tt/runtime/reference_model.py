"""A torch reference with the ``TtModel`` facade (docs/ARCHITECTURE.md, Runtime), over transformers.

``ReferenceModel`` wraps transformers' ``DeepseekV3ForCausalLM`` and keeps one ``DynamicCache`` per user,
so the generators and the demo run on it exactly as on the TT-NN model; comparisons of the two (and
with ``transformers.generate``) use it. Decode slots without a user are passed with position ``-1``
and skipped (their logits are zeros).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM, DynamicCache

from deepseek_tt.runtime.model_config import DEFAULT_MAX_SEQ_LEN, RANDOM_WEIGHTS_SEED

DEFAULT_USERS_PER_ROW = 32


def _load_pretrained(model_path: Path, dtype: torch.dtype) -> DeepseekV3ForCausalLM:
    try:  # the team's loader (fp8 dequantization, router kept in fp32) when present
        from reference_models.reference import load_reference_model
    except ImportError:
        return DeepseekV3ForCausalLM.from_pretrained(model_path, dtype=dtype).eval()
    return load_reference_model(model_path, dtype).eval()


def _build_random(config: DeepseekV3Config, seed: int, dtype: torch.dtype) -> DeepseekV3ForCausalLM:
    """The weights ``write_checkpoint(config, seed=seed)`` would write, cast tensor by tensor to ``dtype``
    (so full-dims runs never hold an fp32 copy of the whole model)."""
    from reference_models.random_weights import iter_random_weights
    from reference_models.reference import FP32_KEY_SUFFIXES, _model_from_official

    official = {
        key: tensor if key.endswith(FP32_KEY_SUFFIXES) else tensor.to(dtype)
        for key, _, tensor in iter_random_weights(config, seed)
    }
    return _model_from_official(config, official, dtype)


def random_weights_config(preset: str = "full", num_layers: int = 1) -> DeepseekV3Config:
    """The ``--random-weights`` model: DeepSeek-V3 dims of ``preset`` with ``num_layers`` dense layers."""
    from reference_models.presets import get_preset

    config = get_preset(preset, num_layers=num_layers)
    config.first_k_dense_replace = max(int(config.first_k_dense_replace), num_layers)
    return config


class ReferenceModel:
    """transformers' DeepSeek-V3 behind the runtime facade: ``load``, ``prefill``, ``decode``, ``reset``."""

    def __init__(self, model: DeepseekV3ForCausalLM, max_batch_size: int, max_seq_len: int) -> None:
        self.model = model
        self.hf_config = model.config
        self.vocab_size = int(model.config.vocab_size)
        self.max_batch_size = int(max_batch_size)
        self.max_seq_len = int(max_seq_len)
        self.dtype_policy = "reference"
        self._caches: dict[int, DynamicCache] = {}
        self._lengths: dict[int, int] = {}

    @classmethod
    def load(
        cls,
        model_path: str | Path | None,
        mesh_device: Any = None,
        cache_dir: str | Path | None = None,
        dtype_policy: str = "default",
        max_batch_size: int | None = None,
        max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
        recalculate_weights: bool = False,
        random_weights: bool = False,
        *,
        hf_config: DeepseekV3Config | None = None,
        dtype: torch.dtype = torch.float32,
        seed: int = RANDOM_WEIGHTS_SEED,
        progress: bool = True,
    ) -> "ReferenceModel":
        """Load ``model_path`` (an HF directory) or build random weights for ``hf_config``.

        ``mesh_device``, ``cache_dir``, ``dtype_policy`` and ``recalculate_weights`` are accepted for the
        facade's signature; the reference always computes in ``dtype`` on the CPU. ``max_batch_size``
        defaults to 32 users per mesh row (one row when no mesh is given).
        """
        if random_weights:
            model = _build_random(hf_config or random_weights_config(), seed, dtype)
        else:
            if model_path is None:
                raise ValueError("ReferenceModel.load: model_path is required unless random_weights=True")
            model = _load_pretrained(Path(model_path), dtype)
        if max_batch_size is None:
            rows = int(mesh_device.shape[0]) if mesh_device is not None else 1
            max_batch_size = DEFAULT_USERS_PER_ROW * rows
        return cls(model, max_batch_size, max_seq_len)

    def reset(self) -> None:
        """Forget every user's KV cache."""
        self._caches.clear()
        self._lengths.clear()

    def _check_user(self, user_id: int) -> None:
        if not 0 <= user_id < self.max_batch_size:
            raise ValueError(f"user_id {user_id} out of range [0, {self.max_batch_size})")

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor, user_id: int) -> torch.Tensor:
        """Run ``tokens`` ([S]) as user ``user_id``'s prompt from position 0; returns logits [S, V]."""
        self._check_user(user_id)
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        if tokens.numel() == 0 or tokens.numel() > self.max_seq_len:
            raise ValueError(f"prefill length {tokens.numel()} must be in [1, {self.max_seq_len}]")
        cache = DynamicCache(config=self.hf_config)
        out = self.model(input_ids=tokens[None], cache=cache, use_cache=True)
        self._caches[user_id] = cache
        self._lengths[user_id] = int(tokens.numel())
        return out.logits[0].float()

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One token per slot ([B] tokens at [B] positions); slots at position -1 are skipped."""
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        positions = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
        if tokens.numel() != self.max_batch_size or positions.numel() != self.max_batch_size:
            raise ValueError(f"decode expects {self.max_batch_size} tokens and positions, got {tokens.numel()}/{positions.numel()}")
        logits = torch.zeros(self.max_batch_size, self.vocab_size)
        for user in range(self.max_batch_size):
            pos = int(positions[user])
            if pos < 0:
                continue
            if user not in self._caches:
                raise ValueError(f"decode: user {user} has position {pos} but was never prefilled")
            if pos != self._lengths[user]:
                raise ValueError(f"decode: user {user} is at position {self._lengths[user]}, got {pos}")
            if pos >= self.max_seq_len:
                raise ValueError(f"decode: user {user} position {pos} reaches max_seq_len {self.max_seq_len}")
            out = self.model(
                input_ids=tokens[user].view(1, 1),
                position_ids=positions[user].view(1, 1),
                cache=self._caches[user],
                use_cache=True,
            )
            self._lengths[user] = pos + 1
            logits[user] = out.logits[0, -1].float()
        return logits


__all__ = ["ReferenceModel", "random_weights_config"]
