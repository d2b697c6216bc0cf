"""``TtModel``: the TT-NN DeepSeek-V3 behind the runtime facade (docs/ARCHITECTURE.md, Runtime).

Loads (or converts and caches) the weights, builds the prefill and decode run configs once (sharing the
loaded weights and the paged KVPE caches), and turns torch token ids into logits:

- ``prefill(tokens[S], user_id) -> [S, V]``: one user's prompt from position 0; the sequence is padded to
  a multiple of 32 (padding is causal-invisible and never read back); fills the user's KV pages.
- ``decode(tokens[B], positions[B]) -> [B, V]`` with ``B == max_batch_size`` (32 users per mesh row by
  default); a slot at position ``-1`` holds no user: its KV is not written and its logits are undefined.
- ``reset()``: zeroes every user's KV.
- ``allocate_kv_cache(num_blocks, block_size)``: re-creates the paged caches with an external block count;
  ``prefill`` / ``decode`` then take ``page_table=``, a torch int32 ``[max_batch_size, blocks]`` table of
  physical block ids (global user -> its blocks, as vLLM keeps it) used instead of the internal one (it
  travels in that call's ``ForwardContext``; the run configs never hold a page table).

For tracing, ``decode`` is split into ``decode_host_inputs`` (host tensors built on the host: tokens,
positions, cos, sin), ``decode_device_step`` (device ops only) and ``decode_output_to_torch``. Token ids
and positions are checked once, here at the facade (``prefill`` / ``decode_host_inputs``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy
from deepseek_tt.modules import kv_cache
from deepseek_tt.modules.embedding import Embedding
from deepseek_tt.modules.forward_context import ForwardContext, StageObserver
from deepseek_tt.modules.lm_head import LMHead
from deepseek_tt.modules.model import Model
from deepseek_tt.modules.rope import RotarySetup
from deepseek_tt.runtime.model_config import (
    DEFAULT_MAX_SEQ_LEN,
    RANDOM_WEIGHTS_SEED,
    check_load_fits,
    load_through_cache,
    resolve_load_config,
    resolve_weight_source,
)
from deepseek_tt.runtime.facade import ModelFacade
from deepseek_tt.weights.convert import load_or_convert_model_weights

logger = logging.getLogger(__name__)


class TtModel(ModelFacade):
    """The TT-NN model on a mesh; build it with :meth:`load`."""

    MODEL = Model

    def _set_up_mesh(self) -> None:
        self.rope = RotarySetup(self.hf_config, self.mesh_device, users_per_row=self.users_per_row)

    # --- construction ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model_path: str | Path | None,
        mesh_device: Any,
        cache_dir: str | Path | None = None,
        dtype_policy: DtypePolicy | str = "default",
        max_batch_size: int | None = None,
        max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
        recalculate_weights: bool = False,
        random_weights: bool = False,
        *,
        hf_config: Any = None,
        seed: int = RANDOM_WEIGHTS_SEED,
        progress: bool = True,
        weight_source: Any = None,
    ) -> "TtModel":
        """Load ``model_path`` (an HF model directory, fp8 or bf16) through the weight cache, or build
        random weights (``random_weights=True``) for ``hf_config`` (else ``model_path``'s config, else the
        ``full`` preset cut to one dense layer). ``weight_source``: a ``weights.convert.WeightSource`` of the
        same weights resolved by the caller (its checkpoint identity is reused)."""
        hf_config = resolve_load_config("TtModel.load", model_path, cache_dir, random_weights, hf_config)
        check_load_fits(hf_config, dtype_policy, mesh_device, "bp", max_batch_size, max_seq_len)
        convert_args = dict(
            source=resolve_weight_source("TtModel.load", model_path, random_weights, seed, weight_source),
            dtype_policy=dtype_policy,
            progress=progress,
            verify_checksums=False,  # every file is verified as it is loaded (weight_loads)
        )
        model_args = dict(dtype_policy=dtype_policy, max_batch_size=max_batch_size, max_seq_len=max_seq_len)

        def load_or_convert(recalculate: bool, reason: str | None) -> Any:
            return load_or_convert_model_weights(hf_config, mesh_device, Path(cache_dir), recalculate=recalculate, reason=reason, **convert_args)

        def build(result: Any, loads: dict) -> "TtModel":
            return cls(hf_config, mesh_device, result.weight_config, result.entry_dir, **model_args, weight_loads=loads)

        return load_through_cache("TtModel.load", load_or_convert, build, recalculate=recalculate_weights)

    def _build_run_configs(self, previous: dict[str, Any] | None = None) -> None:
        """Fresh state (zeroed KV caches) merged with the weights: loaded from the cache entry, or taken
        from ``previous`` (an earlier prefill run config) so that weights are never loaded twice."""
        state = Model.create_state(self.hf_config, self.mesh_device, self.paged_config, dtype_policy=self.dtype_policy)
        self._tt_page_table = kv_cache.create_page_table(self.paged_config, self.mesh_device, self.page_table)
        common = dict(weight_root=self.weight_root, loaded=self._loaded)
        self._prefill_cfg = Model.run_config(self._prefill_model_config, self.weight_config, state, **common, shared=previous)
        # Decode reuses the prefill config's weights as finalized (one copy of every weight on the device).
        self._decode_cfg = Model.run_config(self._decode_model_config, self.weight_config, state, **common, shared=self._prefill_cfg)

    def reset(self) -> None:
        """Forget every user's KV (fresh zeroed caches; weights stay loaded)."""
        previous = self._prefill_cfg
        old_state = [self._tt_page_table] + [layer["mla"]["kvpe_cache"] for layer in previous["layers"]]
        self._build_run_configs(previous)
        for tensor in old_state:
            ttnn.deallocate(tensor)

    # --- external paged KV cache (vLLM) ----------------------------------------------------------

    def allocate_kv_cache(self, num_blocks: int, block_size: int = kv_cache.BLOCK_SIZE) -> list[Any]:
        """Re-create every layer's KVPE cache with ``num_blocks`` pages of ``block_size`` tokens on each device
        (all users' KV is forgotten) -> the per-layer cache tensors. Block ids of a ``page_table=`` passed to
        ``prefill`` / ``decode`` index these pages; the internal table is rebuilt over them."""
        if block_size <= 0 or block_size % ttnn.TILE_SIZE:
            raise ValueError(f"allocate_kv_cache: block_size must be a positive multiple of the tile height {ttnn.TILE_SIZE}, got {block_size}")
        users = self.paged_config.users_per_device
        if num_blocks < users:
            raise ValueError(f"allocate_kv_cache: {num_blocks} blocks for {users} users per device (need at least one each)")
        self.paged_config = kv_cache.PagedConfig(block_size=int(block_size), max_num_blocks=int(num_blocks), users_per_device=users)
        per_user = int(num_blocks) // users
        pages = torch.randperm(int(num_blocks), generator=torch.Generator().manual_seed(0))[: users * per_user]
        self.page_table = pages.to(torch.int32).reshape(users, per_user)
        self.reset()
        return self.kv_caches()

    def kv_caches(self) -> list[Any]:
        """Every layer's paged KVPE cache (device tensors ``[blocks, 1, block_size, kvpe_dim]`` per device)."""
        return [layer["mla"]["kvpe_cache"] for layer in self._prefill_cfg["layers"]]

    def _device_page_table(self, page_table: torch.Tensor) -> Any:
        """An external ``[max_batch_size, blocks]`` table on the mesh: device (r, c) gets the rows of its own
        users (``[u, blocks]``, sharded like the decode positions). Negative (unused) entries read as block 0."""
        table = torch.as_tensor(page_table)
        if table.dim() != 2 or table.shape[0] != self.max_batch_size:
            raise ValueError(f"page_table must be [max_batch_size={self.max_batch_size}, blocks], got {tuple(table.shape)}")
        if table.numel() and int(table.max()) >= self.paged_config.max_num_blocks:
            raise ValueError(f"page_table holds block {int(table.max())}; the cache has {self.paged_config.max_num_blocks} blocks")
        return ttnn.from_torch(
            table.clamp(min=0).to(torch.int32).contiguous(),
            dtype=ttnn.int32,
            layout=ttnn.ROW_MAJOR_LAYOUT,
            device=self.mesh_device,
            memory_config=ttnn.DRAM_MEMORY_CONFIG,
            mesh_mapper=ttnn.ShardTensorToMesh(self.mesh_device, dim=0),
        )

    def _call_page_table(self, page_table: torch.Tensor | None) -> tuple[Any, bool]:
        """(device table for one call, whether the call owns it): the internal table, or an external one."""
        return (self._tt_page_table, False) if page_table is None else (self._device_page_table(page_table), True)

    # --- prefill ---------------------------------------------------------------------------------

    def prefill(
        self, tokens: torch.Tensor, user_id: int, page_table: torch.Tensor | None = None, *, observer: StageObserver | None = None
    ) -> torch.Tensor:
        """User ``user_id``'s prompt ``[S]`` from position 0 -> logits ``[S, V]`` (float32); ``page_table``: an
        external ``[max_batch_size, blocks]`` table (row ``user_id`` = its blocks), default the internal one;
        ``observer``: handed every stage's output (the drill-down)."""
        padded, seq_len = self._padded_prompt(tokens, user_id)
        padded_len = int(padded.numel())
        tt_tokens = Embedding.prefill_input(padded, self.mesh_device)
        tt_table, owned = self._call_page_table(page_table)
        rope = self.rope.prefill_tensors(padded_len)
        ctx = ForwardContext.prefill(rope, tt_table, int(user_id), observer=observer)
        logits = Model.forward_prefill(tt_tokens, self._prefill_cfg, ctx)
        for t in (tt_tokens, rope["cos_matrix"], rope["sin_matrix"]) + ((tt_table,) if owned else ()):
            ttnn.deallocate(t)
        out = LMHead.logits_to_torch(logits, self.mesh_device, decode=False)[:seq_len, : self.vocab_size]
        ttnn.deallocate(logits)
        return out

    # --- decode ----------------------------------------------------------------------------------

    def decode_host_inputs(self, tokens: torch.Tensor, positions: torch.Tensor) -> tuple[Any, ...]:
        """Host (not on device) input tensors of one decode step, the same shapes every step: tokens,
        positions, cos, sin, built on the host (``ttnn.to_device`` copies each once)."""
        tokens, positions = self._decode_slots(tokens, positions, self.max_batch_size, "max_batch_size")
        tokens = torch.where(positions < 0, torch.zeros_like(tokens), tokens)
        rope = self.rope.decode_tensors(positions, on_device=False)
        return (
            Embedding.decode_input(tokens, self.mesh_device, on_device=False),
            kv_cache.decode_positions_tensor(positions, self.mesh_device, self.users_per_row, on_device=False),
            rope["cos_matrix"],
            rope["sin_matrix"],
        )

    def decode_device_step(self, device_inputs: tuple[Any, ...], page_table: Any = None, *, observer: StageObserver | None = None) -> Any:
        """Device ops only (traceable): inputs as ``decode_host_inputs`` made them, moved to the device;
        ``page_table``: a device table for this step (default the internal one)."""
        tt_tokens, position_idxs, cos, sin = device_inputs
        rope = {"cos_matrix": cos, "sin_matrix": sin, "trans_matrix": self.rope.trans_matrix}
        table = self._tt_page_table if page_table is None else page_table
        return Model.forward_decode(tt_tokens, self._decode_cfg, ForwardContext.decode(rope, table, position_idxs, observer=observer))

    def decode_output_to_torch(self, logits: Any) -> torch.Tensor:
        """Device logits of a decode step -> ``[B, V]`` float32."""
        return LMHead.logits_to_torch(logits, self.mesh_device, decode=True)[:, : self.vocab_size]

    def decode(
        self, tokens: torch.Tensor, positions: torch.Tensor, page_table: torch.Tensor | None = None, *, observer: StageObserver | None = None
    ) -> torch.Tensor:
        """One token per slot at its position (``-1``: empty slot) -> logits ``[B, V]`` (float32; an empty
        slot's row is unspecified: a device computes it, the emulator leaves it NaN); ``page_table``: an
        external ``[max_batch_size, blocks]`` table, default the internal one."""
        host_inputs = self.decode_host_inputs(tokens, positions)
        device_inputs = tuple(ttnn.to_device(t, self.mesh_device) for t in host_inputs)
        tt_table, owned = self._call_page_table(page_table)
        logits = self.decode_device_step(device_inputs, tt_table, observer=observer)
        out = self.decode_output_to_torch(logits)
        for t in (*device_inputs, logits) + ((tt_table,) if owned else ()):
            ttnn.deallocate(t)
        return out


__all__ = ["TtModel"]
