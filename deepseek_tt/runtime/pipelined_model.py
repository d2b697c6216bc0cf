"""``PipelinedTtModel``: the row-pipelined TT-NN model (``modules/pipeline.py``) behind the runtime facade.

Whole-model calls as ``TtModel`` (``prefill(tokens, user_id) -> [S, V]``, ``decode(tokens, positions) ->
[B, V]``, ``reset()``), each running its work through the stages one after another, and the stage-level
calls the pipeline-parallel generator schedules so that every row works on a different micro-batch:

- ``start_prefill(tokens, user_id) -> PipelineItem`` / ``start_decode(micro_batch, tokens, positions)``;
- ``run_stage(item, stage)``: stage ``stage`` of the item (stage 0 first, each once, in order); the last
  stage leaves the logits in ``item.logits`` (torch float32), the others hand the hidden state to the
  next row.

Users: ``max_batch_size = R * U`` as in the batched model; micro-batch m is the users ``m*U .. m*U+U-1``
(the users row m serves in the batched model). The weights are converted into their own cache entry
(the same fingerprint inputs plus the pipeline layout).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.backend import ttnn
from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.modules import kv_cache
from deepseek_tt.modules.base import mesh_shape
from deepseek_tt.modules.embedding import Embedding
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.lm_head import LMHead
from deepseek_tt.modules.pipeline import PipelinedModel, assign_stages, create_stage_page_tables, create_stage_sockets, stage_meshes
from deepseek_tt.modules.rope import RotarySetup
from deepseek_tt.runtime.facade import ModelFacade
from deepseek_tt.runtime.model_config import (
    DEFAULT_MAX_SEQ_LEN, RANDOM_WEIGHTS_SEED, check_load_fits, load_through_cache, resolve_load_config, resolve_weight_source,
)
from deepseek_tt.runtime.memory import KV_KEYS, STATE_KEYS, iter_tensors

logger = logging.getLogger(__name__)

#: cache-entry identity of the pipelined weight layout (converted per stage submesh)
PIPELINE_LAYOUT = "row-pipeline-v1"


def pipeline_layout(hf_config: Any, rows: int) -> dict[str, Any]:
    """What tells a pipelined weight-cache entry apart from the batched model's: the layout and each stage's
    layers (``PipelineConfigError`` when the layers cannot be split over ``rows`` stages)."""
    stages = assign_stages(int(hf_config.num_hidden_layers), rows)
    return {"layout": PIPELINE_LAYOUT, "stages": [[s.start, s.stop] for s in stages]}


def external_kv_cache_refused(what: str) -> ValueError:
    """The one-line error for vLLM's external paged KV cache (``what``: the refused call or option)."""
    return ValueError(
        f"{what} is not supported by the pipelined model (--generator pp): each stage keeps its own page table per "
        "micro-batch; vLLM's external page table needs the batched model (--generator bp)"
    )


@dataclass
class PipelineItem:
    """One unit of pipelined work: a user's prefill or a micro-batch's decode step."""

    kind: str  # "prefill" | "decode"
    micro_batch: int
    user_id: int = 0  # prefill: global user id
    seq_len: int = 0  # prefill: real (unpadded) length
    positions: torch.Tensor | None = None  # decode: [U]
    x: Any = None  # tokens (before stage 0) or the hidden state waiting at the next stage
    next_stage: int = 0
    logits: torch.Tensor | None = None
    stage_seconds: list[float] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.logits is not None


