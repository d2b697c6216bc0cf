"""The accuracy matrix: module x mode x seq_len x users x mesh x dtype policy x weights (docs/DESIGN.md section 5.3).

A case's id reads ``mla-decode-seq1-users32-mesh4x8-bfp8-random``. Cases sharing a *run* (mode, seq_len,
mesh, policy, weights) share one pass over the model, computed once per session by :func:`run_for`:

- weights ``random``: galaxy-tiny (1 dense + 1 MoE layer) with the random weights of
  ``suites.accuracy.model_lib`` (the TT side converts the same values through the weight cache);
  ``checkpoint``: the ``model_path`` fixture (the embedded trained model by default).
- prefill (one user, ``seq_len`` random tokens): the reference runs with hooks recording every stage's
  input and output; every TT module then runs *in isolation* on the reference's input of its stage (so a
  module is judged on its own error, not the accumulation before it), through the model's own run config;
  ``model`` runs the whole TT model (its drill-down table comes with a failure).
- decode (one token for each of ``32 * rows`` users at positions up to 63): per-layer KVPE caches are
  filled from the reference (as ``test_model`` does), then each module's decode forward runs on the
  reference's inputs of that step; ``model`` runs one full decode step.

``pipelined_model`` cases (meshes with more than one row) run the row-pipelined model (``--generator pp``,
``runtime.pipelined_model``: one stage per mesh row) through its facade, and are judged with the ``model``
thresholds. The modules inside a stage run the same code as on a ``1 x C`` mesh, so only the whole model
is a case: prefill logits (the user sits in the last micro-batch) and decode logits of every user (its
stages' KVPE caches filled from the reference as above, each micro-batch through every stage).
Only ``checkpoint`` weights (the embedded trained model: 4 layers, one per stage on 4 rows; the same model
and thresholds as the batched ``model`` cases): random galaxy-tiny needs at least 4 layers for 4 stages, and
the ``model`` thresholds are calibrated on its 2-layer cut; on 4 layers the batched model itself measures
relative error 0.197 and top-1 0.69 (prefill 128, bfp8, 4x8), as does the pipelined one (docs/PARALLELISM.md).
Random weights under pp: ``test_pipelined_model.py`` (PCC, and bit for bit the batched model on one row's submesh).

Thresholds come from ``deepseek_tt.accuracy.thresholds``; every value is a result row.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek_tt.accuracy.drilldown import INPUT_SUFFIX, Drilldown, TtStageRecorder, capture_reference, compare_stages, stage_name
from deepseek_tt.accuracy.checks import compare
from deepseek_tt.config.mesh import format_mesh_shape
from deepseek_tt.modules import kv_cache
from deepseek_tt.modules.base import mesh_shape
from deepseek_tt.modules.decoder_block import block_for_layer
from deepseek_tt.modules.embedding import Embedding
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.layout import residual_to_device, residual_to_torch
from deepseek_tt.modules.lm_head import LMHead
from deepseek_tt.modules.mla import MLA
from deepseek_tt.modules.model import Model
from deepseek_tt.modules.rms_norm import DistributedRMSNorm
from deepseek_tt.modules.rope import RotarySetup
from deepseek_tt.weights.convert import load_or_convert_model_weights
from fixtures.options import MODEL_PATH_ENV
from reference_models.embedded import embedded_model_path
from reference_models.reference import get_final_norm, get_moe
from suites.accuracy.model_lib import token_scales

POLICY_IDS = {"default": "bfp8", "high_precision": "bf16"}
MESHES = ((1, 1), (4, 8))
WEIGHTS = ("random", "checkpoint")
PREFILL_LENGTHS = (128, 1024)
DECODE_MAX_POSITION = 63
#: Modules of the matrix: (name, modes). ``rms_norm`` is the final (distributed) norm.
MODULES = ("embedding", "mla", "mlp", "moe", "decoder_block", "moe_decoder_block", "rms_norm", "lm_head", "model")
#: The row-pipelined model (``--generator pp``), a case on meshes with more than one row.
PIPELINED = "pipelined_model"
#: Module -> threshold-table key (``decoder_block`` on trained weights uses the "real" anchor).
THRESHOLD_KEY = {"rms_norm": "distributed_rms_norm", PIPELINED: "model"}


@dataclass(frozen=True)
class Case:
    module: str
    mode: str
    seq_len: int
    users: int
    mesh: tuple[int, int]
    policy: str
    weights: str

    @property
    def id(self) -> str:
        return (f"{self.module}-{self.mode}-seq{self.seq_len}-users{self.users}-mesh{format_mesh_shape(self.mesh)}-"
                f"{POLICY_IDS[self.policy]}-{self.weights}")

    @property
    def run_key(self) -> tuple:
        return (self.mode, self.seq_len, self.mesh, self.policy, self.weights, self.module == PIPELINED)

    @property
    def quick(self) -> bool:
        """The CI selection: 1x1, bfp8, prefill 128 (random and checkpoint weights) and random decode; the trained
        checkpoint's prefill 128 in bf16 too (without bfp8's noise the full-model checks see a wrong routing
        weight, which moves the bfp8 logits by less than their own quantization error); pp (4x8): bfp8 prefill
        128 and decode."""
        if self.module == PIPELINED:
            return self.policy == "default" and self.seq_len in (1, 128)
        if self.mesh != (1, 1):
            return False
        if self.policy != "default":
            return self.weights == "checkpoint" and self.mode == "prefill" and self.seq_len == 128
        return (self.mode == "prefill" and self.seq_len == 128) or (self.mode == "decode" and self.weights == "random")

    def threshold_module(self) -> str:
        """The thresholds-table key of this case's module."""
        key = THRESHOLD_KEY.get(self.module, self.module)
        if key == "decoder_block" and self.weights == "checkpoint":
            key = "decoder_block_real"
        return key


