"""Trace capture and replay with the device's semantics.

On a Tenstorrent device, ``begin_trace_capture`` .. ``end_trace_capture`` records the commands of the
device ops issued in between; ``execute_trace`` replays them, writing into the very same (persistent)
output buffers. Host traffic is not part of a trace, so host writes (``from_torch``/``to_device`` into a
new device tensor, ``copy_host_to_device_tensor``) and host reads (``to_torch``/``from_device``) inside a
capture are errors.

The emulator records every op wrapped with :func:`device_op` (the callable, its arguments and its output
tensors). Ops still run eagerly during capture so that shapes flow. Replay re-runs the recorded calls in
order and moves each fresh result into the recorded output tensor object, so tensors captured as
inputs see the values written into them (e.g. by ``copy_host_to_device_tensor``) before the replay, and
tensors captured as outputs hold the new results after it.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

_captures: dict[int, "_Trace"] = {}
_traces: dict[tuple[int, int], "_Trace"] = {}
_ids = itertools.count(0)
_depth = 0


class TraceError(RuntimeError):
    """Code that would break under a real ttnn trace."""


class MeshTraceId(int):
    """The handle ``begin_trace_capture`` returns (ttnn.MeshTraceId)."""

    def __repr__(self) -> str:
        return f"MeshTraceId({int(self)})"


@dataclass
class _Trace:
    device: Any
    trace_id: MeshTraceId
    ops: list[tuple[Callable, tuple, dict, list]] = field(default_factory=list)
    complete: bool = False


def _flatten_tensors(value: Any) -> list:
    from ._common import is_tensor

    if is_tensor(value):
        return [value]
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in _flatten_tensors(item)]
    return []


def _device_key(device: Any) -> int:
    return id(device)


def _first_device(tensors: list) -> Any:
    from ._common import device_of

    for t in tensors:
        dev = device_of(t)
        if dev is not None:
            return dev
    return None


def is_capturing(device: Any = None) -> bool:
    """Whether a trace is being captured (on ``device``, or on any device when None)."""
    if device is None:
        return bool(_captures)
    return _device_key(device) in _captures


def assert_not_capturing(device: Any, action: str) -> None:
    """Raise :class:`TraceError` when ``action`` (host traffic) happens during a capture on ``device``."""
    if not _captures:
        return
    if device is None or _device_key(device) in _captures:
        raise TraceError(
            f"{action} inside a trace capture: a ttnn trace records device ops only, so host writes and reads "
            "(from_torch/to_device of a new device tensor, copy_host_to_device_tensor, to_torch/from_device) "
            "must happen outside begin_trace_capture/end_trace_capture; allocate persistent device inputs "
            "before the capture and update them with ttnn.copy_host_to_device_tensor between replays"
        )


def device_op(fn: Callable) -> Callable:
    """Mark ``fn`` as a device op: recorded when called (not nested in another op) during a capture."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _depth
        if not _captures or _depth:
            if not _captures:
                return fn(*args, **kwargs)
            _depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                _depth -= 1
        _depth += 1
        try:
            result = fn(*args, **kwargs)
        finally:
            _depth -= 1
        outputs = _flatten_tensors(result)
        device = _first_device(outputs) or _first_device(_flatten_tensors(list(args) + list(kwargs.values())))
        trace = _captures.get(_device_key(device)) if device is not None else None
        if trace is not None:
            trace.ops.append((fn, args, dict(kwargs), outputs))
        return result

    wrapper.__wrapped_device_op__ = fn  # type: ignore[attr-defined]
    return wrapper


def begin_trace_capture(mesh_device: Any, *, cq_id: Any = None) -> MeshTraceId:
    """Start recording the device ops issued on ``mesh_device``; returns the trace id."""
    key = _device_key(mesh_device)
    if key in _captures:
        raise TraceError("begin_trace_capture: a trace is already being captured on this mesh device")
    trace = _Trace(mesh_device, MeshTraceId(next(_ids)))
    _captures[key] = trace
    _traces[(key, int(trace.trace_id))] = trace
    return trace.trace_id


def end_trace_capture(mesh_device: Any, trace_id: Any, *, cq_id: Any = None) -> None:
    """Stop recording; the trace can then be replayed with :func:`execute_trace`."""
    key = _device_key(mesh_device)
    trace = _captures.get(key)
    if trace is None or int(trace.trace_id) != int(trace_id):
        raise TraceError(f"end_trace_capture: trace {int(trace_id)} is not being captured on this mesh device")
    del _captures[key]
    trace.complete = True


def _lookup(mesh_device: Any, trace_id: Any, op: str) -> _Trace:
    trace = _traces.get((_device_key(mesh_device), int(trace_id)))
    if trace is None:
        raise TraceError(f"{op}: no trace {int(trace_id)} on this mesh device (never captured, or released)")
    return trace


