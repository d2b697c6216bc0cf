"""The single door to ttnn.

Model code never imports ``ttnn`` directly; it does ``from deepseek_tt.backend import ttnn`` and gets
either the real ``ttnn`` package (Tenstorrent hardware present) or the torch emulator
(``deepseek_tt.backend.emulator``), which exposes the same names, signatures and enums.

Selection: ``DEEPSEEK_TT_BACKEND=auto|ttnn|emulator`` (default ``auto``), or :func:`select_backend`
before the first use (pytest's ``--backend`` does this). ``auto`` picks real ttnn only when it imports
and reports at least one device.
"""

from __future__ import annotations

import importlib
import os
from contextlib import AbstractContextManager, nullcontext
from types import ModuleType
from typing import Any

BACKEND_ENV = "DEEPSEEK_TT_BACKEND"
TORCH_DEVICE_ENV = "DEEPSEEK_TT_TORCH_DEVICE"
BACKEND_CHOICES = ("auto", "ttnn", "emulator")

_module: ModuleType | None = None
_name: str | None = None


class BackendError(RuntimeError):
    """The requested backend cannot be used here."""


def _real_ttnn_has_device() -> bool:
    if os.environ.get("TT_METAL_MOCK_CLUSTER_DESC_PATH"):
        return False  # a mock cluster (conformance runs) reports devices that cannot run kernels
    try:
        real = importlib.import_module("ttnn")
    except Exception:
        return False
    try:
        return int(real.GetNumAvailableDevices()) > 0
    except Exception:
        return False


def select_backend(name: str | None = None) -> str:
    """Choose the backend (``auto``, ``ttnn`` or ``emulator``); returns the resolved name.

    Raises :class:`BackendError` for an unknown name, or for ``ttnn`` when it cannot be imported.
    Selecting again with another name after the model has used a backend is refused: tensors of one
    backend cannot be handed to the other.
    """
    global _module, _name
    requested = (name or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if requested not in BACKEND_CHOICES:
        raise BackendError(
            f"unknown backend {requested!r} (from --backend or ${BACKEND_ENV}); expected one of {', '.join(BACKEND_CHOICES)}"
        )
    resolved = requested
    if requested == "auto":
        resolved = "ttnn" if _real_ttnn_has_device() else "emulator"
    if _name is not None and resolved != _name:
        raise BackendError(f"backend already set to {_name!r}; cannot switch to {resolved!r} in one process")
    if resolved == "ttnn":
        try:
            module = importlib.import_module("ttnn")
        except Exception as exc:  # pragma: no cover - depends on the machine
            raise BackendError(f"--backend ttnn: the real ttnn package does not import here ({exc})") from exc
    else:
        module = importlib.import_module("deepseek_tt.backend.emulator")
    _module, _name = module, resolved
    return resolved


def get_ttnn() -> ModuleType:
    """The selected ttnn module (selecting from the environment on first use)."""
    if _module is None:
        select_backend()
    assert _module is not None
    return _module


def backend_name() -> str:
    """``"ttnn"`` or ``"emulator"``."""
    get_ttnn()
    assert _name is not None
    return _name


def torch_device_name() -> str:
    """Where the emulator computes: ``$DEEPSEEK_TT_TORCH_DEVICE``, else CUDA when present, else CPU."""
    requested = os.environ.get(TORCH_DEVICE_ENV)
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_backend() -> str:
    """One line for logs, the pytest header and result rows, e.g. ``emulator (torch cpu)``."""
    name = backend_name()
    return f"emulator (torch {torch_device_name()})" if name == "emulator" else "ttnn (Tenstorrent device)"


def skip_empty_decode_slots(positions_tensor: Any) -> AbstractContextManager[None]:
    """Within the block, the emulator computes a decode step's active slots only: products whose rows are
    the slots and the MoE's expert rows (``positions_tensor``: the step's per-device positions, -1 for an
    empty slot; empty slots' rows come back NaN). A device computes every slot: there it changes nothing."""
    if backend_name() != "emulator":
        return nullcontext()
    from deepseek_tt.backend.emulator.ops._decode_slots import skip_empty_decode_slots as skip

    return skip(positions_tensor)


class _TtnnProxy:
    """Module-like view of the selected backend: ``ttnn.linear`` resolves on each attribute access."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(get_ttnn(), attr)

    def __repr__(self) -> str:
        return f"<ttnn proxy -> {_name or 'unselected'}>"


ttnn: Any = _TtnnProxy()

__all__ = [
    "BACKEND_CHOICES",
    "BACKEND_ENV",
    "BackendError",
    "backend_name",
    "describe_backend",
    "get_ttnn",
    "select_backend",
    "skip_empty_decode_slots",
    "torch_device_name",
    "ttnn",
]