def matrix_cases(meshes: tuple[tuple[int, int], ...] = MESHES) -> list[Case]:
    """Every case, grouped by run (so each run is computed once, by its first case)."""
    cases = []
    for weights in WEIGHTS:
        for mesh in meshes:
            for policy in POLICY_IDS:
                for seq_len in PREFILL_LENGTHS:
                    cases += [Case(m, "prefill", seq_len, 1, mesh, policy, weights) for m in MODULES]
                cases += [Case(m, "decode", 1, kv_cache.USERS_PER_ROW * mesh[0], mesh, policy, weights) for m in MODULES]
                if mesh[0] > 1 and weights == "checkpoint":
                    cases += [Case(PIPELINED, "prefill", seq_len, 1, mesh, policy, weights) for seq_len in PREFILL_LENGTHS]
                    cases.append(Case(PIPELINED, "decode", 1, kv_cache.USERS_PER_ROW * mesh[0], mesh, policy, weights))
    return cases


# --- one run: every module's PCCs for a (mode, seq_len, mesh, policy, weights) ----------------------


@dataclass
class RunResult:
    """Per module: list of (stage, metrics of ``checks.compare``) measured in this run; the model's drill-down."""

    values: dict[str, list[tuple[str, dict[str, float]]]] = field(default_factory=dict)
    drilldown: Drilldown | None = None
    error: BaseException | None = None
    #: ``module/stage`` -> digest of the TT output's float32 bytes (the bit-identity test compares them)
    digests: dict[str, str] = field(default_factory=dict)

    def add(self, module: str, stage: str, expected: torch.Tensor, actual: torch.Tensor, *, logits: bool = False) -> None:
        self.values.setdefault(module, []).append((stage, compare(expected, actual, logits=logits)))
        self.digests[f"{module}/{stage}"] = tensor_digest(actual)


