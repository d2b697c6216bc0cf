"""The bug catalogue: realistic DeepSeek-V3 implementation bugs, as textual patches on the model library.

Each :class:`Bug` is small, the kind a careful engineer writes by accident, and is given as one or more
:class:`Edit` s (file under ``deepseek_tt/``, an exact snippet that occurs exactly once, its replacement).
``python -m deepseek_tt.accuracy.bug_catalogue`` applies them one at a time to a copy of the repository
and runs the CI accuracy selection against each: the suite must catch every one (docs/BUG_CATALOGUE.md).

A patch that no longer applies (the snippet is gone or occurs more than once) is a :class:`PatchError`
naming the bug and the file: update the catalogue with the code, never drop a bug silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: category -> what it covers (every one must hold at least one bug).
CATEGORIES: dict[str, str] = {
    "routing": "MoE gate: scores, bias, group limit, top-k, routing weights",
    "rope_yarn": "rotary frequencies, YaRN ramp and scaling, positions fed to RoPE",
    "attention_scale": "the softmax scale of MLA (qk_head_dim, YaRN mscale)",
    "kv_cache": "KVPE cache contents, write positions and placement on the mesh",
    "norms": "RMSNorm epsilon, normalisation, the latent norms of MLA",
    "residuals": "the residual adds of the decoder blocks",
    "mlp_wiring": "gate / up / down wiring, activation, the shared expert",
    "mla_wiring": "MLA projections: kv_b split, rope / nope halves",
    "expert_placement": "which device of the mesh holds which routed expert",
    "dtype_policy": "a weight or the KV cache stored in another dtype than the policy names",
}

#: Five bugs that the module checks catch and that once went through the full-model checks unseen.
WHOLE_MODEL_BUGS = (
    "routed_scaling_factor_missing",
    "topk_group_not_applied",
    "weights_from_biased_scores",
    "shared_expert_dropped",
    "attention_dropped_in_moe_layer",
)


class PatchError(ValueError):
    """A catalogue patch does not apply to the code (names the bug and the file)."""


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (which must occur exactly once in ``path``) with ``new``."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Bug:
    name: str
    description: str
    category: str
    edits: tuple[Edit, ...]

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.path for e in self.edits))


GATE = "deepseek_tt/modules/moe_gate.py"
ROPE = "deepseek_tt/modules/rope.py"
MLA = "deepseek_tt/modules/mla.py"
NORM = "deepseek_tt/modules/rms_norm.py"
BLOCK = "deepseek_tt/modules/decoder_block.py"
MLP = "deepseek_tt/modules/mlp.py"
MOE = "deepseek_tt/modules/moe.py"
EXPERTS = "deepseek_tt/modules/experts.py"
LM_HEAD = "deepseek_tt/modules/lm_head.py"


BUGS: tuple[Bug, ...] = (
    # --- routing ---------------------------------------------------------------------------------
    Bug(
        "routed_scaling_factor_missing",
        "routing weights are normalised but never multiplied by routed_scaling_factor (2.5)",
        "routing",
        (Edit(GATE, '        weights = ttnn.mul(weights, cfg["routed_scaling_factor"])\n', ""),),
    ),
    Bug(
        "topk_group_not_applied",
        "the group limit keeps all n_group groups instead of the topk_group best",
        "routing",
        (Edit(GATE, 'TopKConfig(k=hf_config.topk_group, dim=-1', 'TopKConfig(k=hf_config.n_group, dim=-1'),),
    ),
    Bug(
        "group_score_best_expert",
        "a group's score is its best biased expert score instead of the sum of its best two",
        "routing",
        (Edit(GATE, '"topk_within_group": TopKConfig(k=2,', '"topk_within_group": TopKConfig(k=1,'),),
    ),
    Bug(
        "weights_from_biased_scores",
        "routing weights gathered from the bias-corrected selection scores instead of the plain sigmoid",
        "routing",
        (
            Edit(
                GATE,
                '        ttnn.deallocate(eligible)\n        weights = ttnn.gather(scores, index=indices, **cfg["gather_scores"])\n',
                '        weights = ttnn.gather(eligible, index=indices, **cfg["gather_scores"])\n        ttnn.deallocate(eligible)\n',
            ),
        ),
    ),
    Bug(
        "correction_bias_subtracted",
        "e_score_correction_bias subtracted from the scores instead of added before expert selection",
        "routing",
        (
            Edit(
                GATE,
                'biased = ttnn.add(scores, cfg["e_score_correction_bias"], **cfg["add_bias"])',
                'biased = ttnn.sub(scores, cfg["e_score_correction_bias"], **cfg["add_bias"])',
            ),
        ),
    ),
    Bug(
        "softmax_router_scores",
        "router scores taken with softmax over the experts (DeepSeek-V2) instead of sigmoid",
        "routing",
        (Edit(GATE, 'scores = ttnn.sigmoid(logits, **cfg["sigmoid"])', 'scores = ttnn.softmax(logits, dim=-1, **cfg["sigmoid"])'),),
    ),
    # --- RoPE / YaRN -----------------------------------------------------------------------------
    Bug(
        "yarn_correction_range_unrounded",
        "YaRN correction range used without its floor / ceil (truncate defaulting to False)",
        "rope_yarn",
        (Edit(ROPE, 'if params.get("truncate", True):', 'if params.get("truncate", False):'),),
    ),
    Bug(
        "yarn_ramp_inverted",
        "YaRN blend inverted: the ramp weights the extrapolated frequencies instead of the interpolated ones",
        "rope_yarn",
        (
            Edit(
                ROPE,
                "inv_freq = (1.0 / (factor * pos_freqs)) * ramp + (1.0 / pos_freqs) * extrapolation_weight",
                "inv_freq = (1.0 / (factor * pos_freqs)) * extrapolation_weight + (1.0 / pos_freqs) * ramp",
            ),
        ),
    ),
    Bug(
        "rope_theta_wrong_key",
        "rope base read under a wrong key, falling back to Llama-3's 500000 instead of the config's rope_theta",
        "rope_yarn",
        (Edit(ROPE, 'base = float(params["rope_theta"])', 'base = float(params.get("rope_base", 500000.0))'),),
    ),
    Bug(
        "decode_rope_position_off_by_one",
        "decode cos / sin computed for position + 1 (the next token's position)",
        "rope_yarn",
        (Edit(ROPE, "        positions = positions.clamp_min(0)\n", "        positions = (positions + 1).clamp_min(0)\n"),),
    ),
    Bug(
        "k_rope_not_rotated",
        "RoPE applied to the query's rope half only; the cached key rope part is left unrotated",
        "rope_yarn",
        (Edit(MLA, "        k_rope = cls._rope(k_rope, rope_tensors)\n", ""),),
    ),
    # --- attention scale -------------------------------------------------------------------------
    Bug(
        "softmax_scale_without_mscale",
        "softmax scale without YaRN's mscale^2: mscale_all_dim read under a misspelt key, so it defaults to 0",
        "attention_scale",
        (Edit(ROPE, 'mscale_all_dim = params.get("mscale_all_dim", 0)', 'mscale_all_dim = params.get("mscale_all_dims", 0)'),),
    ),
    Bug(
        "softmax_scale_nope_dim_only",
        "softmax scale from qk_nope_head_dim alone, forgetting the rope dims of the query",
        "attention_scale",
        (
            Edit(
                ROPE,
                "scale = (hf_config.qk_nope_head_dim + hf_config.qk_rope_head_dim) ** -0.5",
                "scale = hf_config.qk_nope_head_dim ** -0.5",
            ),
        ),
    ),
    Bug(
        "decode_scale_kernel_default",
        "decode attention passes no scale: the kernel's default 1/sqrt(kv_lora + rope) replaces the MLA scale",
        "attention_scale",
        (
            Edit(
                MLA,
                '                "scale": softmax_scale(hf_config),\n                "program_config": ttnn.SDPAProgramConfig(\n'
                "                    compute_with_storage_grid_size=grid, q_chunk_size=0,",
                '                "program_config": ttnn.SDPAProgramConfig(\n'
                "                    compute_with_storage_grid_size=grid, q_chunk_size=0,",
            ),
        ),
    ),
    # --- KV cache --------------------------------------------------------------------------------
    Bug(
        "kv_cache_written_at_next_position",
        "decode writes the new token's KVPE at position + 1 (attention still reads up to position)",
        "kv_cache",
        (
            Edit(
                MLA,
                "ttnn.experimental.paged_update_cache(cache, kvpe, update_idxs_tensor=position_idxs, page_table=page_table)",
                "ttnn.experimental.paged_update_cache(cache, kvpe, update_idxs_tensor=ttnn.add(position_idxs, 1), page_table=page_table)",
            ),
        ),
    ),
    Bug(
        "kvpe_halves_swapped",
        "the KVPE cache row is written [k_rope | c_kv] instead of [c_kv | k_rope]",
        "kv_cache",
        (Edit(MLA, "kvpe = ttnn.concat([kv_nope, k_rope], dim=-1)", "kvpe = ttnn.concat([k_rope, kv_nope], dim=-1)"),),
    ),
    Bug(
        "prefill_cache_user_in_row_zero",
        "prefill places the user by its index within its row (user_id % 32): users of rows 1-3 fill row 0's pages",
        "kv_cache",
        (
            Edit(
                MLA,
                'row, col, slot = user_location(int(user_id), cfg["mesh_shape"], cfg["users_per_row"])',
                'row, col, slot = user_location(int(user_id) % cfg["users_per_row"], cfg["mesh_shape"], cfg["users_per_row"])',
            ),
        ),
    ),
    # --- norms -----------------------------------------------------------------------------------
    Bug(
        "rms_norm_eps_0_1",
        "the residual-stream RMSNorms use epsilon 0.1 instead of rms_norm_eps (1e-6)",
        "norms",
        (
            Edit(
                NORM,
                "                epsilon=hf_config.rms_norm_eps,\n                weight=FromWeightConfig(),\n                memory_config=",
                "                epsilon=0.1,\n                weight=FromWeightConfig(),\n                memory_config=",
            ),
            Edit(
                NORM,
                "                epsilon=hf_config.rms_norm_eps,\n                weight=FromWeightConfig(),\n                dtype=",
                "                epsilon=0.1,\n                weight=FromWeightConfig(),\n                dtype=",
            ),
        ),
    ),
    Bug(
        "rms_norm_not_normalising",
        "the residual-stream RMSNorm only scales by gamma: the division by the RMS is lost",
        "norms",
        (
            Edit(
                NORM,
                '        if "rms_norm" in cfg:\n            return ttnn.rms_norm(x, **cfg["rms_norm"])\n',
                '        if "rms_norm" in cfg:\n            gamma = ttnn.to_layout(cfg["rms_norm"].weight, ttnn.TILE_LAYOUT)\n'
                "            return ttnn.mul(x, ttnn.reshape(gamma, (1, 1, 1, x.shape[-1])))\n",
            ),
            Edit(
                NORM,
                '        out = ttnn.rms_norm_post_all_gather(x, gathered, **cfg["rms_norm_post_all_gather"])\n',
                '        gamma = ttnn.to_layout(cfg["rms_norm_post_all_gather"].weight, ttnn.TILE_LAYOUT)\n'
                "        out = ttnn.mul(x, ttnn.reshape(gamma, (1, 1, 1, x.shape[-1])))\n",
            ),
        ),
    ),
    Bug(
        "distributed_norm_local_stats",
        "the distributed RMSNorm normalises each column's shard by its own sum of squares (stats not gathered)",
        "norms",
        (
            Edit(
                NORM,
                '        out = ttnn.rms_norm_post_all_gather(x, gathered, **cfg["rms_norm_post_all_gather"])\n',
                '        out = ttnn.rms_norm_post_all_gather(x, stats, **cfg["rms_norm_post_all_gather"])\n',
            ),
            Edit(NORM, "        gathered = ttnn.all_gather(stats, **cfg[\"all_gather\"])\n        ttnn.deallocate(stats)\n",
                 "        gathered = ttnn.all_gather(stats, **cfg[\"all_gather\"])\n"),
        ),
    ),
    Bug(
        "q_a_norm_skipped",
        "MLA's q_a_layernorm is skipped: q_b_proj reads the raw q_a_proj output",
        "norms",
        (Edit(MLA, '        q = ttnn.rms_norm(q, **cfg["q_norm"])\n', ""),),
    ),
    Bug(
        "latent_norm_eps_typo",
        "MLA's latent norms use epsilon 1e-2 (a typo of LATENT_NORM_EPS = 1e-6)",
        "norms",
        (Edit(MLA, "LATENT_NORM_EPS = 1e-6\n", "LATENT_NORM_EPS = 1e-2\n"),),
    ),
    # --- residuals -------------------------------------------------------------------------------
    Bug(
        "residual_added_twice",
        "the FFN residual adds the block input twice: 2 h + ffn(norm(h))",
        "residuals",
        (Edit(BLOCK, "        out = cls._add(h, ffn_out, cfg)\n", "        out = cls._add(h, cls._add(h, ffn_out, cfg), cfg)\n"),),
    ),
    Bug(
        "attention_residual_missing_prefill",
        "prefill passes the attention output on without adding the residual x",
        "residuals",
        (
            Edit(
                BLOCK,
                "        return cls._ffn_residual(cls._add(x, attn_out, cfg), cfg, ctx, decode=False)\n",
                "        return cls._ffn_residual(attn_out, cfg, ctx, decode=False)\n",
            ),
        ),
    ),
    Bug(
        "attention_dropped_in_moe_layer",
        "the MoE blocks drop their attention output (h = x): attention zeroed in one layer of the tiny models",
        "residuals",
        (
            Edit(
                BLOCK,
                "        return cls._ffn_residual(cls._add(x, attn_out, cfg), cfg, ctx, decode=False)\n",
                "        h = x if cls.IS_MOE else cls._add(x, attn_out, cfg)\n        return cls._ffn_residual(h, cfg, ctx, decode=False)\n",
            ),
            Edit(
                BLOCK,
                "        return cls._ffn_residual(cls._add(x, attn_out, cfg), cfg, ctx, decode=True)\n",
                "        h = x if cls.IS_MOE else cls._add(x, attn_out, cfg)\n        return cls._ffn_residual(h, cfg, ctx, decode=True)\n",
            ),
        ),
    ),
    # --- MLP wiring ------------------------------------------------------------------------------
    Bug(
        "mlp_gate_up_swapped",
        "dense MLP / shared expert: gate_proj and up_proj swapped at conversion (SiLU on the up branch)",
        "mlp_wiring",
        (Edit(MLP, '(("w1", gate, 1), ("w3", up, 1), ("w2", down, 0))', '(("w1", up, 1), ("w3", gate, 1), ("w2", down, 0))'),),
    ),
    Bug(
        "expert_silu_on_up",
        "routed experts: mul operands swapped, so the fused SiLU applies to up instead of gate",
        "mlp_wiring",
        (Edit(EXPERTS, 'activated = ttnn.mul(gate, up, **cfg["mul"])', 'activated = ttnn.mul(up, gate, **cfg["mul"])'),),
    ),
    Bug(
        "shared_expert_dropped",
        "the MoE output is the routed experts only; the shared expert's output is discarded",
        "mlp_wiring",
        (
            Edit(
                MOE,
                '        out = ttnn.add(routed, shared, **cfg["add_shared"])\n        ttnn.deallocate(routed)\n',
                "        out = routed\n",
            ),
        ),
    ),
    # --- MLA wiring ------------------------------------------------------------------------------
    Bug(
        "kv_b_split_dim_major",
        "kv_b_proj split as [nope + v, heads, c] (dim-major) instead of [heads, nope + v, c]",
        "mla_wiring",
        (
            Edit(
                MLA,
                'kv_b = kv_b.reshape(nh, nope + v, d["kv_lora_rank"])',
                'kv_b = kv_b.reshape(nope + v, nh, d["kv_lora_rank"]).transpose(0, 1)',
            ),
        ),
    ),
    # --- expert placement ------------------------------------------------------------------------
    Bug(
        "expert_mapping_off_by_one_device",
        "the dispatch mapping sends expert e to the device after the one holding it (off by one column)",
        "expert_placement",
        (
            Edit(
                MOE,
                "mapping = torch.eye(devices, dtype=torch.int32).repeat_interleave(per_device, dim=0)",
                "mapping = torch.eye(devices, dtype=torch.int32).roll(1, dims=1).repeat_interleave(per_device, dim=0)",
            ),
        ),
    ),
    Bug(
        "experts_stored_column_major",
        "expert weights placed column-major (device d at row d % R, column d // R) while dispatch is row-major",
        "expert_placement",
        (
            Edit(
                EXPERTS,
                'f"{device * per_device + first + j}.{hf_name}.weight"',
                'f"{((device % cols) * rows + device // cols) * per_device + first + j}.{hf_name}.weight"',
            ),
        ),
    ),
    # --- dtype policy ----------------------------------------------------------------------------
    Bug(
        "lm_head_bfloat4",
        "LM head stored with the expert gate/up kind (bfloat4_b) instead of lm_head (bfloat8_b)",
        "dtype_policy",
        (Edit(LM_HEAD, 'dtype=get_dtype_policy(dtype_policy).dtype("lm_head")', 'dtype=get_dtype_policy(dtype_policy).dtype("expert_gate_up")'),),
    ),
    Bug(
        "shared_expert_bfloat4",
        "shared expert uses the routed experts' gate/up kind (bfloat4_b, LoFi) instead of shared_expert",
        "dtype_policy",
        (Edit(MLP, 'WEIGHT_KIND = "shared_expert"', 'WEIGHT_KIND = "expert_gate_up"'),),
    ),
    Bug(
        "kv_cache_bfloat4",
        "the KVPE cache allocated with the expert gate/up kind (bfloat4_b) instead of kv_cache (bfloat8_b)",
        "dtype_policy",
        (Edit(MLA, 'cache_dtype = get_dtype_policy(dtype_policy).dtype("kv_cache")', 'cache_dtype = get_dtype_policy(dtype_policy).dtype("expert_gate_up")'),),
    ),
    Bug(
        "router_bfloat16",
        "router weight and correction bias stored in the norm kind (bfloat16) instead of router (float32)",
        "dtype_policy",
        (Edit(GATE, 'dtype = get_dtype_policy(dtype_policy).dtype("router")', 'dtype = get_dtype_policy(dtype_policy).dtype("norm")'),),
    ),
)

BUGS_BY_NAME: dict[str, Bug] = {bug.name: bug for bug in BUGS}


def get_bug(name: str) -> Bug:
    """A bug by name; ``KeyError`` naming the known bugs otherwise."""
    try:
        return BUGS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown bug {name!r}; `python -m deepseek_tt.accuracy.bug_catalogue --list` lists them") from None


def patched_texts(bug: Bug, root: Path) -> dict[str, tuple[str, str]]:
    """``{path: (original, patched)}`` for every file the bug touches under ``root``, without writing.

    Raises :class:`PatchError` naming the bug and the file when a file is missing, an ``old`` snippet does
    not occur exactly once, or an edit leaves the file unchanged."""
    texts: dict[str, tuple[str, str]] = {}
    for edit in bug.edits:
        path = Path(root) / edit.path
        if edit.path not in texts:
            if not path.is_file():
                raise PatchError(f"bug {bug.name}: {edit.path} does not exist under {root}")
            original = path.read_text()
            texts[edit.path] = (original, original)
        original, current = texts[edit.path]
        count = current.count(edit.old)
        if count != 1:
            first_line = edit.old.strip().splitlines()[0] if edit.old.strip() else repr(edit.old)
            raise PatchError(
                f"bug {bug.name}: {edit.path}: the snippet {first_line!r} occurs {count} times (expected exactly once); "
                "update the catalogue (deepseek_tt/accuracy/bugs.py) to the current code"
            )
        patched = current.replace(edit.old, edit.new)
        if patched == current:
            raise PatchError(f"bug {bug.name}: {edit.path}: the edit changes nothing")
        texts[edit.path] = (original, patched)
    return texts


def apply_bug(bug: Bug, root: Path) -> list[Path]:
    """Apply ``bug`` to the tree under ``root`` (a copy of the repository!); returns the files written."""
    texts = patched_texts(bug, root)
    written = []
    for rel, (_, patched) in texts.items():
        path = Path(root) / rel
        path.write_text(patched)
        written.append(path)
    return written


__all__ = ["BUGS", "BUGS_BY_NAME", "CATEGORIES", "WHOLE_MODEL_BUGS", "Bug", "Edit", "PatchError", "apply_bug", "get_bug", "patched_texts"]
