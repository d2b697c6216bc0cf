"""Traced decode for the bp generator (``--enable-trace``).

After the first (compile) decode step has run eagerly, one decode step is captured on the model's mesh
device with ``ttnn.begin_trace_capture`` / ``ttnn.end_trace_capture`` and every later step replays it with
``ttnn.execute_trace``; new tokens and positions are written into the captured input tensors with
``ttnn.copy_host_to_device_tensor``. This needs the model's device-level decode hooks
(``TtModel``'s docstring): ``mesh_device``, ``decode_host_inputs``, ``decode_device_step`` and
``decode_output_to_torch``. A model may instead provide ``capture_decode_trace(tokens, positions)``
returning an object with ``replay(tokens, positions)`` and ``release()``, which is used as it is.
"""

from __future__ import annotations

from typing import Any

import torch

DEVICE_HOOKS = ("mesh_device", "decode_host_inputs", "decode_device_step", "decode_output_to_torch")
TRACE_CQ_ID = 0


class TraceUnsupportedError(RuntimeError):
    """The model cannot run a traced decode step."""


def trace_support(model: Any) -> str | None:
    """``"hook"`` / ``"device"`` when ``model`` can be traced, else ``None``."""
    if callable(getattr(model, "capture_decode_trace", None)):
        return "hook"
    if all(getattr(model, name, None) is not None for name in DEVICE_HOOKS):
        return "device"
    return None


class DecodeTrace:
    """One captured decode step of ``model``; ``capture`` once, then ``replay`` every step."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.kind = trace_support(model)
        if self.kind is None:
            missing = [name for name in DEVICE_HOOKS if getattr(model, name, None) is None]
            raise TraceUnsupportedError(
                f"--enable-trace: {type(model).__name__} has no traceable decode step "
                f"(missing {', '.join(missing)}; see docs/ARCHITECTURE.md)"
            )
        self._hook_trace: Any = None
        self._trace_id: Any = None
        self._device_inputs: tuple[Any, ...] = ()
        self._output: Any = None

    @property
    def captured(self) -> bool:
        return self._hook_trace is not None or self._trace_id is not None

    def capture(self, tokens: torch.Tensor, positions: torch.Tensor) -> None:
        """Record one decode step for these input shapes (values are replaced on every replay)."""
        if self.captured:
            raise RuntimeError("decode trace already captured")
        if self.kind == "hook":
            self._hook_trace = self.model.capture_decode_trace(tokens, positions)
            return
        from deepseek_tt.backend import ttnn

        device = self.model.mesh_device
        host_inputs = self.model.decode_host_inputs(tokens, positions)
        self._device_inputs = tuple(ttnn.to_device(t, device) for t in host_inputs)
        self._trace_id = ttnn.begin_trace_capture(device, cq_id=TRACE_CQ_ID)
        self._output = self.model.decode_device_step(self._device_inputs)
        ttnn.end_trace_capture(device, self._trace_id, cq_id=TRACE_CQ_ID)

    def replay(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Run the captured step on new inputs; returns logits [B, V]."""
        if not self.captured:
            raise RuntimeError("decode trace replayed before capture")
        if self.kind == "hook":
            return self._hook_trace.replay(tokens, positions)
        from deepseek_tt.backend import ttnn

        device = self.model.mesh_device
        for host, dev in zip(self.model.decode_host_inputs(tokens, positions), self._device_inputs, strict=True):
            ttnn.copy_host_to_device_tensor(host, dev)
        ttnn.execute_trace(device, self._trace_id, cq_id=TRACE_CQ_ID, blocking=True)
        return self.model.decode_output_to_torch(self._output)

    def release(self) -> None:
        """Free the trace (and its captured tensors)."""
        if self._hook_trace is not None:
            self._hook_trace.release()
        elif self._trace_id is not None:
            from deepseek_tt.backend import ttnn

            ttnn.release_trace(self.model.mesh_device, self._trace_id)
        self._hook_trace = self._trace_id = self._output = None
        self._device_inputs = ()


__all__ = ["DecodeTrace", "TraceUnsupportedError", "trace_support"]
