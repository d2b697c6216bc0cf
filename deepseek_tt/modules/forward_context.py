"""The per-call context of a forward: what one prefill or decode call needs besides the input and the run config.

Every module's forward has the one signature ``forward_prefill(x, cfg, ctx)`` / ``forward_decode(x, cfg, ctx)``
(``AbstractModule``); the run config holds what lives as long as the model (op configs, weights, KV caches),
the context what changes from call to call:

- ``mode``: ``"prefill"`` or ``"decode"``;
- ``rope``: the ``rotary_embedding_llama`` tensors (``cos_matrix``, ``sin_matrix``, ``trans_matrix``,
  from ``rope.RotarySetup``);
- ``page_table``: the device page table the KVPE caches are read and written through (the model's own, or an
  external one such as vLLM's: a different table is a different context, never a config change);
- ``user_id`` (prefill): the user whose KV pages the sequence fills; ``positions`` (decode): the int32 ``[u]``
  per-device position tensor (``kv_cache.decode_positions_tensor``);
- ``layer``: the index of the decoder layer being run (set by the model for each block; names its stages);
- ``observer``: an optional :class:`StageObserver` the model and the blocks hand every stage's output to
  (the divergence drill-down records them); ``None`` costs nothing.

``empty_slots_skipped()`` wraps a decode computation (each decoder block, the model's head) so that the
emulator computes the active slots only.

Modules that need no context (norms, MLP, MoE, embedding, LM head) accept it and ignore it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Protocol

PREFILL = "prefill"
DECODE = "decode"


class StageObserver(Protocol):
    """Called with each named stage's output (a device tensor) as the forward runs; must not modify it."""

    def __call__(self, stage: str, output: Any, ctx: "ForwardContext") -> None: ...


def stage_name(submodule: str, layer: int | None = None) -> str:
    """``"embedding"``, ``"norm"``, ``"logits"``, or ``"layers.{layer}.{submodule}"`` inside a decoder layer."""
    return submodule if layer is None else f"layers.{layer}.{submodule}"


@dataclass(frozen=True)
class ForwardContext:
    """See the module docstring; build one with :meth:`prefill` or :meth:`decode`."""

    mode: str
    rope: Any
    page_table: Any
    user_id: int | None = None
    positions: Any = None
    layer: int | None = None
    observer: StageObserver | None = None

    def __post_init__(self) -> None:
        if self.mode == PREFILL and self.user_id is None:
            raise ValueError("a prefill ForwardContext needs the user_id")
        if self.mode == DECODE and self.positions is None:
            raise ValueError("a decode ForwardContext needs the positions tensor")
        if self.mode not in (PREFILL, DECODE):
            raise ValueError(f"ForwardContext mode must be {PREFILL!r} or {DECODE!r}, got {self.mode!r}")

    @classmethod
    def prefill(cls, rope: Any, page_table: Any, user_id: int, *, layer: int | None = None,
                observer: StageObserver | None = None) -> "ForwardContext":
        return cls(PREFILL, rope, page_table, user_id=int(user_id), layer=layer, observer=observer)

    @classmethod
    def decode(cls, rope: Any, page_table: Any, positions: Any, *, layer: int | None = None,
               observer: StageObserver | None = None) -> "ForwardContext":
        return cls(DECODE, rope, page_table, positions=positions, layer=layer, observer=observer)

    @property
    def is_decode(self) -> bool:
        return self.mode == DECODE

    def empty_slots_skipped(self) -> AbstractContextManager[None]:
        """Around a decode computation: the emulator computes the step's active slots only (empty slots'
        rows NaN; ``backend.skip_empty_decode_slots``). Nothing in prefill, nor on a device."""
        if not self.is_decode:
            return nullcontext()
        from deepseek_tt.backend import skip_empty_decode_slots

        return skip_empty_decode_slots(self.positions)

    def at_layer(self, layer: int) -> "ForwardContext":
        """The same call inside decoder layer ``layer``."""
        return self if layer == self.layer else replace(self, layer=int(layer))

    def observe(self, submodule: str, output: Any) -> None:
        """Hand ``output`` to the observer as stage ``submodule`` of the current layer (or a model-level
        stage: ``embedding``, ``norm``, ``logits``, outside a layer)."""
        if self.observer is not None:
            layer = None if submodule in ("embedding", "norm", "logits") else self.layer
            self.observer(stage_name(submodule, layer), output, self)


def require_context(ctx: ForwardContext | None, mode: str, who: str) -> ForwardContext:
    """``ctx``, checked to be a context of ``mode`` (modules that read the context call this first)."""
    if ctx is None:
        raise TypeError(f"{who}.forward_{mode} needs a ForwardContext (ForwardContext.{mode}(...))")
    if ctx.mode != mode:
        raise ValueError(f"{who}.forward_{mode} got a {ctx.mode} ForwardContext")
    return ctx


__all__ = ["DECODE", "PREFILL", "ForwardContext", "StageObserver", "require_context", "stage_name"]
