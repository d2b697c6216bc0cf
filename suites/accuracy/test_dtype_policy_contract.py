"""The dtype policy as a contract (deepseek_tt.config.dtype_policy): every converted weight and every KV
cache carries the dtype its policy names for its kind.

Bug this exists to catch: dtype-policy drift, a weight stored in another dtype than the policy says
(an LM head in bfloat4_b instead of bfloat8_b, a router in bf16, attention in bfloat4_b), which PCC
floors sized for quantization noise let through. The whole galaxy-tiny model (dense + MoE layer) is
converted under each policy; each weight's kind comes from its key path (:data:`WEIGHT_KIND_PATTERNS`),
and a converted tensor of no known kind fails the test, so a new weight cannot slip past the contract.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DTYPE_POLICIES, WEIGHT_KINDS, get_dtype_policy
from deepseek_tt.config.run_config import WeightRecord
from deepseek_tt.modules import kv_cache
from deepseek_tt.modules.model import Model
from deepseek_tt.weights.convert import load_or_convert_model_weights
from fixtures.options import CACHE_DIR_ENV
from suites.accuracy.model_lib import SEED, reference_model

pytestmark = [pytest.mark.accuracy, pytest.mark.quick]

_LAYER = r"layers\.\d+\."
#: Weight-config key path (list indices included) -> the policy's weight kind. Full matches only.
WEIGHT_KIND_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"embedding\.embedding\.weight", "embedding"),
    (_LAYER + r"(input_norm|post_attention_norm)\.(rms_norm|rms_norm_post_all_gather)\.weight", "norm"),
    (r"norm\.(rms_norm|rms_norm_post_all_gather)\.weight", "norm"),
    (_LAYER + r"mla\.(q_norm|kv_norm)\.weight", "norm"),
    (_LAYER + r"mla\.(wq_kv_a|wq_b|wkv_b1|wkv_b2|wkv_b2_local_heads|wo)\.input_tensor_b", "attention"),
    (_LAYER + r"mlp\.w[123]\.input_tensor_b", "dense_mlp"),
    (_LAYER + r"mlp\.shared_expert\.w[123]\.input_tensor_b", "shared_expert"),
    (_LAYER + r"mlp\.experts\.w[13]\.input_tensor_b\.\d+", "expert_gate_up"),
    (_LAYER + r"mlp\.experts\.w2\.input_tensor_b\.\d+", "expert_down"),
    (_LAYER + r"mlp\.gate\.(gate_proj|gate_proj_residual)\.input_tensor_b", "router"),
    (_LAYER + r"mlp\.gate\.e_score_correction_bias", "router"),
    (r"lm_head\.linear\.input_tensor_b", "lm_head"),
)
#: State tensors (runtime, not converted) that are KV caches; other floating-point state tensors are unknown.
KV_CACHE_PATTERN = _LAYER + r"mla\.kvpe_cache"
_FLOAT_DTYPES = ("bfloat16", "float32", "bfloat8_b", "bfloat4_b")


def weight_kind(path: str) -> str | None:
    """The weight kind of a weight-config key path, or None when no pattern claims it."""
    kinds = {kind for pattern, kind in WEIGHT_KIND_PATTERNS if re.fullmatch(pattern, path)}
    assert len(kinds) <= 1, f"{path}: claimed by several kinds {sorted(kinds)}"
    return kinds.pop() if kinds else None


def _leaves(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _leaves(value, f"{path}.{i}" if path else str(i))
    else:
        yield path, tree


def test_every_pattern_names_a_policy_kind() -> None:
    assert {kind for _, kind in WEIGHT_KIND_PATTERNS} | {"kv_cache"} == set(WEIGHT_KINDS)


def _fresh_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The session's weight cache when this session made it (the matrix's conversions are reused), else
    ``tmp_path``: a cache given by ``--cache-dir`` / ``$DEEPSEEK_V3_CACHE`` may hold older code's output."""
    if request.config.getoption("--cache-dir") or os.environ.get(CACHE_DIR_ENV):
        return tmp_path
    return request.getfixturevalue("cache_dir")


@pytest.mark.parametrize("policy", list(DTYPE_POLICIES))
def test_converted_weights_and_kv_cache_carry_the_policy_dtypes(policy: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    expected = get_dtype_policy(policy)
    config = reference_model().config
    mesh_device = ttnn.open_mesh_device(ttnn.MeshShape(1, 1))
    try:
        result = load_or_convert_model_weights(
            config, mesh_device, _fresh_cache(request, tmp_path), random_seed=SEED, dtype_policy=policy, progress=False
        )
        records = [(path, leaf) for path, leaf in _leaves(result.weight_config) if isinstance(leaf, WeightRecord)]
        assert records, "the model converted no weights"
        unknown = [path for path, _ in records if weight_kind(path) is None]
        assert not unknown, f"converted weights of no known kind (add them to WEIGHT_KIND_PATTERNS with the policy kind they follow): {unknown}"
        wrong, seen = [], set()
        for path, record in records:
            kind = weight_kind(path)
            seen.add(kind)
            dtype = ttnn.load_tensor(str(record.resolve(result.entry_dir))).dtype
            if dtype != expected.dtype(kind):
                wrong.append(f"{path} ({kind}): {dtype}, policy {policy!r} says {getattr(expected, kind)}")
        assert not wrong, "weights off the dtype policy:\n" + "\n".join(wrong)
        assert seen == set(WEIGHT_KINDS) - {"kv_cache"}, f"galaxy-tiny converted no weight of kinds {set(WEIGHT_KINDS) - {'kv_cache'} - seen}"

        state = Model.create_state(config, mesh_device, kv_cache.paged_config_for(kv_cache.BLOCK_SIZE), dtype_policy=policy)
        floats = [(path, leaf) for path, leaf in _leaves(state) if hasattr(leaf, "dtype") and leaf.dtype.name.lower() in _FLOAT_DTYPES]
        caches = [(path, t) for path, t in floats if re.fullmatch(KV_CACHE_PATTERN, path)]
        assert len(caches) == config.num_hidden_layers, f"expected one KV cache per layer, found {[p for p, _ in caches]}"
        unknown_state = [path for path, _ in floats if not re.fullmatch(KV_CACHE_PATTERN, path)]
        assert not unknown_state, f"floating-point state tensors of no known kind: {unknown_state}"
        wrong_caches = [f"{path}: {t.dtype}" for path, t in caches if t.dtype != expected.dtype("kv_cache")]
        assert not wrong_caches, f"KV caches off policy {policy!r} (kv_cache={expected.kv_cache}): {wrong_caches}"
    finally:
        ttnn.close_mesh_device(mesh_device)


def test_a_weight_of_no_known_kind_is_reported() -> None:
    """A new weight (here a made-up MLA projection) has no kind until someone names the one it follows."""
    assert weight_kind("layers.0.mla.wq_c.input_tensor_b") is None
    assert weight_kind("layers.3.mla.wo.input_tensor_b") == "attention"
    assert weight_kind("layers.1.mlp.experts.w3.input_tensor_b.7") == "expert_gate_up"
