"""Divergence drill-down: per-layer, per-submodule PCC of the TT model against the reference on one input.

Both sides run unchanged while hooks copy every stage's output to torch:

- reference (transformers ``DeepseekV3ForCausalLM`` or one decoder layer): ``register_forward_hook`` on
  ``embed_tokens``, each layer's ``self_attn`` / ``mlp`` / the layer itself, ``norm`` and ``lm_head``;
- TT side: a :class:`TtStageRecorder` is the ``observer`` of the call's
  :class:`~deepseek_tt.modules.forward_context.ForwardContext`: the model and the decoder blocks hand it
  each stage's output as they run (``Model.forward_*``, ``TtModel.prefill(..., observer=)`` or a lone
  ``DecoderBlock.forward_*`` with a context naming its ``layer``); nothing is patched.

Stages, in execution order: ``embedding``, per layer ``layers.{i}.attention`` (MLA output, before the
residual add), ``layers.{i}.mlp`` / ``layers.{i}.moe`` (FFN output, before the add), ``layers.{i}.block``
(block output), then ``norm`` (final norm) and ``logits``. :func:`compare_stages` builds the PCC table
(pandas, with each stage's norm ratio ``||tt|| / ||reference||`` beside its PCC) against the one threshold
table and names the first stage below its PCC threshold. Full-model / block tests assert through
``deepseek_tt.accuracy.checks.check_against_reference(..., drilldown=...)`` (PCC, magnitude, top-1), which
attaches this table to a failure; :func:`assert_pcc_with_drilldown` is the PCC-only form.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from deepseek_tt.accuracy.metrics import norm_ratio, pcc
from deepseek_tt.accuracy.thresholds import pcc_threshold
from deepseek_tt.modules.forward_context import ForwardContext, StageObserver, stage_name

#: Stage submodule -> threshold-table module (``block`` depends on the FFN kind).
SUBMODULE_THRESHOLD = {"embedding": "embedding", "attention": "mla", "mlp": "mlp", "moe": "moe", "norm": "rms_norm", "logits": "model"}
BLOCK_THRESHOLD = {"mlp": "decoder_block", "moe": "moe_decoder_block"}


def _split(stage: str) -> tuple[int | None, str]:
    parts = stage.split(".")
    return (int(parts[1]), parts[2]) if parts[0] == "layers" else (None, stage)


# --- reference side ----------------------------------------------------------------------------------


def _first(output: Any) -> torch.Tensor:
    out = output[0] if isinstance(output, (tuple, list)) else output
    out = getattr(out, "logits", out)
    return out.detach().to(torch.float32)


INPUT_SUFFIX = ":input"


@contextlib.contextmanager
def capture_reference(model: torch.nn.Module, layers: dict[int, torch.nn.Module] | None = None, *,
                      record_inputs: bool = False, row: int | None = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Hooks on a ``DeepseekV3ForCausalLM`` (``model``), or only on ``layers`` ({index: decoder layer})
    when given; yields the dict that fills with ``stage -> [T, dim]`` (batch row ``row``; the whole
    ``[B, T, dim]`` batch when ``row`` is None) as the model runs; with ``record_inputs`` also
    ``stage + ":input"`` (each stage's input hidden states)."""
    pick = (lambda t: t) if row is None else (lambda t: t[row])
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def record(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            captured[name] = pick(_first(output))

        return record

    def pre_hook(name: str) -> Callable[..., None]:
        def record(_module: torch.nn.Module, args: Any, kwargs: Any) -> None:
            x = args[0] if args else kwargs.get("hidden_states")
            captured[name + INPUT_SUFFIX] = pick(x.detach().to(torch.float32))

        return record

    def watch(module: torch.nn.Module, name: str) -> None:
        handles.append(module.register_forward_hook(hook(name)))
        if record_inputs and name != "embedding":
            handles.append(module.register_forward_pre_hook(pre_hook(name), with_kwargs=True))

    if layers is None:
        from reference_models.reference import get_embedding, get_final_norm, get_layer, get_lm_head

        layers = {i: get_layer(model, i) for i in range(model.config.num_hidden_layers)}
        watch(get_embedding(model), "embedding")
        watch(get_final_norm(model), "norm")
        watch(get_lm_head(model), "logits")
    for i, layer in layers.items():
        watch(layer.self_attn, stage_name("attention", i))
        watch(layer.mlp, stage_name("moe" if hasattr(layer.mlp, "gate") else "mlp", i))
        watch(layer, stage_name("block", i))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


# --- TT side -----------------------------------------------------------------------------------------


class TtStageRecorder:
    """A :class:`~deepseek_tt.modules.forward_context.StageObserver` that copies every stage's output to
    torch: ``captured[stage]`` is ``[T, dim]`` (prefill, row 0 of the mesh) or ``[R * U, dim]`` (decode)."""

    def __init__(self, mesh_device: Any) -> None:
        self.mesh_device = mesh_device
        self.captured: dict[str, torch.Tensor] = {}

    def __call__(self, stage: str, output: Any, ctx: ForwardContext) -> None:
        if stage == "logits":
            from deepseek_tt.modules.lm_head import LMHead

            self.captured[stage] = LMHead.logits_to_torch(output, self.mesh_device, decode=ctx.is_decode)
        else:
            from deepseek_tt.modules.layout import residual_to_torch

            self.captured[stage] = residual_to_torch(output, self.mesh_device, decode=ctx.is_decode)


# --- comparison --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drilldown:
    """The per-stage PCC table and the first stage below its threshold (None when all pass)."""

    table: pd.DataFrame
    first_divergence: str | None

    def describe(self) -> str:
        head = (f"first divergence: {self.first_divergence}" if self.first_divergence
                else "every captured stage meets its threshold")
        if self.first_divergence is None and len(self.table):
            drops = self.table["pcc"].astype(float)
            worst = self.table.iloc[int(drops.idxmin())]
            head += f" (lowest PCC {worst['pcc']:.5f} at {worst['stage']})"
        return head + "\n" + self.table.to_string(index=False, float_format=lambda v: f"{v:.5f}")

    def rows(self) -> list[dict[str, Any]]:
        return self.table.to_dict("records")


def compare_stages(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor], dtype_policy: str | None = "default",
                   length: int | None = None) -> Drilldown:
    """PCC per stage captured on both sides (in the TT side's execution order), first rows ``length`` only
    (prefill padding), with each stage's threshold; stages missing on one side are listed with NaN."""
    order = list(actual) + [s for s in expected if s not in actual and not s.endswith(INPUT_SUFFIX)]
    ffn_of = {layer: sub for layer, sub in map(_split, order) if sub in BLOCK_THRESHOLD}
    rows = []
    for stage in order:
        layer, sub = _split(stage)
        module = BLOCK_THRESHOLD.get(ffn_of.get(layer, "mlp")) if sub == "block" else SUBMODULE_THRESHOLD[sub]
        threshold = pcc_threshold(module, "*", dtype_policy)
        if stage in expected and stage in actual:
            e, a = expected[stage], actual[stage]
            n = min(e.shape[0], a.shape[0]) if length is None else length
            value = pcc(e[:n], a[:n, : e.shape[-1]])
            ratio = norm_ratio(e[:n], a[:n, : e.shape[-1]])
        else:
            value = ratio = float("nan")
        rows.append({"stage": stage, "layer": layer, "submodule": sub, "pcc": value, "threshold": threshold,
                     "passed": bool(value >= threshold), "norm_ratio": ratio})
    table = pd.DataFrame(rows, columns=["stage", "layer", "submodule", "pcc", "threshold", "passed", "norm_ratio"])
    table["layer"] = table["layer"].astype("Int64")
    failed = table[~table["passed"]]
    return Drilldown(table, None if failed.empty else str(failed.iloc[0]["stage"]))


