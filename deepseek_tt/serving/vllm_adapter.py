"""The model class the Tenstorrent vLLM plugin loads for DeepSeek-V3: ``DeepseekV3ForCausalLM``.

The plugin (tenstorrent/vllm, ``tt_metal`` platform) calls, in this order:

- ``get_max_tokens_all_users(model_name=, num_devices=, tt_data_parallel=, max_model_len=, max_num_seqs=)``
  (classmethod) to size its KV block pool;
- ``initialize_vllm_model(hf_config, mesh_device, max_batch_size, max_seq_len, tt_data_parallel, optimizations)``
  (classmethod): loads ``TtModel`` from ``$DEEPSEEK_V3_HF_MODEL`` with the weight cache ``$DEEPSEEK_V3_CACHE``
  (the demo's defaults when unset);
- ``allocate_kv_cache(kv_cache_shape=(num_blocks, num_kv_heads, block_size, head_size), dtype, num_layers)``:
  re-creates every layer's paged KVPE cache with vLLM's block count and block size;
- per scheduler step ``prefill_forward`` for requests joining (row i goes to slot ``empty_slots[i]``, its
  blocks are ``page_table[i]``) and ``decode_forward`` for the running batch (row i is slot i, its blocks
  ``page_table[i]``, ``start_pos[i] == -1`` for an empty slot); ``read_decode_output`` when it read
  asynchronously.

The model runs on vLLM's own page table (any physical blocks, not contiguous). Outputs: logits (host
sampling: ``[B, S, V]`` from prefill with rows past a prompt's length repeating its last logits, ``[B, 1, V]``
from decode; an empty slot's row is unspecified, NaN on the emulator) or, when ``sampling_params`` is given,
sampled token ids ``[B]`` (int64; 0 for an empty slot).

Not supported (refused with :class:`UnsupportedVllmFeature`): prefix caching (``start_pos > 0`` in
prefill), block sizes that are not a multiple of 32 (one tile of cache rows), data parallelism that does
not divide the mesh rows. Traced decode runs eagerly (the trace hooks of ``TtModel`` take no page table).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.mesh import format_mesh_shape
from deepseek_tt.demo.model_source import CACHE_DIR_ENV, MODEL_PATH_ENV, resolve_cache_dir, resolve_model_path
from deepseek_tt.generator.base import INACTIVE_POSITION
from deepseek_tt.serving.vllm_sampling import SlotSamplers, row_sampling

log = logging.getLogger("deepseek_tt.serving.vllm")

#: ``optimizations`` as the plugin names them (``--override_tt_config``) -> the model's dtype policy.
OPTIMIZATIONS = {None: "default", "performance": "default", "accuracy": "high_precision"}


class UnsupportedVllmFeature(ValueError):
    """vLLM asked for something this model cannot do (prefix caching, a mesh / block layout it cannot use)."""


def check_parallel_layout(mesh_shape: tuple[int, int], tt_data_parallel: int, max_batch_size: int) -> None:
    """Refuse a data-parallel degree or batch the mesh cannot serve, naming the constraint.

    The model shards every layer across the columns of a mesh row and serves ``max_batch_size / rows`` users
    per row, so data parallelism is over whole rows: ``tt_data_parallel`` must divide the mesh rows (each
    group of ``rows / tt_data_parallel`` rows serves ``max_batch_size / tt_data_parallel`` users).
    """
    rows, cols = (int(d) for d in mesh_shape)
    if not isinstance(tt_data_parallel, int) or tt_data_parallel < 1:
        raise UnsupportedVllmFeature(f"tt_data_parallel must be a positive integer, got {tt_data_parallel!r}")
    if rows % tt_data_parallel:
        raise UnsupportedVllmFeature(
            f"tt_data_parallel={tt_data_parallel} must divide the mesh rows ({rows} of the {format_mesh_shape((rows, cols))} mesh): "
            f"DeepSeek-V3 shards each layer across a row's {cols} columns, so data-parallel groups are whole rows"
        )
    if max_batch_size < 1 or max_batch_size % rows:
        raise UnsupportedVllmFeature(
            f"max_batch_size (max_num_seqs) {max_batch_size} must be a positive multiple of the mesh rows ({rows}): "
            "each mesh row serves the same number of users"
        )
    if (max_batch_size // rows) % cols:
        raise UnsupportedVllmFeature(
            f"max_batch_size (max_num_seqs) {max_batch_size} gives {max_batch_size // rows} users per mesh row, "
            f"which do not split over the {cols} mesh columns holding their KV caches"
        )


def _as_list(values: Any, name: str, rows: int) -> list[int]:
    if values is None:
        raise ValueError(f"{name} is required")
    out = [int(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]
    if len(out) != rows:
        raise ValueError(f"{name} has {len(out)} entries for a batch of {rows} rows")
    return out


class DeepseekV3ForCausalLM:
    """vLLM TT-backend adapter over :class:`deepseek_tt.runtime.tt_model.TtModel`."""

    model_capabilities = {
        "supports_prefix_caching": False,
        "supports_sample_on_device": True,
        "supports_async_decode": False,
        "supports_chunked_prefill": False,
    }

    def __init__(self, model: Any, *, tt_data_parallel: int = 1) -> None:
        self.model = model
        self.hf_config = model.hf_config
        self.mesh_device = model.mesh_device
        self.max_batch_size = int(model.max_batch_size)
        self.max_seq_len = int(model.max_seq_len)
        self.tt_data_parallel = int(tt_data_parallel)
        self.kv_cache: list[Any] | None = None
        self.block_size: int | None = None
        self._samplers = SlotSamplers(self.max_batch_size)
        self._warned_trace = False

    # --- construction (classmethods the plugin calls) -----------------------------------------------

    @classmethod
    def get_max_tokens_all_users(
        cls,
        model_name: str = "",
        num_devices: int = 1,
        tt_data_parallel: int = 1,
        max_model_len: int | None = None,
        max_num_seqs: int | None = None,
        **kwargs: Any,
    ) -> int:
        """KV tokens vLLM may hand out across all users: every user can reach ``max_model_len``."""
        if max_model_len is None or max_num_seqs is None:
            raise ValueError(
                "DeepseekV3ForCausalLM.get_max_tokens_all_users needs max_model_len and max_num_seqs, got "
                f"max_model_len={max_model_len}, max_num_seqs={max_num_seqs}"
            )
        return int(max_model_len) * int(max_num_seqs)

    @classmethod
    def initialize_vllm_model(
        cls,
        hf_config: Any,
        mesh_device: Any,
        max_batch_size: int,
        max_seq_len: int,
        tt_data_parallel: int = 1,
        optimizations: str | None = None,
    ) -> "DeepseekV3ForCausalLM":
        """Load the model from ``$DEEPSEEK_V3_HF_MODEL`` (weights cached under ``$DEEPSEEK_V3_CACHE``)."""
        from deepseek_tt.runtime.tt_model import TtModel
        from deepseek_tt.weights.hf_config import load_hf_config

        check_parallel_layout(tuple(mesh_device.shape), tt_data_parallel, int(max_batch_size))
        if optimizations not in OPTIMIZATIONS:
            raise UnsupportedVllmFeature(
                f"optimizations={optimizations!r}: expected one of {', '.join(repr(k) for k in OPTIMIZATIONS)}"
            )
        cache_dir = resolve_cache_dir(None)
        model_path, source = resolve_model_path(None, cache_dir, runtime="tt")
        checkpoint_config = load_hf_config(model_path)
        if hf_config is not None:
            for key in ("num_hidden_layers", "hidden_size", "vocab_size", "kv_lora_rank", "qk_rope_head_dim"):
                ours, theirs = getattr(checkpoint_config, key, None), getattr(hf_config, key, None)
                if theirs is not None and ours != theirs:
                    raise ValueError(
                        f"vLLM's hf_config has {key}={theirs} but {model_path} (${MODEL_PATH_ENV}, {source}) has {ours}"
                    )
        log.info("loading %s (%s) with weight cache %s ($%s)", model_path, source, cache_dir, CACHE_DIR_ENV)
        model = TtModel.load(
            model_path,
            mesh_device,
            cache_dir,
            dtype_policy=OPTIMIZATIONS[optimizations],
            max_batch_size=int(max_batch_size),
            max_seq_len=int(max_seq_len),
            progress=False,
        )
        return cls(model, tt_data_parallel=tt_data_parallel)

    # --- KV cache ------------------------------------------------------------------------------

    def allocate_kv_cache(self, kv_cache_shape: Sequence[int], dtype: Any, num_layers: int) -> list[Any]:
        """Re-create the paged KVPE caches as vLLM sized them -> one cache tensor per layer.

        ``kv_cache_shape``: ``(num_blocks, num_kv_heads, block_size, head_size)``; MLA caches one latent head of
        ``kv_lora_rank + qk_rope_head_dim`` values. The cache is stored in the dtype policy's KV dtype
        (bfloat8_b by default) whatever ``dtype`` vLLM names.
        """
        layers = int(self.hf_config.num_hidden_layers)
        if int(num_layers) != layers:
            raise ValueError(f"allocate_kv_cache: vLLM asks for {num_layers} layers, the model has {layers}")
        if len(kv_cache_shape) != 4:
            raise ValueError(f"kv_cache_shape must be (num_blocks, num_kv_heads, block_size, head_size), got {tuple(kv_cache_shape)}")
        num_blocks, num_kv_heads, block_size, head_size = (int(d) for d in kv_cache_shape)
        kvpe_dim = int(self.hf_config.kv_lora_rank) + int(self.hf_config.qk_rope_head_dim)
        if num_kv_heads != 1:
            raise ValueError(f"kv_cache_shape: MLA caches 1 latent KV head, vLLM asks for {num_kv_heads}")
        if head_size != kvpe_dim:
            raise ValueError(
                f"kv_cache_shape: head_size {head_size} != kv_lora_rank + qk_rope_head_dim = {kvpe_dim} (the KVPE width)"
            )
        if block_size <= 0 or block_size % ttnn.TILE_SIZE:
            raise UnsupportedVllmFeature(
                f"block_size {block_size} is not supported: the paged KVPE cache needs a multiple of {ttnn.TILE_SIZE} tokens "
                "per block (one tile of rows); run vLLM with --block-size 32 or 64"
            )
        if num_blocks * block_size < self.max_seq_len:
            raise ValueError(
                f"kv_cache_shape: {num_blocks} blocks of {block_size} tokens cannot hold one user's max_seq_len {self.max_seq_len}"
            )
        log.info("aligning the paged KVPE cache to vLLM: %d blocks of %d tokens (vLLM dtype %s)", num_blocks, block_size, dtype)
        self.kv_cache = self.model.allocate_kv_cache(num_blocks, block_size)
        self.block_size = block_size
        return self.kv_cache

    def _check_kv_cache(self, kv_cache: Any) -> None:
        if self.kv_cache is None:
            raise RuntimeError("DeepseekV3ForCausalLM: call allocate_kv_cache before prefill_forward / decode_forward")
        if kv_cache is None:
            return
        if len(kv_cache) != len(self.kv_cache) or any(a is not b for a, b in zip(kv_cache, self.kv_cache)):
            raise ValueError("kv_cache is not the list allocate_kv_cache returned (one paged cache per layer)")

    def _page_table_rows(self, page_table: Any, rows: int) -> torch.Tensor:
        table = torch.as_tensor(page_table, dtype=torch.int32)
        if table.dim() != 2 or table.shape[0] < rows:
            raise ValueError(f"page_table must be [batch >= {rows}, blocks_per_user], got {tuple(table.shape)}")
        if table.shape[1] < 1:
            raise ValueError("page_table has no block columns")
        return table

    # --- prefill -------------------------------------------------------------------------------

    def prefill_forward(
        self,
        tokens: torch.Tensor,
        prompt_lens: Any,
        page_table: Any,
        kv_cache: Any = None,
        empty_slots: Any = None,
        sampling_params: Any = None,
        start_pos: Any = None,
        enable_trace: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Prefill the joining requests -> logits ``[B, S, V]`` (host sampling) or token ids ``[B]``."""
        tokens = torch.as_tensor(tokens)
        if tokens.dim() != 2:
            raise ValueError(f"prefill_forward: tokens must be [batch, seq], got {tuple(tokens.shape)}")
        rows, seq = tokens.shape
        starts = [] if start_pos is None else [int(p) for p in (start_pos.tolist() if isinstance(start_pos, torch.Tensor) else start_pos)]
        if any(starts):
            raise UnsupportedVllmFeature(
                f"prefix caching is not supported by DeepseekV3ForCausalLM (start_pos={starts}); "
                "run vLLM without --enable-prefix-caching"
            )
        self._check_kv_cache(kv_cache)
        lengths = _as_list(prompt_lens, "prompt_lens", rows)
        slots = list(range(rows)) if empty_slots is None else _as_list(empty_slots, "empty_slots", rows)
        table = self._page_table_rows(page_table, rows)
        if any(not 0 <= s < self.max_batch_size for s in slots):
            raise ValueError(f"empty_slots {slots} must lie in [0, max_batch_size={self.max_batch_size})")
        if any(not 0 <= n <= seq for n in lengths):
            raise ValueError(f"prompt_lens {lengths} must lie in [0, {seq}] (the tokens' width)")
        vocab = int(self.model.vocab_size)
        sampled = torch.zeros(rows, dtype=torch.int64)
        logits_out = None if sampling_params is not None else torch.zeros(rows, seq, vocab)
        for row, (slot, length) in enumerate(zip(slots, lengths)):
            if length == 0:  # an empty prompt (padding row): nothing to run, zeros out
                continue
            user_table = torch.full((self.max_batch_size, table.shape[1]), -1, dtype=torch.int32)
            user_table[slot] = table[row]
            logits = self.model.prefill(tokens[row, :length].long(), slot, page_table=user_table)
            if sampling_params is None:
                logits_out[row, :length] = logits
                logits_out[row, length:] = logits[-1]
            else:
                params = row_sampling(sampling_params, row, rows)
                self._samplers.start(slot, params)
                sampled[row] = self._samplers.sample(slot, logits[-1], params)
        return sampled if sampling_params is not None else logits_out

    # --- decode --------------------------------------------------------------------------------

    def decode_forward(
        self,
        tokens: torch.Tensor,
        start_pos: Any,
        page_table: Any,
        kv_cache: Any = None,
        enable_trace: bool = False,
        read_from_device: bool = True,
        sampling_params: Any = None,
        reset_batch: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One token per slot (row i = slot i; ``start_pos[i] == -1``: empty) -> logits ``[B, 1, V]`` or
        token ids ``[B]``. With ``read_from_device=False`` the result comes back through
        :meth:`read_decode_output`. ``reset_batch`` needs no action: sampling parameters are read every call and
        each slot's random generator restarts when its request is prefilled."""
        tokens = torch.as_tensor(tokens)
        if tokens.dim() != 2 or tokens.shape[1] != 1:
            raise ValueError(f"decode_forward: tokens must be [batch, 1], got {tuple(tokens.shape)}")
        rows = tokens.shape[0]
        if rows > self.max_batch_size:
            raise ValueError(f"decode_forward: batch {rows} exceeds max_batch_size {self.max_batch_size}")
        self._check_kv_cache(kv_cache)
        if enable_trace and not self._warned_trace:
            log.warning("decode_forward: enable_trace requested; decoding eagerly (traced decode takes no external page table)")
            self._warned_trace = True
        positions = torch.full((self.max_batch_size,), INACTIVE_POSITION, dtype=torch.long)
        positions[:rows] = torch.as_tensor(_as_list(start_pos, "start_pos", rows), dtype=torch.long)
        step_tokens = torch.zeros(self.max_batch_size, dtype=torch.long)
        step_tokens[:rows] = tokens[:, 0].long()
        table = self._page_table_rows(page_table, rows)
        full_table = torch.full((self.max_batch_size, table.shape[1]), -1, dtype=torch.int32)
        full_table[:rows] = table[:rows]
        logits = self.model.decode(step_tokens, positions, page_table=full_table)[:rows]
        if sampling_params is None:
            out = logits.unsqueeze(1)
        else:
            out = torch.zeros(rows, dtype=torch.int64)
            for row in range(rows):
                if positions[row] >= 0:
                    params = row_sampling(sampling_params, row, rows)
                    out[row] = self._samplers.sample(row, logits[row], params)
        return out if read_from_device else _PendingDecode(out)

    def read_decode_output(self, tt_out: Any, async_read: bool = False) -> Any:
        """The host result of a ``decode_forward(read_from_device=False)`` (``(result, [])`` when ``async_read``)."""
        if isinstance(tt_out, _PendingDecode):
            tt_out = tt_out.result
        if not isinstance(tt_out, torch.Tensor):
            raise TypeError(f"read_decode_output: unsupported decode output {type(tt_out).__name__}")
        return (tt_out, []) if async_read else tt_out


class _PendingDecode:
    """A decode result not yet read by the caller (``read_from_device=False``)."""

    def __init__(self, result: torch.Tensor) -> None:
        self.result = result


__all__ = ["DeepseekV3ForCausalLM", "UnsupportedVllmFeature", "check_parallel_layout"]