def tensor_digest(t: torch.Tensor) -> str:
    """Short sha256 of a tensor's values as contiguous float32 bytes (equal iff bit-identical, in practice)."""
    return hashlib.sha256(t.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()[:20]


_RUNS: dict[tuple, RunResult] = {}


def _module_of(stage_sub: str, layer: int | None, config: Any) -> str:
    if stage_sub == "block":
        return "moe_decoder_block" if block_for_layer(config, layer).IS_MOE else "decoder_block"
    return {"attention": "mla", "norm": "rms_norm", "logits": "lm_head"}.get(stage_sub, stage_sub)


def _models(case: Case, request: pytest.FixtureRequest) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(reference model, keyword arguments of ``load_or_convert_model_weights`` naming the same weights)."""
    if case.weights == "random":
        from suites.accuracy.model_lib import SEED, reference_model

        return reference_model(), {"random_seed": SEED}
    given = request.config.getoption("--model-path") or os.environ.get(MODEL_PATH_ENV)
    if not given:
        try:
            embedded_model_path()
        except FileNotFoundError as exc:
            pytest.skip(f"checkpoint weights: no trained model ({exc}); pass --model-path")
    model_path = request.getfixturevalue("model_path")
    return request.getfixturevalue("reference_model"), {"model_path": Path(model_path)}


def _configs(case: Case, reference: torch.nn.Module, source: dict[str, Any], mesh_device: Any, cache_dir: Path, paged, page_table, caches=None):
    """(run config, the page table on the device)."""
    config = reference.config
    result = load_or_convert_model_weights(config, mesh_device, cache_dir, dtype_policy=case.policy, progress=False, **source)
    state = Model.create_state(config, mesh_device, paged, caches=caches, dtype_policy=case.policy)
    model_config = (Model.prefill_model_config if case.mode == "prefill" else Model.decode_model_config)(
        config, mesh_device, dtype_policy=case.policy
    )
    cfg = Model.run_config(model_config, result.weight_config, state, weight_root=result.entry_dir)
    return cfg, kv_cache.create_page_table(paged, mesh_device, page_table)


@torch.no_grad()
def _reference_moe(reference: torch.nn.Module, layer: int, x: torch.Tensor) -> torch.Tensor:
    """The reference MoE of ``layer`` on ``x`` [tokens, hidden] as the TT module receives it (rounded to
    bf16, the residual's device dtype). Routing is discontinuous: on the reference's own fp32 input a token
    whose top-k is a near tie can pick other experts than on the rounded one, an input difference and not
    the module's error (``test_moe`` feeds both sides the same bf16 input for the same reason)."""
    dtype = next(reference.parameters()).dtype
    return get_moe(reference, layer)(x.to(torch.bfloat16).to(dtype)[None])[0].to(x.dtype)


def _isolated(result: RunResult, cfg: dict[str, Any], captured: dict[str, torch.Tensor], config: Any, mesh_device: Any,
              ctx: ForwardContext, embedding_input: Any, reference: torch.nn.Module) -> None:
    """Every TT module on the reference's input of its stage (``ctx``: the run's context, without an
    observer); ``captured`` rows are tokens (prefill) or users. The MoE's expected output is the reference
    MoE's on that input as the device holds it (:func:`_reference_moe`). The final norm's input is rescaled
    per token and the reference's final norm gives its expected output."""
    decode = ctx.is_decode
    def dev(x: torch.Tensor) -> Any:
        return residual_to_device(x, mesh_device, decode=decode)

    def back(t: Any) -> torch.Tensor:
        return residual_to_torch(t, mesh_device, decode=decode)

    fwd = "forward_decode" if decode else "forward_prefill"
    result.add("embedding", "embedding", captured["embedding"], back(getattr(Embedding, fwd)(embedding_input, cfg["embedding"], ctx)))
    for i, (block, layer_cfg) in enumerate(zip(cfg["blocks"], cfg["layers"])):
        layer_ctx = ctx.at_layer(i)
        attn = stage_name("attention", i)
        out = getattr(MLA, fwd)(dev(captured[attn + INPUT_SUFFIX]), layer_cfg["mla"], layer_ctx)
        result.add("mla", attn, captured[attn], back(out))
        ffn_name = block.FFN_STAGE
        ffn = stage_name(ffn_name, i)
        ffn_input = captured[ffn + INPUT_SUFFIX]
        out = getattr(block.ffn(), fwd)(dev(ffn_input), layer_cfg["mlp"], layer_ctx)
        ffn_expected = _reference_moe(reference, i, ffn_input) if block.IS_MOE else captured[ffn]
        result.add(ffn_name, ffn, ffn_expected, back(out))
        blk = stage_name("block", i)
        out = getattr(block, fwd)(dev(captured[blk + INPUT_SUFFIX]), layer_cfg, layer_ctx)
        result.add("moe_decoder_block" if block.IS_MOE else "decoder_block", blk, captured[blk], back(out))
    # The final norm on its captured input with every token rescaled (RMS spread over 1e-3..1e2): a norm
    # that does not normalise, or a wrong epsilon, cannot hide behind the residual's narrow spread of RMS.
    norm_input = captured["norm" + INPUT_SUFFIX]
    norm_input = norm_input * token_scales(norm_input.shape[0], torch.Generator().manual_seed(norm_input.shape[0]))
    with torch.no_grad():
        norm_expected = get_final_norm(reference)(norm_input)
    out = getattr(DistributedRMSNorm, fwd)(dev(norm_input), cfg["norm"], ctx)
    result.add("rms_norm", "norm", norm_expected, back(out))
    logits = LMHead.logits_to_torch(getattr(LMHead, fwd)(dev(captured["logits" + INPUT_SUFFIX]), cfg["lm_head"], ctx), mesh_device, decode=decode)
    result.add("lm_head", "logits", captured["logits"], logits[:, : config.vocab_size])


@torch.no_grad()
def _prefill_run(case: Case, reference: torch.nn.Module, source: dict, mesh_device: Any, cache_dir: Path) -> RunResult:
    config = reference.config
    result = RunResult()
    tokens = torch.randint(0, config.vocab_size, (case.seq_len,), generator=torch.Generator().manual_seed(case.seq_len))
    with capture_reference(reference, record_inputs=True) as expected:
        reference(input_ids=tokens[None])
    rows, cols = mesh_shape(mesh_device)
    paged = kv_cache.paged_config_for(case.seq_len, mesh_cols=cols)
    page_table = kv_cache.default_page_table(paged)
    cfg, tt_table = _configs(case, reference, source, mesh_device, cache_dir, paged, page_table)
    rope = RotarySetup(config, mesh_device)
    ctx = ForwardContext.prefill(rope.prefill_tensors(case.seq_len), tt_table, 0)
    recorder = TtStageRecorder(mesh_device)
    out = Model.forward_prefill(Embedding.prefill_input(tokens, mesh_device), cfg, replace(ctx, observer=recorder))
    logits = LMHead.logits_to_torch(out, mesh_device, decode=False)[:, : config.vocab_size]
    result.add("model", "logits", expected["logits"], logits, logits=True)
    result.drilldown = compare_stages(expected, recorder.captured, case.policy, length=case.seq_len)
    _isolated(result, cfg, expected, config, mesh_device, ctx, Embedding.prefill_input(tokens, mesh_device), reference)
    return result


@dataclass
class DecodeReference:
    """One decode step of ``users`` users at ``positions`` on the reference, and every layer's KVPE before it."""

    positions: torch.Tensor  # [users]
    tokens: torch.Tensor  # [users]: each user's token at its position
    expected: dict[str, torch.Tensor]  # stage -> [users, ...] at each user's position
    kvpe: list[list[torch.Tensor]]  # [layer][user] -> [positions[user], kvpe_dim]


def _decode_reference(reference: torch.nn.Module, users: int) -> DecodeReference:
    from reference_models.reference import get_layer, get_rotary_embedding
    from suites.accuracy.model_lib import reference_kvpe

    config = reference.config
    generator = torch.Generator().manual_seed(77)
    positions = torch.randint(0, DECODE_MAX_POSITION + 1, (users,), generator=generator)
    positions[0], positions[-1] = 0, DECODE_MAX_POSITION
    # One batched reference forward: user u's sequence is row u's first positions[u] + 1 tokens (the
    # rest is right padding, invisible to those positions under the causal mask).
    batch = torch.randint(0, config.vocab_size, (users, DECODE_MAX_POSITION + 1), generator=generator)
    with capture_reference(reference, record_inputs=True, row=None) as captured:
        reference(input_ids=batch)
    rows_of_users = torch.arange(users)
    expected = {stage: value[rows_of_users, positions] for stage, value in captured.items()}
    rotary = get_rotary_embedding(reference)
    kvpe = [
        [reference_kvpe(get_layer(reference, i).self_attn, rotary, captured[stage_name("attention", i) + INPUT_SUFFIX][u])[: int(p)]
         for u, p in enumerate(positions)]
        for i in range(config.num_hidden_layers)
    ]
    return DecodeReference(positions, batch[rows_of_users, positions], expected, kvpe)


@torch.no_grad()
def _decode_run(case: Case, reference: torch.nn.Module, source: dict, mesh_device: Any, cache_dir: Path) -> RunResult:
    config = reference.config
    result = RunResult()
    rows, cols = mesh_shape(mesh_device)
    ref = _decode_reference(reference, case.users)
    positions, expected, kvpe = ref.positions, ref.expected, ref.kvpe

    paged = kv_cache.paged_config_for(DECODE_MAX_POSITION + 1, mesh_cols=cols)
    page_table = kv_cache.default_page_table(paged)
    caches = [kv_cache.pack_user_caches(kvpe[i], paged, page_table, (rows, cols)) for i in range(config.num_hidden_layers)]
    cfg, tt_table = _configs(case, reference, source, mesh_device, cache_dir, paged, page_table, caches=caches)
    rope = RotarySetup(config, mesh_device)
    tokens = ref.tokens
    ctx = ForwardContext.decode(rope.decode_tensors(positions), tt_table, kv_cache.decode_positions_tensor(positions, mesh_device))
    recorder = TtStageRecorder(mesh_device)
    out = Model.forward_decode(Embedding.decode_input(tokens, mesh_device), cfg, replace(ctx, observer=recorder))
    logits = LMHead.logits_to_torch(out, mesh_device, decode=True)[:, : config.vocab_size]
    result.add("model", "logits", expected["logits"], logits, logits=True)
    result.drilldown = compare_stages(expected, recorder.captured, case.policy)
    # The isolated decode steps rewrite each user's KVPE at its position with the same values; harmless.
    _isolated(result, cfg, expected, config, mesh_device, ctx, Embedding.decode_input(tokens, mesh_device), reference)
    return result


def _load_pipelined(case: Case, reference: torch.nn.Module, source: dict, mesh_device: Any, cache_dir: Path, max_seq_len: int) -> Any:
    """The row-pipelined model of the case's weights (its own cache entry beside the batched model's)."""
    from deepseek_tt.runtime.pipelined_model import PipelinedTtModel

    common = dict(dtype_policy=case.policy, max_seq_len=max_seq_len, progress=False)
    if "random_seed" in source:
        return PipelinedTtModel.load(None, mesh_device, cache_dir, random_weights=True, hf_config=reference.config,
                                     seed=source["random_seed"], **common)
    return PipelinedTtModel.load(source["model_path"], mesh_device, cache_dir, **common)


@torch.no_grad()
def _pipelined_prefill_run(case: Case, reference: torch.nn.Module, source: dict, mesh_device: Any, cache_dir: Path) -> RunResult:
    config = reference.config
    result = RunResult()
    tokens = torch.randint(0, config.vocab_size, (case.seq_len,), generator=torch.Generator().manual_seed(case.seq_len))
    expected = reference(input_ids=tokens[None]).logits[0].float()
    tt = _load_pipelined(case, reference, source, mesh_device, cache_dir, case.seq_len)
    user = tt.max_batch_size - 1  # the last micro-batch: its own page range on every stage
    result.add(PIPELINED, "logits", expected, tt.prefill(tokens, user), logits=True)
    return result


@torch.no_grad()
def _pipelined_decode_run(case: Case, reference: torch.nn.Module, source: dict, mesh_device: Any, cache_dir: Path) -> RunResult:
    from deepseek_tt.backend import ttnn

    result = RunResult()
    rows, cols = mesh_shape(mesh_device)
    ref = _decode_reference(reference, case.users)
    tt = _load_pipelined(case, reference, source, mesh_device, cache_dir, DECODE_MAX_POSITION + 1)
    assert tt.max_batch_size == case.users, f"the pipelined model serves {tt.max_batch_size} users, the case {case.users}"
    for layer, cache in enumerate(tt.kv_caches()):
        packed = kv_cache.pack_user_caches(ref.kvpe[layer], tt.paged_config, tt.page_table, (rows, cols), tt.users_per_row)
        # Batched layout: device (m, c) holds micro-batch m's users of column c. A stage's device c holds the
        # pages of every micro-batch, micro-batch m's at page offset m * blocks: the same blocks, column-major.
        packed = packed.reshape(rows, cols, -1, *packed.shape[1:]).transpose(0, 1).reshape(packed.shape)
        host = ttnn.from_torch(packed, dtype=cache.dtype, layout=ttnn.TILE_LAYOUT, mesh_mapper=ttnn.ShardTensorToMesh(cache.device(), dim=0))
        ttnn.copy_host_to_device_tensor(host, cache)
    result.add(PIPELINED, "logits", ref.expected["logits"], tt.decode(ref.tokens, ref.positions), logits=True)
    return result


def run_for(case: Case, request: pytest.FixtureRequest, mesh_device: Any) -> RunResult:
    """The shared run of ``case`` (computed by the first case that needs it; errors are re-raised for all)."""
    if case.run_key not in _RUNS:
        reference, source = _models(case, request)
        cache_dir = request.getfixturevalue("cache_dir")
        if case.module == PIPELINED:
            runner = _pipelined_prefill_run if case.mode == "prefill" else _pipelined_decode_run
        else:
            runner = _prefill_run if case.mode == "prefill" else _decode_run
        try:
            _RUNS[case.run_key] = runner(case, reference, source, mesh_device, cache_dir)
        except Exception as exc:
            _RUNS[case.run_key] = RunResult(error=exc)
    result = _RUNS[case.run_key]
    if result.error is not None:
        raise result.error
    return result


__all__ = ["Case", "MODULES", "PIPELINED", "POLICY_IDS", "RunResult", "matrix_cases", "run_for", "tensor_digest"]