class PipelinedTtModel(ModelFacade):
    """The row-pipelined model on a mesh; build it with :meth:`load`."""

    MODEL = PipelinedModel

    def _set_up_mesh(self) -> None:
        rows, cols = mesh_shape(self.mesh_device)
        self.stage_layers = assign_stages(int(self.hf_config.num_hidden_layers), rows)
        self.num_devices = rows * cols
        self.num_stages = self.num_micro_batches = rows  # micro-batch m: the users row m serves in the batched model
        self.meshes = stage_meshes(self.mesh_device)
        self.sockets = create_stage_sockets(self.meshes)
        self.ropes = [RotarySetup(self.hf_config, mesh, users_per_row=self.users_per_row) for mesh in self.meshes]

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
    ) -> "PipelinedTtModel":
        """As ``TtModel.load``; the stage layout is checked before any weight is read."""
        hf_config = resolve_load_config("PipelinedTtModel.load", model_path, cache_dir, random_weights, hf_config)
        rows = mesh_shape(mesh_device)[0]
        layout = pipeline_layout(hf_config, rows)  # checks the stage split
        check_load_fits(hf_config, dtype_policy, mesh_device, "pp", max_batch_size, max_seq_len)
        policy = get_dtype_policy(dtype_policy)
        source = resolve_weight_source("PipelinedTtModel.load", model_path, random_weights, seed, weight_source)
        cache = source.cache(hf_config, mesh_shape(mesh_device), Path(cache_dir), policy, layout=layout)

        def convert(out_dir: Path) -> dict[str, Any]:
            return PipelinedModel.convert_weights(hf_config, source.state_dict(hf_config), out_dir, mesh_device,
                                                  dtype_policy=policy, progress=progress)

        def load_or_convert(recalculate: bool, reason: str | None) -> Any:
            return cache.load_or_convert(convert, recalculate=recalculate, verify_checksums=False, reason=reason)  # the loads verify

        def build(result: Any, loads: dict) -> "PipelinedTtModel":
            return cls(
                hf_config, mesh_device, result.weight_config, result.entry_dir,
                dtype_policy=dtype_policy, max_batch_size=max_batch_size, max_seq_len=max_seq_len, weight_loads=loads,
            )

        return load_through_cache("PipelinedTtModel.load", load_or_convert, build, recalculate=recalculate_weights)

    def _build_run_configs(self, previous: dict[str, Any] | None = None) -> None:
        state = PipelinedModel.create_state(
            self.hf_config, self.mesh_device, self.paged_config, micro_batches=self.num_micro_batches,
            sockets=self.sockets, dtype_policy=self.dtype_policy,
        )
        # page_tables[stage][micro_batch]: passed in each call's ForwardContext, not held by the run configs
        self._page_tables = create_stage_page_tables(self.paged_config, self.meshes, self.num_micro_batches, self.page_table)
        common = dict(weight_root=self.weight_root, loaded=self._loaded)
        self._prefill_cfg = PipelinedModel.run_config(self._prefill_model_config, self.weight_config, state, **common, shared=previous)
        self._decode_cfg = PipelinedModel.run_config(self._decode_model_config, self.weight_config, state, **common, shared=self._prefill_cfg)

    def reset(self) -> None:
        """Forget every user's KV (fresh zeroed caches on every stage; weights stay loaded)."""
        previous = self._prefill_cfg
        old = [t for stage in previous["stages"] for t in iter_tensors(stage, keys=KV_KEYS)]
        old += [t for tables in self._page_tables for t in tables]
        self._build_run_configs(previous)
        for tensor in old:
            ttnn.deallocate(tensor)

    def kv_caches(self) -> list[Any]:
        """Every layer's paged KVPE cache in model order, each on its stage's submesh: ``[R * blocks, 1,
        block_size, kvpe_dim]`` per device, micro-batch m's pages at ``m * blocks`` (``blocks`` of
        ``paged_config``, addressed through ``page_table`` shifted by ``m * blocks``)."""
        return [layer["mla"]["kvpe_cache"] for stage in self._prefill_cfg["stages"] for layer in stage["layers"]]

    # --- memory ----------------------------------------------------------------------------------

    def tensor_placements(self, kind: str) -> list[tuple[Any, list[int]]]:
        """(tensor, parent-mesh device indices) of the ``weights`` or ``kv_cache`` tensors: stage r's on row r."""
        cols = mesh_shape(self.mesh_device)[1]
        placed = []
        for row, stage in enumerate(self._prefill_cfg["stages"]):
            devices = list(range(row * cols, (row + 1) * cols))
            if kind == "weights":
                tensors = iter_tensors(stage, skip=STATE_KEYS | {"send_socket", "recv_socket"})
            else:
                tensors = iter_tensors(stage, keys=KV_KEYS)
            placed.extend((t, devices) for t in tensors)
        return placed

    # --- stage-level API -------------------------------------------------------------------------

    def start_prefill(self, tokens: torch.Tensor, user_id: int) -> PipelineItem:
        """A user's prefill, its (padded) tokens on stage 0's row."""
        padded, seq_len = self._padded_prompt(tokens, user_id)
        return PipelineItem(
            "prefill", int(user_id) // self.users_per_row, user_id=int(user_id), seq_len=seq_len,
            x=Embedding.prefill_input(padded, self.meshes[0]),
        )

    def start_decode(self, micro_batch: int, tokens: torch.Tensor, positions: torch.Tensor) -> PipelineItem:
        """One decode step of micro-batch ``micro_batch``: ``U`` tokens and positions (``-1``: empty slot)."""
        tokens, positions = self._decode_slots(tokens, positions, self.users_per_row, "a micro-batch's users")
        tokens = torch.where(positions >= 0, tokens, torch.zeros_like(tokens))
        return PipelineItem("decode", int(micro_batch), positions=positions, x=Embedding.decode_input(tokens, self.meshes[0]))

    def run_stage(self, item: PipelineItem, stage: int) -> None:
        """Run stage ``stage`` of ``item`` and hand its output on (hidden to the next row, or logits)."""
        if stage != item.next_stage:
            raise ValueError(f"{item.kind} item is at stage {item.next_stage}, not {stage}")
        cfg = (self._prefill_cfg if item.kind == "prefill" else self._decode_cfg)["stages"][stage]
        mesh, rope = self.meshes[stage], self.ropes[stage]
        page_table = self._page_tables[stage][item.micro_batch]
        if item.kind == "prefill":
            padded_len = int(item.x.shape[-2] if stage else item.x.shape[-1])
            rope_tensors = rope.prefill_tensors(padded_len)
            ctx = ForwardContext.prefill(rope_tensors, page_table, item.user_id % self.users_per_row)
            out = PipelinedModel.forward_stage_prefill(item.x, cfg, ctx)
            inputs = [rope_tensors["cos_matrix"], rope_tensors["sin_matrix"]]
        else:
            pos = kv_cache.decode_positions_tensor(item.positions, mesh, self.users_per_row)
            rope_tensors = rope.decode_tensors(item.positions)
            out = PipelinedModel.forward_stage_decode(item.x, cfg, ForwardContext.decode(rope_tensors, page_table, pos))
            inputs = [pos, rope_tensors["cos_matrix"], rope_tensors["sin_matrix"]]
        for tensor in inputs:
            ttnn.deallocate(tensor)
        if stage == 0:
            ttnn.deallocate(item.x)
        item.next_stage = stage + 1
        if stage == self.num_stages - 1:
            logits = LMHead.logits_to_torch(out, mesh, decode=item.kind == "decode")
            item.logits = logits[: item.seq_len, : self.vocab_size] if item.kind == "prefill" else logits[:, : self.vocab_size]
            ttnn.deallocate(out)
            item.x = None
        else:
            item.x = PipelinedModel.transfer(out, cfg, self._decode_cfg["stages"][stage + 1])

    def run_item(self, item: PipelineItem) -> torch.Tensor:
        """Every remaining stage of ``item`` in order -> its logits."""
        for stage in range(item.next_stage, self.num_stages):
            self.run_stage(item, stage)
        return item.logits  # type: ignore[return-value]

    # --- whole-model facade ----------------------------------------------------------------------

    def prefill(self, tokens: torch.Tensor, user_id: int, page_table: torch.Tensor | None = None) -> torch.Tensor:
        """User ``user_id``'s prompt ``[S]`` from position 0 -> logits ``[S, V]`` (float32)."""
        if page_table is not None:
            raise external_kv_cache_refused("prefill: page_table=")
        return self.run_item(self.start_prefill(tokens, user_id))

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, page_table: torch.Tensor | None = None) -> torch.Tensor:
        """One token per slot (``-1``: empty slot) -> logits ``[B, V]``; each micro-batch runs through every stage."""
        if page_table is not None:
            raise external_kv_cache_refused("decode: page_table=")
        tokens, positions = self._decode_slots(tokens, positions, self.max_batch_size, "max_batch_size")
        u = self.users_per_row
        out = torch.zeros(self.max_batch_size, self.vocab_size)
        for m in range(self.num_micro_batches):
            if bool((positions[m * u : (m + 1) * u] >= 0).any()):
                out[m * u : (m + 1) * u] = self.run_item(self.start_decode(m, tokens[m * u : (m + 1) * u], positions[m * u : (m + 1) * u]))
        return out

    def allocate_kv_cache(self, num_blocks: int, block_size: int = kv_cache.BLOCK_SIZE) -> list[Any]:
        """Refused: the stages' caches are laid out per micro-batch (see :func:`external_kv_cache_refused`)."""
        raise external_kv_cache_refused("allocate_kv_cache (an external paged KV cache)")


__all__ = ["PIPELINE_LAYOUT", "pipeline_layout", "PipelineItem", "PipelinedTtModel", "external_kv_cache_refused"]
