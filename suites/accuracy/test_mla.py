"""MLA (deepseek_tt.modules.mla) against transformers' DeepseekV3Attention on the same weights.

Prefill: one user's sequence; the output and the user's KVPE pages are compared. Decode: U users per
mesh row at random positions over a KVPE cache prefilled from the reference; each user's output is the
last row of the reference's causal attention over its whole sequence. Galaxy-tiny preset, emulated
1x1, 1x8 and 4x8 meshes (on real hardware only the selected mesh runs).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from transformers import DeepseekV3Config, DynamicCache
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    DeepseekV3Attention,
    DeepseekV3RotaryEmbedding,
    apply_rotary_pos_emb,
    apply_rotary_pos_emb_interleave,
)

from deepseek_tt.accuracy.checks import check_against_reference
from deepseek_tt.accuracy.metrics import pcc
from deepseek_tt.accuracy.thresholds import pcc_threshold
from deepseek_tt.backend import backend_name, ttnn
from deepseek_tt.config.mesh import format_mesh_shape
from deepseek_tt.modules import kv_cache
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.layout import residual_to_device, residual_to_torch
from deepseek_tt.modules.mla import MLA
from deepseek_tt.modules.rope import RotarySetup, halves_to_interleaved, rope_parameters
from reference_models.presets import get_preset, preset_fields
from reference_models.random_weights import random_tensor
from reference_models.state_dict_keys import layer_weight_specs
from suites.accuracy.model_lib import spread_activations

pytestmark = [pytest.mark.accuracy]

PRESET = "galaxy-tiny"
SEED = 1234
MESHES = [pytest.param((1, 1), id="1x1"), pytest.param((1, 8), id="1x8"), pytest.param((4, 8), id="4x8")]


# --- reference ---------------------------------------------------------------------------------------


class Reference:
    """A transformers attention with its rotary embedding, and the pieces the TT cache holds."""

    def __init__(self, config: DeepseekV3Config, attention: torch.nn.Module):
        self.config = config
        self.attention = attention
        self.rotary = DeepseekV3RotaryEmbedding(config)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Causal attention over one sequence ``[S, hidden]`` (positions 0..S-1) -> ``[S, hidden]``."""
        seq = x.shape[0]
        cos, sin = self.rotary(x, torch.arange(seq)[None])
        mask = torch.full((seq, seq), float("-inf")).triu(1)[None, None]
        out, _ = self.attention(x[None], position_embeddings=(cos, sin), attention_mask=mask)
        return out[0]

    @torch.no_grad()
    def latents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What transformers caches for positions 0..S-1: the normed latent ``[1, 1, S, kv_lora]`` and the
        roped key ``[1, 1, S, rope]`` (rope dims as transformers lays them out: [even | odd] halves)."""
        attn, c = self.attention, self.config.kv_lora_rank
        kv = attn.kv_a_proj_with_mqa(x[None])
        latent = attn.kv_a_layernorm(kv[..., :c])[:, None]
        k_rope = kv[..., c:][:, None]
        cos, sin = self.rotary(x, torch.arange(x.shape[0])[None])
        rotate = apply_rotary_pos_emb_interleave if self.config.rope_interleave else apply_rotary_pos_emb
        _, k_rope = rotate(k_rope, k_rope, cos, sin)
        return latent, k_rope

    @torch.no_grad()
    def latents_at(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`latents` for tokens ``x [S, hidden]`` placed at arbitrary ``positions [S]``."""
        attn, c = self.attention, self.config.kv_lora_rank
        kv = attn.kv_a_proj_with_mqa(x[None])
        latent = attn.kv_a_layernorm(kv[..., :c])[:, None]
        cos, sin = self.rotary(x, positions.reshape(1, -1))
        rotate = apply_rotary_pos_emb_interleave if self.config.rope_interleave else apply_rotary_pos_emb
        _, k_rope = rotate(kv[..., c:][:, None], kv[..., c:][:, None], cos, sin)
        return latent, k_rope

    @torch.no_grad()
    def decode_at(self, x: torch.Tensor, history: tuple[torch.Tensor, torch.Tensor], position: int) -> torch.Tensor:
        """:meth:`decode` with the new token at ``position`` (the cached latents carry their own positions)."""
        cache = DynamicCache(config=self.config)
        cache.update(*history, 0)
        cos, sin = self.rotary(x, torch.tensor([[int(position)]]))
        out, _ = self.attention(x[None, None], position_embeddings=(cos, sin), attention_mask=None, cache=cache)
        return out[0, 0]

    def kvpe(self, x: torch.Tensor, latents: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``[S, kv_lora + rope]`` as the TT cache holds it (rope part interleaved)."""
        latent, k_rope = latents if latents is not None else self.latents(x)
        return torch.cat((latent[0, 0], halves_to_interleaved(k_rope[0, 0])), dim=-1)

    @torch.no_grad()
    def decode(self, x: torch.Tensor, history: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """transformers' decode step: token ``x [hidden]`` at position L over a cache holding ``history``,
        the latents of positions 0..L-1 (``latents(...)`` cut to L) -> ``[hidden]``."""
        length = history[0].shape[-2]
        cache = DynamicCache(config=self.config)
        if length:
            cache.update(*history, 0)
        cos, sin = self.rotary(x, torch.tensor([[length]]))
        out, _ = self.attention(x[None, None], position_embeddings=(cos, sin), attention_mask=None, cache=cache)
        return out[0, 0]


def _reference(config: DeepseekV3Config) -> Reference:
    """Layer 0's attention with the weights ``build_reference_model(config, SEED)`` gives it (each random
    tensor depends only on its key and the seed), built alone: no embedding or MLP, which matters at full dims."""
    config = copy.deepcopy(config)
    config._attn_implementation = "eager"
    prefix = "model.layers.0.self_attn."
    weights = {
        key.removeprefix(prefix): random_tensor(key, spec, SEED)
        for key, spec in layer_weight_specs(config, 0).items()
        if key.startswith(prefix)
    }
    with torch.device("meta"):
        attention = DeepseekV3Attention(config, layer_idx=0)
    attention.load_state_dict(weights, assign=True)
    return Reference(config, attention.eval())


@pytest.fixture(scope="module")
def reference() -> Reference:
    return _reference(get_preset(PRESET, num_layers=1))


#: Per-token RMS of the attention inputs: down to 1e-3, where the latent norms' epsilon shows; not above 1,
#: since the attention input is always an RMSNorm's output and larger rows only make the softmax
#: arbitrarily peaky through the unnormalised rope key (ill-conditioned, not what the module does).
ATTENTION_INPUT_RMS = (1e-3, 1.0)


def _hidden(tokens: int, hidden: int, generator: torch.Generator) -> torch.Tensor:
    """Attention inputs with per-token RMS spread over :data:`ATTENTION_INPUT_RMS`. Bugs they exist to
    catch: a wrong epsilon in the q_a / kv_a latent norms, a skipped latent norm, a k_rope scaled wrongly
    (unit-RMS inputs make all rows look alike)."""
    return spread_activations(tokens, hidden, generator, ATTENTION_INPUT_RMS)


# --- device helpers ----------------------------------------------------------------------------------


@pytest.fixture
def mesh_device(request: pytest.FixtureRequest, pytestconfig: pytest.Config):
    shape = request.param
    if backend_name() == "ttnn" and tuple(shape) != tuple(pytestconfig.mesh_shape):
        pytest.skip(f"real ttnn: this run uses the {pytestconfig.mesh_shape} mesh, not {shape}")
    device = ttnn.open_mesh_device(ttnn.MeshShape(*shape))
    yield device
    ttnn.close_mesh_device(device)


def _mesh_name(mesh_device: Any) -> str:
    return format_mesh_shape(mesh_device.shape)


def _read_caches(cache: Any, mesh_device: Any) -> torch.Tensor:
    return ttnn.to_torch(cache, mesh_composer=ttnn.ConcatMeshToTensor(mesh_device, dim=0)).float()


def _build(reference: Reference, mesh_device: Any, tmp_path, mode: str, paged, caches=None, dtype_policy: str = "default") -> dict[str, Any]:
    config = reference.config
    weights = MLA.convert_weights(config, reference.attention.state_dict(), tmp_path / "mla", mesh_device, dtype_policy=dtype_policy)
    model_config = (MLA.prefill_model_config if mode == "prefill" else MLA.decode_model_config)(config, mesh_device, dtype_policy=dtype_policy)
    state = MLA.create_state(config, mesh_device, paged, caches=caches, dtype_policy=dtype_policy)
    return MLA.run_config(model_config, weights, state)


def test_reference_decode_step_equals_the_last_row_of_causal_attention(reference: Reference) -> None:
    """The decode reference (transformers' cache path) is the full-sequence reference's last row."""
    x = _hidden(77, reference.config.hidden_size, torch.Generator().manual_seed(3))
    history = tuple(lat[..., :-1, :] for lat in reference.latents(x))
    torch.testing.assert_close(reference.decode(x[-1], history), reference.forward(x)[-1], rtol=1e-4, atol=1e-5)


# --- prefill -----------------------------------------------------------------------------------------


def _run_prefill(reference: Reference, mesh_device: Any, tmp_path, seq_len: int, user_id: int, dtype_policy: str = "default"):
    generator = torch.Generator().manual_seed(seq_len + user_id)
    x = _hidden(seq_len, reference.config.hidden_size, generator)
    paged = kv_cache.paged_config_for(seq_len, mesh_cols=tuple(mesh_device.shape)[1])
    page_table = kv_cache.default_page_table(paged)
    cfg = _build(reference, mesh_device, tmp_path, "prefill", paged, dtype_policy=dtype_policy)
    rope = RotarySetup(reference.config, mesh_device)

    y = MLA.forward_prefill(
        residual_to_device(x, mesh_device, decode=False),
        cfg,
        ForwardContext.prefill(
            rope.prefill_tensors(seq_len),
            kv_cache.create_page_table(paged, mesh_device, page_table),
            user_id,
        ),
    )
    rows = tuple(mesh_device.shape)[0]
    # Every row must compute the same thing (prefill is replicated over rows).
    per_row = ttnn.to_torch(y, mesh_composer=ttnn.ConcatMesh2dToTensor(mesh_device, mesh_shape=tuple(mesh_device.shape), dims=(0, 3)))
    for row in range(1, rows):
        assert torch.equal(per_row[row], per_row[0]), f"mesh row {row} differs from row 0"
    return x, residual_to_torch(y, mesh_device, decode=False), _read_caches(cfg["kvpe_cache"], mesh_device), paged, page_table


@pytest.mark.parametrize(
    "mesh_device, seq_len, dtype_policy",
    [
        pytest.param((1, 1), 128, "default", id="1x1-128", marks=pytest.mark.quick),
        pytest.param((1, 8), 128, "default", id="1x8-128"),
        pytest.param((4, 8), 128, "default", id="4x8-128", marks=pytest.mark.quick),
        pytest.param((1, 1), 96, "default", id="1x1-96"),  # not a multiple of the 128-token SDPA chunks
        pytest.param((1, 1), 1024, "default", id="1x1-1024"),
        pytest.param((4, 8), 1024, "default", id="4x8-1024", marks=pytest.mark.slow),  # ~45 s: four replicated rows
        pytest.param((1, 1), 128, "high_precision", id="1x1-128-high_precision"),
    ],
    indirect=["mesh_device"],
)
def test_mla_prefill(reference: Reference, mesh_device: Any, seq_len: int, dtype_policy: str, tmp_path, record_result) -> None:
    rows, cols = tuple(mesh_device.shape)
    user_id = rows * kv_cache.USERS_PER_ROW - 3  # last row, last column when C > 1: not device 0
    x, out, caches, paged, page_table = _run_prefill(reference, mesh_device, tmp_path, seq_len, user_id, dtype_policy)
    mesh = _mesh_name(mesh_device)

    record = dict(seq_len=seq_len, batch=1, mesh=mesh)
    cached = kv_cache.unpack_user_cache(caches, user_id, seq_len, paged, page_table, (rows, cols))
    # Only the device that owns the user wrote pages.
    row, col, _ = kv_cache.user_location(user_id, (rows, cols))
    per_device = caches.reshape(rows * cols, -1)
    written = [i for i in range(rows * cols) if per_device[i].abs().sum() > 0]
    assert written == [row * cols + col]

    failures = []
    for module, expected, actual in (("mla", reference.forward(x), out), ("kvpe_cache", reference.kvpe(x), cached)):
        try:  # both recorded before either fails
            check_against_reference(module, "prefill", dtype_policy, expected, actual, record_result, what=f"MLA prefill {module}", **record)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


# --- decode ---------------------------------------------------------------------------------------------


@pytest.mark.quick
@pytest.mark.parametrize("mesh_device", MESHES, indirect=True)
def test_mla_decode(reference: Reference, mesh_device: Any, tmp_path, record_result) -> None:
    rows, cols = tuple(mesh_device.shape)
    users = rows * kv_cache.USERS_PER_ROW
    max_seq_len = 96  # 3 pages per user (the reference is the cost: 128 users on 4x8)
    generator = torch.Generator().manual_seed(7)
    positions = torch.randint(0, max_seq_len, (users,), generator=generator)
    positions[0] = 0  # empty history: attends only to itself
    positions[-1] = max_seq_len - 1  # last slot of the last page
    inactive = [users // 2 + 1, users - 5]  # empty decode slots (position -1): nothing may be written
    sequences = [_hidden(int(p) + 1, reference.config.hidden_size, generator) for p in positions]
    latents = [reference.latents(seq) for seq in sequences]
    full_kvpe = [reference.kvpe(seq, lat) for seq, lat in zip(sequences, latents)]
    active = [u for u in range(users) if u not in inactive]
    expected = torch.stack(
        [reference.decode(seq[-1], [lat[..., :-1, :] for lat in latent]) for seq, latent in zip(sequences, latents)]
    )

    paged = kv_cache.paged_config_for(max_seq_len, mesh_cols=cols)
    page_table = kv_cache.default_page_table(paged)
    caches = kv_cache.pack_user_caches([kvpe[:-1] for kvpe in full_kvpe], paged, page_table, (rows, cols))
    cfg = _build(reference, mesh_device, tmp_path, "decode", paged, caches=caches)
    rope = RotarySetup(reference.config, mesh_device)

    step_positions = positions.clone()
    step_positions[inactive] = -1
    x = torch.stack([seq[-1] for seq in sequences])
    y = MLA.forward_decode(
        residual_to_device(x, mesh_device, decode=True),
        cfg,
        ForwardContext.decode(
            rope.decode_tensors(step_positions),
            kv_cache.create_page_table(paged, mesh_device, page_table),
            kv_cache.decode_positions_tensor(step_positions, mesh_device),
        ),
    )
    out = residual_to_torch(y, mesh_device, decode=True)
    mesh = _mesh_name(mesh_device)
    record = dict(seq_len=max_seq_len, batch=users, mesh=mesh)

    worst_user = min(active, key=lambda u: pcc(expected[u], out[u]))
    worst_pcc = pcc(expected[worst_user], out[worst_user])
    threshold = pcc_threshold("mla", "decode")
    record_result(module="mla", mode="decode", metric="pcc_worst_user", value=worst_pcc, threshold=threshold, **record)

    caches_after = _read_caches(cfg["kvpe_cache"], mesh_device)

    def cached(user: int) -> torch.Tensor:
        return kv_cache.unpack_user_cache(caches_after, user, int(positions[user]) + 1, paged, page_table, (rows, cols))

    failures = []
    for module, prefix, expected_rows, actual_rows in (
        ("mla", "", expected[active], out[active]),
        ("kvpe_cache", "", torch.cat([full_kvpe[u] for u in active]), torch.cat([cached(u) for u in active])),
        ("kvpe_cache", "new_rows.", torch.stack([full_kvpe[u][-1] for u in active]), torch.stack([cached(u)[-1] for u in active])),
    ):
        try:  # all recorded before any fails
            check_against_reference(module, "decode", "default", expected_rows, actual_rows, record_result, metric_prefix=prefix,
                                    what=f"MLA decode {prefix}{module}", **record)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)
    assert worst_pcc >= threshold, f"MLA decode: user {worst_user} at position {int(positions[worst_user])} has PCC {worst_pcc:.5f}"
    before = caches.reshape(caches_after.shape)
    for user in inactive:
        assert not cached(user)[-1].any(), f"decode wrote the KVPE of inactive slot {user}"
        history_before = kv_cache.unpack_user_cache(before, user, int(positions[user]), paged, page_table, (rows, cols))
        assert torch.equal(cached(user)[:-1], _bfp8_like(history_before, caches_after)), f"inactive slot {user}'s history changed"


def _bfp8_like(host: torch.Tensor, device_values: torch.Tensor) -> torch.Tensor:
    """The host rows as the cache stores them (bfloat8_b), for exact comparison with read-back values."""
    from deepseek_tt.backend.emulator.numerics import round_to_dtype

    return round_to_dtype(host.float(), ttnn.bfloat8_b).to(device_values.dtype)


@pytest.mark.quick
@pytest.mark.parametrize("mesh_device", [pytest.param((1, 1), id="1x1")], indirect=True)
def test_mla_prefill_rope_not_interleaved(mesh_device: Any, tmp_path, record_result) -> None:
    """``rope_interleave=False`` (rotate_half pairs (i, i + r/2)): convert_weights reorders the rope rows so
    that rotary_embedding_llama's adjacent pairs are the same pairs; output and cache still match."""
    fields = preset_fields(PRESET)
    fields.update(rope_interleave=False, num_hidden_layers=1)
    reference = _reference(DeepseekV3Config(**fields))
    seq_len = 128
    x, out, caches, paged, page_table = _run_prefill(reference, mesh_device, tmp_path, seq_len, user_id=1)
    record = dict(seq_len=seq_len, batch=1, mesh="1x1", rope_interleave=False)
    check_against_reference("mla", "prefill", "default", reference.forward(x), out, record_result, what="MLA (rope not interleaved)", **record)
    check_against_reference("kvpe_cache", "prefill", "default", reference.kvpe(x),
                            kv_cache.unpack_user_cache(caches, 1, seq_len, paged, page_table, (1, 1)), record_result,
                            what="KVPE cache (rope not interleaved)", **record)


# --- YaRN matters ------------------------------------------------------------------------------------


@pytest.mark.quick
@pytest.mark.parametrize("mesh_device", [pytest.param((1, 1), id="1x1")], indirect=True)
def test_mla_yarn_off_moves_the_output_and_still_matches(reference: Reference, mesh_device: Any, tmp_path, record_result) -> None:
    """Same weights, YaRN removed from the config: the reference output moves (softmax-scale correction
    and interpolated frequencies), and the TT output follows it."""
    fields = preset_fields(PRESET)
    fields.update(rope_scaling=None, num_hidden_layers=1)
    plain_config = DeepseekV3Config(**fields)
    plain_config._attn_implementation = "eager"
    # A fresh module: DeepseekV3Attention fixes its softmax scale (YaRN's mscale) at construction.
    plain_attention = DeepseekV3Attention(copy.deepcopy(plain_config), layer_idx=0)
    plain_attention.load_state_dict(reference.attention.state_dict())
    plain = Reference(plain_config, plain_attention.eval())
    assert plain_attention.scaling < reference.attention.scaling
    seq_len = 128  # the two references agree only to PCC ~0.905 here (softmax scale x1.87, frequencies)
    x_on, out_on, *_ = _run_prefill(reference, mesh_device, tmp_path / "yarn", seq_len, user_id=0)
    x_off, out_off, *_ = _run_prefill(plain, mesh_device, tmp_path / "plain", seq_len, user_id=0)
    assert torch.equal(x_on, x_off)

    expected_on, expected_off = reference.forward(x_on), plain.forward(x_off)
    moved = pcc(expected_on, expected_off)
    threshold = pcc_threshold("mla", "prefill")
    assert moved < threshold, f"turning YaRN off barely changes the reference (PCC {moved:.5f}): the test shows nothing"
    check_against_reference("mla", "prefill_yarn_off", "default", expected_off, out_off, record_result, what="MLA without YaRN",
                            seq_len=seq_len, batch=1, mesh="1x1")
    assert pcc(expected_on, out_off) < threshold, "the TT output without YaRN still matches the YaRN reference"
    assert pcc(expected_off, out_on) < threshold, "the TT output with YaRN matches the reference without it"


# --- long context: RoPE / YaRN at positions across the 160K window ----------------------------------

#: Decode positions of the active users: around YaRN's original context (4K), deep inside it (32K) and at
#: the end of DeepSeek-V3's 163840-token window.
LONG_CONTEXT_POSITIONS = (4090, 4200, 32700, 33000, 160100, 163839)


def _history_positions(position: int) -> torch.Tensor:
    """Where a user's cached tokens sit: the sequence start, its middle and the last three positions, so
    both short and long relative distances enter the scores."""
    return torch.tensor([0, 1, position // 2, position - 3, position - 2, position - 1])


@pytest.mark.quick
@pytest.mark.parametrize("mesh_device", [pytest.param((1, 1), id="1x1")], indirect=True)
def test_mla_decode_long_context_rope(reference: Reference, mesh_device: Any, tmp_path, record_result) -> None:
    """One decode step at positions around 4K, 32K and 160K over a KVPE cache filled from the reference.

    Bugs it exists to catch (they leave every check below position 1024 green): YaRN's correction range
    computed without its floor / ceil, a wrong rope theta, a wrong YaRN mscale / attention factor, fp32
    angles that lose precision at large positions. The galaxy-tiny preset carries DeepSeek-V3's official
    YaRN (factor 40, original 4096, beta 32 / 1, mscale 1 / 1, theta 10000, 163840 positions).

    Each active user's cache holds 6 tokens whose latents and roped keys the reference computed at their
    true positions (0, 1, p/2, p-3, p-2, p-1); the TT decode ropes q and the new key with the RotarySetup
    tensors of the true position p. The cache is indexed compactly (slot 0..5, the new token in slot 6):
    attention is a set operation, so only the RoPE positions matter, and the emulated decode attention
    would otherwise span all p + 1 positions of every user (hundreds of GB at 160K). Checked: the output
    of every active user, and the new cache row (its rope part is the key roped at p).
    """
    config = reference.config
    assert config.max_position_embeddings >= 163840 and rope_parameters(config)["rope_type"] == "yarn"
    users = kv_cache.USERS_PER_ROW
    generator = torch.Generator().manual_seed(160)
    active = list(range(0, 2 * len(LONG_CONTEXT_POSITIONS), 2))  # every other slot; the rest are empty (-1)
    true_positions = torch.full((users,), -1)
    true_positions[active] = torch.tensor(LONG_CONTEXT_POSITIONS)
    history_len = len(_history_positions(0))

    history, expected, new_kvpe = [None] * users, {}, {}
    for user in active:
        p = int(true_positions[user])
        x = torch.randn(history_len + 1, config.hidden_size, generator=generator)
        where = torch.cat((_history_positions(p), torch.tensor([p])))
        latent, k_rope = reference.latents_at(x, where)
        kvpe = reference.kvpe(x, (latent, k_rope))
        history[user] = (x, kvpe[:-1])
        new_kvpe[user] = kvpe[-1]
        expected[user] = reference.decode_at(x[-1], (latent[..., :-1, :], k_rope[..., :-1, :]), p)

    paged = kv_cache.paged_config_for(kv_cache.BLOCK_SIZE)  # one 32-token page per user slot
    page_table = kv_cache.default_page_table(paged)
    caches = kv_cache.pack_user_caches([h[1] if h else None for h in history], paged, page_table, (1, 1))
    cfg = _build(reference, mesh_device, tmp_path, "decode", paged, caches=caches)
    slots = torch.full((users,), -1)
    slots[active] = history_len
    x = torch.stack([history[u][0][-1] if history[u] else torch.zeros(config.hidden_size) for u in range(users)])
    y = MLA.forward_decode(
        residual_to_device(x, mesh_device, decode=True),
        cfg,
        ForwardContext.decode(
            RotarySetup(config, mesh_device).decode_tensors(true_positions),
            kv_cache.create_page_table(paged, mesh_device, page_table),
            kv_cache.decode_positions_tensor(slots, mesh_device),
        ),
    )
    out = residual_to_torch(y, mesh_device, decode=True)
    caches_after = _read_caches(cfg["kvpe_cache"], mesh_device)
    written = torch.stack([kv_cache.unpack_user_cache(caches_after, u, history_len + 1, paged, page_table, (1, 1))[-1] for u in active])

    threshold, cache_threshold = pcc_threshold("mla", "decode"), pcc_threshold("kvpe_cache", "decode")
    record = dict(seq_len=max(LONG_CONTEXT_POSITIONS) + 1, batch=len(active), mesh="1x1")
    per_user = {u: pcc(expected[u], out[u]) for u in active}
    rope_rows = pcc(torch.stack([new_kvpe[u] for u in active])[:, config.kv_lora_rank :], written[:, config.kv_lora_rank :])
    for u, value in per_user.items():
        record_result(module="mla", mode="decode_long_context", metric=f"pcc_pos{int(true_positions[u])}", value=value, threshold=threshold, **record)
    record_result(module="kvpe_cache", mode="decode_long_context", metric="pcc_new_rope_rows", value=rope_rows, threshold=cache_threshold, **record)
    assert not out[[u for u in range(users) if u not in active]].any(), "empty decode slots produced output"
    for u, value in per_user.items():
        assert value >= threshold, f"MLA decode at position {int(true_positions[u])}: PCC {value:.5f} < {threshold}"
    assert rope_rows >= cache_threshold, f"rope part of the KVPE rows written at positions {LONG_CONTEXT_POSITIONS}: PCC {rope_rows:.5f} < {cache_threshold}"


# --- full DeepSeek-V3 dims -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mesh_device", [pytest.param((1, 1), id="1x1")], indirect=True)
def test_mla_full_dims(mesh_device: Any, tmp_path, record_result) -> None:
    """The real dims (128 heads, hidden 7168, q_lora 1536, kv_lora 512, rope 64) with random weights:
    prefill of 128 tokens, then one decode step of 32 users over that cache and random-length histories."""
    reference = _reference(get_preset("full", num_layers=1))
    config = reference.config
    seq_len, max_seq_len = 128, 160
    x, out, caches, paged, page_table = _run_prefill(reference, mesh_device, tmp_path / "prefill", seq_len, user_id=5)
    # _run_prefill sized the cache for seq_len; decode below builds its own.
    record = dict(seq_len=seq_len, batch=1, mesh="1x1", preset="full")
    check_against_reference("mla", "prefill", "default", reference.forward(x), out, record_result, what="full-dims MLA prefill", **record)
    check_against_reference("kvpe_cache", "prefill", "default", reference.kvpe(x),
                            kv_cache.unpack_user_cache(caches, 5, seq_len, paged, page_table, (1, 1)), record_result,
                            what="full-dims KVPE cache", **record)

    generator = torch.Generator().manual_seed(11)
    users = kv_cache.USERS_PER_ROW
    positions = torch.randint(0, max_seq_len, (users,), generator=generator)
    sequences = [_hidden(int(p) + 1, config.hidden_size, generator) for p in positions]
    latents = [reference.latents(seq) for seq in sequences]
    expected = torch.stack([reference.decode(seq[-1], [lat[..., :-1, :] for lat in latent]) for seq, latent in zip(sequences, latents)])
    history = [reference.kvpe(seq, lat)[:-1] for seq, lat in zip(sequences, latents)]
    paged = kv_cache.paged_config_for(max_seq_len)
    page_table = kv_cache.default_page_table(paged)
    cfg = _build(reference, mesh_device, tmp_path / "decode", "decode", paged, caches=kv_cache.pack_user_caches(history, paged, page_table, (1, 1)))
    y = MLA.forward_decode(
        residual_to_device(torch.stack([seq[-1] for seq in sequences]), mesh_device, decode=True),
        cfg,
        ForwardContext.decode(
            RotarySetup(config, mesh_device).decode_tensors(positions),
            kv_cache.create_page_table(paged, mesh_device, page_table),
            kv_cache.decode_positions_tensor(positions, mesh_device),
        ),
    )
    check_against_reference("mla", "decode", "default", expected, residual_to_torch(y, mesh_device, decode=True), record_result,
                            what="full-dims MLA decode", seq_len=max_seq_len, batch=users, mesh="1x1", preset="full")