def _move_into(target: Any, fresh: Any) -> None:
    if target is fresh:
        return
    if target._storage is not None and target._storage.shape != fresh._storage.shape:
        raise TraceError("execute_trace: a replayed op produced a different shape than at capture time")
    target.__dict__.update(fresh.__dict__)


def execute_trace(mesh_device: Any, trace_id: Any, *, cq_id: Any = None, blocking: bool = True) -> None:
    """Replay a captured trace: re-run its ops, writing into the tensors produced at capture time."""
    if is_capturing(mesh_device):
        raise TraceError("execute_trace: cannot replay a trace while capturing one on the same mesh device")
    trace = _lookup(mesh_device, trace_id, "execute_trace")
    if not trace.complete:
        raise TraceError("execute_trace: the trace capture has not ended (call end_trace_capture first)")
    global _depth
    _depth += 1
    try:
        for fn, args, kwargs, outputs in trace.ops:
            result = fn(*args, **kwargs)
            if len(outputs) == 1 and result.__class__ is outputs[0].__class__:  # the common case: one tensor
                _move_into(outputs[0], result)
                continue
            for target, new in zip(outputs, _flatten_tensors(result)):
                _move_into(target, new)
    finally:
        _depth -= 1


def release_trace(mesh_device: Any, trace_id: Any) -> None:
    """Free a captured trace; replaying it afterwards is an error."""
    trace = _lookup(mesh_device, trace_id, "release_trace")
    _captures.pop(_device_key(mesh_device), None) if _captures.get(_device_key(mesh_device)) is trace else None
    del _traces[(_device_key(mesh_device), int(trace.trace_id))]


# --- host traffic (not traceable) ---------------------------------------------------------------


def copy_host_to_device_tensor(host_tensor: Any, device_tensor: Any, cq_id: Any = None) -> None:
    """``ttnn.copy_host_to_device_tensor``: overwrite a device tensor's shards with a host tensor's
    (same shape, dtype and layout); the way to feed new inputs to a trace between replays."""
    from ._common import device_of

    device = device_of(device_tensor)
    if device is None:
        raise RuntimeError("ttnn.copy_host_to_device_tensor: device_tensor must be on a device")
    if device_of(host_tensor) is not None:
        raise RuntimeError("ttnn.copy_host_to_device_tensor: host_tensor must be a host tensor")
    assert_not_capturing(device, "ttnn.copy_host_to_device_tensor")
    if tuple(host_tensor.shape) != tuple(device_tensor.shape) or host_tensor.dtype != device_tensor.dtype:
        raise RuntimeError(
            f"ttnn.copy_host_to_device_tensor: host tensor {host_tensor.shape} {host_tensor.dtype} does not match "
            f"device tensor {device_tensor.shape} {device_tensor.dtype}"
        )
    if host_tensor.layout != device_tensor.layout:
        raise RuntimeError("ttnn.copy_host_to_device_tensor: host and device tensors must have the same layout")
    src = host_tensor._data
    shards = device_tensor._data.shape[0]
    if src.shape[0] not in (1, shards):
        raise RuntimeError(
            f"ttnn.copy_host_to_device_tensor: host tensor has {src.shape[0]} shards, the device tensor {shards}"
        )
    device_tensor._data = src.expand(shards, *src.shape[1:]).to(device_tensor._data.device).clone()


def _guard(fn: Callable, action: str, device_arg: str | None) -> Callable:
    """Wrap a core host-traffic function so that it fails inside a trace capture."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _captures:
            from ._common import device_of, is_tensor

            if device_arg is None:  # reads: the tensor's device
                target = device_of(args[0]) if args and is_tensor(args[0]) else None
                if target is not None:
                    assert_not_capturing(target, action)
            else:  # writes: the destination device
                target = kwargs.get(device_arg)
                if target is None and device_arg == "device" and len(args) > 1 and fn.__name__ == "to_device":
                    target = args[1]
                if target is not None:
                    assert_not_capturing(target, action)
        return fn(*args, **kwargs)

    return wrapper


def _host_traffic_functions() -> dict[str, Callable]:
    from .. import tensor as core

    return {
        "from_torch": _guard(core.from_torch, "ttnn.from_torch(..., device=...)", "device"),
        "to_device": _guard(core.to_device, "ttnn.to_device", "device"),
        "to_torch": _guard(core.to_torch, "ttnn.to_torch of a device tensor", None),
        "from_device": _guard(core.from_device, "ttnn.from_device", None),
    }


_host_traffic = _host_traffic_functions()
from_torch = _host_traffic["from_torch"]
to_device = _host_traffic["to_device"]
to_torch = _host_traffic["to_torch"]
from_device = _host_traffic["from_device"]

__all__ = [
    "begin_trace_capture", "end_trace_capture", "execute_trace", "release_trace", "MeshTraceId",
    "copy_host_to_device_tensor", "from_torch", "to_device", "to_torch", "from_device", "TraceError",
]