@torch.no_grad()
def drilldown_of(reference: torch.nn.Module, run_reference: Callable[[], Any], run_tt: Callable[[StageObserver], Any],
                 mesh_device: Any, *, layers: dict[int, torch.nn.Module] | None = None, dtype_policy: str | None = "default",
                 length: int | None = None) -> Drilldown:
    """Run both sides again with the captures and compare: ``run_reference()`` / ``run_tt(observer)`` repeat a
    test's own calls, the TT one with ``observer`` in its ``ForwardContext`` (a whole model, or one block with
    ``layers={i: hf_layer}`` and a context at ``layer=i``)."""
    with capture_reference(reference, layers) as expected:
        run_reference()
    recorder = TtStageRecorder(mesh_device)
    run_tt(recorder)
    return compare_stages(expected, recorder.captured, dtype_policy, length=length)


@torch.no_grad()
def drilldown_prefill(tt_model: Any, reference: torch.nn.Module, tokens: torch.Tensor, user_id: int = 0) -> Drilldown:
    """Prefill ``tokens`` [S] through a ``TtModel`` and the HF reference with captures on both; compare."""
    tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
    with capture_reference(reference) as expected:
        reference(input_ids=tokens[None])
    recorder = TtStageRecorder(tt_model.mesh_device)
    tt_model.prefill(tokens, user_id, observer=recorder)
    return compare_stages(expected, recorder.captured, getattr(tt_model.dtype_policy, "name", tt_model.dtype_policy), length=tokens.numel())


def assert_pcc_with_drilldown(value: float, threshold: float, what: str, drilldown: Callable[[], Drilldown]) -> None:
    """``assert value >= threshold``; on failure the message carries the drill-down (computed only then)."""
    if value >= threshold:
        return
    try:
        detail = drilldown().describe()
    except Exception as exc:  # the drill-down must never hide the original failure
        detail = f"(drill-down failed: {type(exc).__name__}: {exc})"
    raise AssertionError(f"{what}: PCC {value:.5f} < {threshold}\n{detail}")


__all__ = [
    "Drilldown",
    "TtStageRecorder",
    "assert_pcc_with_drilldown",
    "capture_reference",
    "compare_stages",
    "drilldown_of",
    "drilldown_prefill",
    "stage_name",
]
