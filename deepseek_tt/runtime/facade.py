"""What both runtime models (``TtModel``, ``PipelinedTtModel``) share behind the facade: the batch and
sequence geometry, the paged KV layout over the mesh, and the checks of the torch inputs of ``prefill`` and
``decode`` (token ids are checked here, once, before anything reaches the device)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.modules import kv_cache
from deepseek_tt.modules.base import mesh_shape
from deepseek_tt.runtime.model_config import DEFAULT_MAX_SEQ_LEN
from deepseek_tt.runtime.token_ids import check_token_ids

DEFAULT_USERS_PER_ROW = kv_cache.USERS_PER_ROW


def round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


class ModelFacade:
    """Batch geometry (``max_batch_size`` users, ``users_per_row`` per mesh row), sequence limit, the paged
    KV layout and its default page table, the loaded weights' locations, and the input checks.

    A subclass names its whole-model module (``MODEL``: model configs) and implements ``_set_up_mesh`` (what it
    needs of the mesh before its configs) and ``_build_run_configs``; construction then runs them in order."""

    #: The whole-model module class (``prefill_model_config`` / ``decode_model_config``).
    MODEL: Any = None

    def __init__(
        self,
        hf_config: Any,
        mesh_device: Any,
        weight_config: dict[str, Any],
        weight_root: Path | None,
        *,
        dtype_policy: DtypePolicy | str | None = None,
        max_batch_size: int | None = None,
        max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
        weight_loads: dict | None = None,
    ) -> None:
        rows, cols = mesh_shape(mesh_device)
        self.users_per_row = kv_cache.users_per_row_of(max_batch_size, rows)
        self.hf_config = hf_config
        self.mesh_device = mesh_device
        self.dtype_policy = get_dtype_policy(dtype_policy)
        self.vocab_size = int(hf_config.vocab_size)
        self.max_batch_size = self.users_per_row * rows
        kv_cache.users_per_device(self.users_per_row, cols)
        self.max_seq_len = int(max_seq_len)
        self.weight_config = weight_config
        self.weight_root = weight_root
        self.paged_config = kv_cache.model_paged_config(self.max_seq_len, self.users_per_row, cols)
        self.page_table = kv_cache.default_page_table(self.paged_config)
        self._loaded: dict = weight_loads if weight_loads is not None else {}  # a VerifiedLoads checks each file
        self._set_up_mesh()
        common = dict(users_per_row=self.users_per_row, dtype_policy=self.dtype_policy)
        self._prefill_model_config = self.MODEL.prefill_model_config(hf_config, mesh_device, **common)
        self._decode_model_config = self.MODEL.decode_model_config(hf_config, mesh_device, **common)
        self._build_run_configs()

    def _set_up_mesh(self) -> None:
        """What the model needs of the mesh before its configs (rotary tables, stage submeshes)."""
        raise NotImplementedError

    def _build_run_configs(self, previous: dict[str, Any] | None = None) -> None:
        """Fresh state merged with the weights (``previous``: an earlier prefill run config to share them from)."""
        raise NotImplementedError

    def _padded_prompt(self, tokens: torch.Tensor, user_id: int) -> tuple[torch.Tensor, int]:
        """A user's prompt checked (user id, length, token ids) and zero-padded to whole tiles ->
        ``(padded [S32], real length S)``."""
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        seq_len = int(tokens.numel())
        if not 0 <= int(user_id) < self.max_batch_size:
            raise ValueError(f"prefill: user_id {user_id} out of range [0, {self.max_batch_size})")
        if not 1 <= seq_len <= self.max_seq_len:
            raise ValueError(f"prefill: length {seq_len} must be in [1, max_seq_len={self.max_seq_len}]")
        check_token_ids(tokens, self.vocab_size, "prefill")
        padded = torch.zeros(round_up(seq_len, ttnn.TILE_SIZE), dtype=torch.long)
        padded[:seq_len] = tokens
        return padded, seq_len

    def _decode_slots(self, tokens: torch.Tensor, positions: torch.Tensor, slots: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``slots`` tokens and positions as flat int64 tensors, checked: the count (``what`` names it in the
        error), the active slots' token ids, and their positions below ``max_seq_len`` (``-1``: empty slot)."""
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        positions = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
        if tokens.numel() != slots or positions.numel() != slots:
            raise ValueError(f"decode expects {slots} tokens and positions ({what}), got {tokens.numel()}/{positions.numel()}")
        active = positions >= 0
        check_token_ids(tokens[active], self.vocab_size, "decode")
        if active.any() and int(positions[active].max()) >= self.max_seq_len:
            raise ValueError(f"decode: position {int(positions.max())} reaches max_seq_len {self.max_seq_len}")
        return tokens, positions


__all__ = ["DEFAULT_USERS_PER_ROW", "ModelFacade", "round_up"]
