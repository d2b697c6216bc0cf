"""Multi-head Latent Attention (DeepSeek-V3) on ttnn, in the absorbed form over a paged KVPE cache.

Math (per head h; c = kv_lora_rank latent, r = rope part, n = nope part):

    q        = q_b_proj(rms_norm(q_a_proj(x)))               -> [q_nope (n) | q_rope (r)] per head
    c_kv     = rms_norm(kv_a_proj(x)[:c]);  k_rope = rope(kv_a_proj(x)[c:])    (one shared "head")
    q_lat    = q_nope @ W_uk[h]   (wkv_b1: kv_b_proj's key half, [n, c])      -> [c]
    scores   = scale * ([q_lat | rope(q_rope)] . [c_kv | k_rope])              (MQA over the KVPE)
    o_lat    = softmax(scores) @ c_kv                                           -> [c]
    v        = o_lat @ W_uv[h]    (wkv_b2: kv_b_proj's value half, [c, v_head])
    y        = o_proj(concat_h v)

which equals transformers' ``DeepseekV3Attention`` (expand k / v per head, then attend) because
``q_nope . (c_kv @ W_uk^T) = (q_nope @ W_uk) . c_kv``. The cache holds only ``[c_kv | k_rope]``
(kv_lora_rank + qk_rope_head_dim per token, bfloat8_b by default), 32 tokens per page.

Parallelism on an R x C mesh (docs/PARALLELISM.md):
- in / out: the residual ``[1, 1, T, hidden / C]``, hidden sharded over columns, replicated over rows.
- ``wq_kv_a`` (q_a_proj and kv_a_proj_with_mqa fused) is sharded on its input (hidden) dim over
  columns: partial sums, one ``all_reduce`` along the row. Norms run replicated.
- ``wq_b`` and ``wkv_b1`` are sharded by heads over columns; ``wkv_b2`` is stored twice: replicated
  (decode) and by heads (prefill, 1/C the size); ``wo`` is sharded on its output (hidden) dim, which
  yields the residual layout directly.
- prefill (one user, replicated over rows): each column attends with its heads (``flash_mla_prefill``)
  and applies its heads' ``wkv_b2``; the values (v_head wide, not kv_lora) are all-gathered over heads;
  the user's KVPE goes to the pages of the one device that holds its cache (``paged_fill_cache`` with
  ``mesh_coords``).
- decode (U users per row): q is computed head-parallel, then one all-to-all along the row trades heads
  for users, so column c attends for its u = U / C users with all heads over its own cache
  (``paged_flash_multi_latent_attention_decode``); the outputs are all-gathered over users before ``wo``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.config.op_configs import (
    AllGatherConfig,
    AllReduceConfig,
    LinearConfig,
    RMSNormConfig,
)
from deepseek_tt.config.run_config import MESH_DEVICE_KEY, FromWeightConfig
from deepseek_tt.modules.base import AbstractModule, compute_kernel_config, mesh_shape, require_key, save_weight
from deepseek_tt.modules.forward_context import ForwardContext, require_context
from deepseek_tt.modules.kv_cache import USERS_PER_ROW, PagedConfig, user_location, users_per_device
from deepseek_tt.modules.rope import halves_to_interleaved, softmax_scale

#: transformers builds q_a_layernorm / kv_a_layernorm with DeepseekV3RMSNorm's default eps, not the config's.
LATENT_NORM_EPS = 1e-6

HF_KEYS = (
    "q_a_proj.weight",
    "q_a_layernorm.weight",
    "q_b_proj.weight",
    "kv_a_proj_with_mqa.weight",
    "kv_a_layernorm.weight",
    "kv_b_proj.weight",
    "o_proj.weight",
)


def _dims(hf_config: Any) -> dict[str, int]:
    if getattr(hf_config, "q_lora_rank", None) is None:
        raise ValueError("MLA needs a q low-rank path (config q_lora_rank); q_proj-only configs are not supported")
    if getattr(hf_config, "attention_bias", False):
        raise ValueError("MLA: attention_bias=True is not supported (DeepSeek-V3 has no attention biases)")
    nope, rope_dim = int(hf_config.qk_nope_head_dim), int(hf_config.qk_rope_head_dim)
    return {
        "hidden": int(hf_config.hidden_size),
        "num_heads": int(hf_config.num_attention_heads),
        "q_lora_rank": int(hf_config.q_lora_rank),
        "kv_lora_rank": int(hf_config.kv_lora_rank),
        "qk_nope_head_dim": nope,
        "qk_rope_head_dim": rope_dim,
        "qk_head_dim": nope + rope_dim,
        "v_head_dim": int(hf_config.v_head_dim),
        "kvpe_dim": int(hf_config.kv_lora_rank) + rope_dim,
    }


def _check_mesh(hf_config: Any, mesh_device: Any) -> tuple[int, int]:
    rows, cols = mesh_shape(mesh_device)
    d = _dims(hf_config)
    if d["num_heads"] % cols:
        raise ValueError(f"MLA: {d['num_heads']} attention heads do not split over {cols} mesh columns")
    if d["hidden"] % (cols * 32):
        raise ValueError(f"MLA: hidden_size {d['hidden']} does not split into tiles over {cols} mesh columns")
    return rows, cols


def _rope_rows_to_interleaved(weight: torch.Tensor, rope_dim: int) -> torch.Tensor:
    """Reorder the output rows of a rope block ``[..., rope_dim, in]`` from halves to pairs."""
    return halves_to_interleaved(weight.transpose(-1, -2)).transpose(-1, -2)


def _user_core_grid(users: int, grid: Any) -> Any:
    """A ``CoreGrid`` of exactly ``users`` cores within the device's compute grid."""
    for x in range(min(users, int(grid.x)), 0, -1):
        if users % x == 0 and users // x <= int(grid.y):
            return ttnn.CoreGrid(y=users // x, x=x)
    raise ValueError(f"MLA: {users} decode users per device do not fit a {grid.x}x{grid.y} core grid")


def _norm_weight(weight: torch.Tensor) -> torch.Tensor:
    """An RMSNorm gamma in ttnn.rms_norm's ROW_MAJOR ``[1, 1, dim / 32, 32]`` form."""
    return weight.reshape(1, 1, -1, 32)


class MLA(AbstractModule):
    """Namespace class: MLA with the three-stage contract (see the module docstring)."""

    # --- stage 1: weights ------------------------------------------------------------------------

    @classmethod
    def convert_weights(
        cls,
        hf_config: Any,
        state_dict: Mapping[str, torch.Tensor],
        output_path: Path,
        mesh_device: Any,
        *,
        dtype_policy: DtypePolicy | str | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Convert one attention's HF weights (keys relative to ``self_attn``) and save them under ``output_path``."""
        _check_mesh(hf_config, mesh_device)
        d = _dims(hf_config)
        policy = get_dtype_policy(dtype_policy)
        weight_dtype, norm_dtype = policy.dtype("attention"), policy.dtype("norm")
        where = f"MLA weights for {output_path}"
        nh, nope, rope_dim, v = d["num_heads"], d["qk_nope_head_dim"], d["qk_rope_head_dim"], d["v_head_dim"]

        def get(key: str, shape: tuple[int, ...]) -> torch.Tensor:
            return require_key(state_dict, key, shape, where=where).to(torch.float32)

        q_a = get("q_a_proj.weight", (d["q_lora_rank"], d["hidden"]))
        kv_a = get("kv_a_proj_with_mqa.weight", (d["kvpe_dim"], d["hidden"]))
        q_b = get("q_b_proj.weight", (nh * d["qk_head_dim"], d["q_lora_rank"]))
        kv_b = get("kv_b_proj.weight", (nh * (nope + v), d["kv_lora_rank"]))
        o = get("o_proj.weight", (d["hidden"], nh * v))
        q_norm = get("q_a_layernorm.weight", (d["q_lora_rank"],))
        kv_norm = get("kv_a_layernorm.weight", (d["kv_lora_rank"],))

        if not getattr(hf_config, "rope_interleave", True):
            # rotate_half pairs (i, i + r/2); reorder those rows so that rotary_embedding_llama's
            # adjacent pairs are the same pairs.
            q_b = q_b.reshape(nh, d["qk_head_dim"], -1)
            q_b = torch.cat((q_b[:, :nope], _rope_rows_to_interleaved(q_b[:, nope:], rope_dim)), dim=1).reshape(-1, q_b.shape[-1])
            kv_a = torch.cat((kv_a[: d["kv_lora_rank"]], _rope_rows_to_interleaved(kv_a[d["kv_lora_rank"] :], rope_dim)))

        kv_b = kv_b.reshape(nh, nope + v, d["kv_lora_rank"])
        w_uk = kv_b[:, :nope, :]  # [nh, n, c]: q_nope @ w_uk -> latent query
        w_uv = kv_b[:, nope:, :].transpose(1, 2)  # [nh, c, v]: latent output @ w_uv -> value
        out = Path(output_path)

        def save(name: str, tensor: torch.Tensor, dims: tuple[int | None, int | None], dtype: Any = weight_dtype, **kw: Any):
            return save_weight(tensor, out / name, mesh_device, dtype=dtype, shard_dims=dims, **kw)

        return {
            # [hidden, q_lora + kv_lora + rope], input dim split over columns (partial sums, all-reduced).
            "wq_kv_a": {"input_tensor_b": save("wq_kv_a", torch.cat((q_a, kv_a)).T, (None, 0))},
            "q_norm": {"weight": save("q_norm", _norm_weight(q_norm), (None, None), norm_dtype, layout=ttnn.ROW_MAJOR_LAYOUT)},
            "kv_norm": {"weight": save("kv_norm", _norm_weight(kv_norm), (None, None), norm_dtype, layout=ttnn.ROW_MAJOR_LAYOUT)},
            # [q_lora, heads * qk_head_dim], heads split over columns.
            "wq_b": {"input_tensor_b": save("wq_b", q_b.T, (None, 1))},
            # [1, heads, nope, kv_lora], heads split over columns.
            "wkv_b1": {"input_tensor_b": save("wkv_b1", w_uk[None], (None, 1))},
            # [1, heads, kv_lora, v_head]: replicated for decode (each column attends with all heads for its
            # users), and split by heads for prefill (each column attends with its heads).
            "wkv_b2": {"input_tensor_b": save("wkv_b2", w_uv[None], (None, None))},
            "wkv_b2_local_heads": {"input_tensor_b": save("wkv_b2_local_heads", w_uv[None], (None, 1))},
            # [heads * v_head, hidden], output dim split over columns -> residual layout.
            "wo": {"input_tensor_b": save("wo", o.T, (None, 1))},
        }

    # --- stage 2: op configs ---------------------------------------------------------------------

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, mode: str, *, users_per_row: int = USERS_PER_ROW,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        rows, cols = _check_mesh(hf_config, mesh_device)
        d = _dims(hf_config)
        memory = ttnn.DRAM_MEMORY_CONFIG if mode == "prefill" else ttnn.L1_MEMORY_CONFIG
        # Fidelities follow the dtype policy (deepseek_tt.config.compute_kernels): the projections get the
        # fidelity of the attention weights' dtype (bfloat8_b: HiFi2, bfloat16: HiFi4).
        matmul_kernel = compute_kernel_config(dtype_policy, "attention")
        sdpa_kernel = compute_kernel_config(dtype_policy, "sdpa")
        norm_kernel = compute_kernel_config(dtype_policy, "norm")
        grid = mesh_device.compute_with_storage_grid_size()

        def linear() -> LinearConfig:
            return LinearConfig(input_tensor_b=FromWeightConfig(), memory_config=memory, compute_kernel_config=matmul_kernel)

        def norm() -> RMSNormConfig:
            return RMSNormConfig(
                epsilon=LATENT_NORM_EPS, weight=FromWeightConfig(), memory_config=memory, compute_kernel_config=norm_kernel
            )

        topology = ttnn.Topology.Linear

        def gather(dim: int) -> AllGatherConfig | None:
            # One column: nothing to gather (real ttnn's collectives want more than one device).
            return AllGatherConfig(dim=dim, cluster_axis=1, memory_config=memory, topology=topology) if cols > 1 else None

        extra: dict[str, Any] = {}
        if mode == "decode":
            # paged_update_cache reads its input height-sharded: one [32, c+r] tile row per user and core.
            u = users_per_device(users_per_row, cols)
            extra["kvpe_update_memory_config"] = ttnn.create_sharded_memory_config(
                shape=(32, d["kvpe_dim"]),
                core_grid=_user_core_grid(u, grid),
                strategy=ttnn.ShardStrategy.HEIGHT,
                use_height_and_width_as_shard_shape=True,
            )
        if mode == "prefill":
            attention = {
                "head_dim_v": d["kv_lora_rank"],
                "scale": softmax_scale(hf_config),
                "is_causal": True,
                "program_config": ttnn.SDPAProgramConfig(
                    compute_with_storage_grid_size=grid, q_chunk_size=128, k_chunk_size=128, exp_approx_mode=False
                ),
                "compute_kernel_config": sdpa_kernel,
                "memory_config": memory,
            }
        else:
            attention = {
                "head_dim_v": d["kv_lora_rank"],
                "scale": softmax_scale(hf_config),
                "program_config": ttnn.SDPAProgramConfig(
                    compute_with_storage_grid_size=grid, q_chunk_size=0, k_chunk_size=128, exp_approx_mode=False
                ),
                "compute_kernel_config": sdpa_kernel,
                "memory_config": memory,
            }
        return {
            **d,
            "mode": mode,
            "mesh_shape": (rows, cols),
            "users_per_row": int(users_per_row),
            "wq_kv_a": linear(),
            "wq_kv_a_all_reduce": (
                AllReduceConfig(cluster_axis=1, memory_config=memory, topology=topology) if cols > 1 else None
            ),
            "q_norm": norm(),
            "kv_norm": norm(),
            "wq_b": linear(),
            "wkv_b1": linear(),
            "wkv_b2": linear(),
            "wkv_b2_local_heads": linear(),
            "wo": linear(),
            "attention": attention,
            # decode: [1, U, heads/C, c+r] -> [1, u, heads, c+r] (heads gathered, users scattered)
            "q_all_to_all": (
                {"in_dim": 2, "out_dim": 1, "cluster_axis": 1, "memory_config": memory, "topology": topology}
                if cols > 1
                else None
            ),
            "values_all_gather": gather(2),  # prefill: [1, S, heads/C, v_head] -> all heads
            "users_all_gather": gather(1),  # decode: [1, u, heads, v] -> all U users of the row
            **extra,
        }

    # --- stage 3: state --------------------------------------------------------------------------

    @classmethod
    def create_state(
        cls,
        hf_config: Any,
        mesh_device: Any,
        paged_config: PagedConfig | None = None,
        *,
        caches: torch.Tensor | None = None,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        """This layer's KVPE cache ``[max_num_blocks, 1, block_size, kv_lora + rope]`` on every device:
        zeros, or ``caches`` (all devices stacked on dim 0, see ``kv_cache.pack_user_caches``)."""
        if paged_config is None:
            raise ValueError("MLA.create_state needs a paged_config (kv_cache.paged_config_for(...))")
        d = _dims(hf_config)
        rows, cols = mesh_shape(mesh_device)
        cache_dtype = get_dtype_policy(dtype_policy).dtype("kv_cache")
        shape = (paged_config.max_num_blocks, 1, paged_config.block_size, d["kvpe_dim"])
        if caches is None:
            cache = ttnn.zeros(
                shape, dtype=cache_dtype, layout=ttnn.TILE_LAYOUT, device=mesh_device, memory_config=ttnn.DRAM_MEMORY_CONFIG
            )
        else:
            expected = (rows * cols * shape[0], *shape[1:])
            if tuple(caches.shape) != expected:
                raise ValueError(f"MLA.create_state: caches have shape {tuple(caches.shape)}, expected {expected}")
            cache = ttnn.from_torch(
                caches,
                dtype=cache_dtype,
                layout=ttnn.TILE_LAYOUT,
                device=mesh_device,
                memory_config=ttnn.DRAM_MEMORY_CONFIG,
                mesh_mapper=ttnn.ShardTensorToMesh(mesh_device, dim=0),
            )
        return {MESH_DEVICE_KEY: mesh_device, "kvpe_cache": cache, "paged_config": paged_config}

    # --- forward ---------------------------------------------------------------------------------

    @classmethod
    def _project(cls, x: Any, cfg: dict[str, Any], rope_tensors: dict[str, Any]) -> tuple[Any, Any]:
        """Shared by prefill and decode: x ``[1, 1, T, hidden/C]`` -> q ``[1, heads/C, T, c + r]`` (absorbed,
        roped) and kvpe ``[1, 1, T, c + r]`` (normed latent + roped key), both bf16."""
        tokens = x.shape[2]
        heads_local = cfg["num_heads"] // cfg["mesh_shape"][1]
        q_lora, c, r = cfg["q_lora_rank"], cfg["kv_lora_rank"], cfg["qk_rope_head_dim"]
        nope, qk = cfg["qk_nope_head_dim"], cfg["qk_head_dim"]

        qkv = ttnn.linear(x, **cfg["wq_kv_a"])  # partial sums over this column's hidden slice
        if cfg["wq_kv_a_all_reduce"] is not None:
            qkv = ttnn.all_reduce(qkv, **cfg["wq_kv_a_all_reduce"])  # [1, 1, T, q_lora + c + r]
        q = ttnn.slice(qkv, [0, 0, 0, 0], [1, 1, tokens, q_lora])
        kv_nope = ttnn.slice(qkv, [0, 0, 0, q_lora], [1, 1, tokens, q_lora + c])
        k_rope = ttnn.slice(qkv, [0, 0, 0, q_lora + c], [1, 1, tokens, q_lora + c + r])
        ttnn.deallocate(qkv)

        q = ttnn.rms_norm(q, **cfg["q_norm"])
        q = ttnn.linear(q, **cfg["wq_b"])  # [1, 1, T, heads/C * qk]
        q = ttnn.reshape(q, (1, tokens, heads_local, qk))
        q = ttnn.permute(q, (0, 2, 1, 3))  # [1, heads/C, T, qk]
        q_nope = ttnn.slice(q, [0, 0, 0, 0], [1, heads_local, tokens, nope])
        q_rope = ttnn.slice(q, [0, 0, 0, nope], [1, heads_local, tokens, qk])
        ttnn.deallocate(q)
        q_nope = ttnn.linear(q_nope, **cfg["wkv_b1"])  # [1, heads/C, T, c]
        q_rope = cls._rope(q_rope, rope_tensors)
        q = ttnn.concat([q_nope, q_rope], dim=-1)
        ttnn.deallocate(q_nope)
        ttnn.deallocate(q_rope)

        kv_nope = ttnn.rms_norm(kv_nope, **cfg["kv_norm"])
        k_rope = cls._rope(k_rope, rope_tensors)
        kvpe = ttnn.concat([kv_nope, k_rope], dim=-1)
        ttnn.deallocate(kv_nope)
        ttnn.deallocate(k_rope)
        return q, kvpe

    @staticmethod
    def _rope(x: Any, rope_tensors: dict[str, Any]) -> Any:
        # Prefill layout in both modes: the rotated rows (tokens, or decode users) are on dim 2.
        return ttnn.experimental.rotary_embedding_llama(
            x, rope_tensors["cos_matrix"], rope_tensors["sin_matrix"], rope_tensors["trans_matrix"], is_decode_mode=False
        )

    @classmethod
    def _output(cls, v: Any, cfg: dict[str, Any]) -> Any:
        """``[1, T, heads, v_head]`` (all heads) -> ``[1, 1, T, hidden/C]`` through ``wo``."""
        tokens = v.shape[1]
        v = ttnn.reshape(v, (1, 1, tokens, cfg["num_heads"] * cfg["v_head_dim"]))
        return ttnn.linear(v, **cfg["wo"])

    @staticmethod
    def _prefill_attention(attention: dict[str, Any], tokens: int) -> dict[str, Any]:
        """The prefill SDPA kwargs with chunk sizes that divide ``tokens`` (the kernel walks whole chunks)."""
        program = attention.get("program_config")
        if program is None or tokens % program.q_chunk_size == 0:
            return attention
        chunk = math.gcd(tokens, program.q_chunk_size)
        program = ttnn.SDPAProgramConfig(
            compute_with_storage_grid_size=program.compute_with_storage_grid_size,
            q_chunk_size=chunk,
            k_chunk_size=chunk,
            exp_approx_mode=program.exp_approx_mode,
        )
        return {**attention, "program_config": program}

    @classmethod
    def forward_prefill(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """One user's sequence ``[1, 1, S, hidden/C]`` (S a multiple of 32, replicated over rows) ->
        ``[1, 1, S, hidden/C]``; writes the KVPE of user ``ctx.user_id`` into its pages (through
        ``ctx.page_table``) on the device that owns it."""
        ctx = require_context(ctx, "prefill", "MLA")
        user_id, rope_tensors, page_table = ctx.user_id, ctx.rope, ctx.page_table
        tokens = x.shape[2]
        if tokens % 32:
            raise ValueError(f"MLA prefill: sequence length {tokens} must be a multiple of 32 (pad it)")
        q, kvpe = cls._project(x, cfg, rope_tensors)

        cache = cfg["kvpe_cache"]
        row, col, slot = user_location(int(user_id), cfg["mesh_shape"], cfg["users_per_row"])
        kvpe = ttnn.typecast(kvpe, dtype=cache.dtype)
        ttnn.experimental.paged_fill_cache(
            cache, kvpe, page_table=page_table, batch_idx=slot, mesh_coords={ttnn.MeshCoordinate(row, col)}
        )

        latent = ttnn.transformer.flash_mla_prefill(q, kvpe, **cls._prefill_attention(cfg["attention"], tokens))
        ttnn.deallocate(q)
        ttnn.deallocate(kvpe)
        v = ttnn.linear(latent, **cfg["wkv_b2_local_heads"])  # [1, heads/C, S, v_head]
        ttnn.deallocate(latent)
        v = ttnn.permute(v, (0, 2, 1, 3))  # [1, S, heads/C, v_head]
        if cfg["values_all_gather"] is not None:
            v = ttnn.all_gather(v, **cfg["values_all_gather"])  # [1, S, heads, v_head]
        return cls._output(v, cfg)

    @classmethod
    def forward_decode(cls, x: Any, cfg: dict[str, Any], ctx: ForwardContext | None = None) -> Any:
        """One token for each of the row's U users ``[1, 1, U, hidden/C]`` -> ``[1, 1, U, hidden/C]``.

        ``ctx.positions``: int32 ``[u]`` per device (``kv_cache.decode_positions_tensor``), the position
        each user's token is written to and attends up to (inclusive); ``-1`` skips a slot.
        """
        ctx = require_context(ctx, "decode", "MLA")
        position_idxs, rope_tensors, page_table = ctx.positions, ctx.rope, ctx.page_table
        users = x.shape[2]
        if users != cfg["users_per_row"]:
            raise ValueError(f"MLA decode: input has {users} users, the config serves {cfg['users_per_row']} per row")
        users_per_device(users, cfg["mesh_shape"][1])
        q, kvpe = cls._project(x, cfg, rope_tensors)  # q [1, heads/C, U, c+r], kvpe [1, 1, U, c+r]

        cache = cfg["kvpe_cache"]
        kvpe = ttnn.permute(kvpe, (0, 2, 1, 3))  # [1, U, 1, c+r]
        if cfg["mesh_shape"][1] > 1:
            kvpe = ttnn.mesh_partition(kvpe, dim=1, cluster_axis=1)  # [1, u, 1, c+r]: this column's users
        kvpe = ttnn.to_memory_config(kvpe, cfg["kvpe_update_memory_config"])
        ttnn.experimental.paged_update_cache(cache, kvpe, update_idxs_tensor=position_idxs, page_table=page_table)
        ttnn.deallocate(kvpe)

        q = ttnn.permute(q, (0, 2, 1, 3))  # [1, U, heads/C, c+r]
        if cfg["q_all_to_all"] is not None:
            q = ttnn.experimental.all_to_all_async_generic(q, **cfg["q_all_to_all"])  # [1, u, heads, c+r]
        latent = ttnn.transformer.paged_flash_multi_latent_attention_decode(
            q, cache, page_table_tensor=page_table, cur_pos_tensor=position_idxs, **cfg["attention"]
        )  # [1, u, heads, c]
        ttnn.deallocate(q)
        latent = ttnn.permute(latent, (0, 2, 1, 3))  # [1, heads, u, c]
        v = ttnn.linear(latent, **cfg["wkv_b2"])  # [1, heads, u, v_head]
        ttnn.deallocate(latent)
        v = ttnn.permute(v, (0, 2, 1, 3))  # [1, u, heads, v_head]
        if cfg["users_all_gather"] is not None:
            v = ttnn.all_gather(v, **cfg["users_all_gather"])  # [1, U, heads, v_head]
        return cls._output(v, cfg)


__all__ = ["HF_KEYS", "LATENT_NORM_EPS", "MLA"]
