"""The three-stage module contract (docs/DESIGN.md section 3).

A module is a namespace class, never instantiated; every module implements these signatures as declared
on :class:`AbstractModule` (arguments a module does not need are accepted and ignored)::

    weight_config = MLP.convert_weights(hf_config, state_dict, out_dir, mesh_device, dtype_policy=policy, progress=False)
    model_config = MLP.decode_model_config(hf_config, mesh_device, users_per_row=32, dtype_policy=policy)
    state = MLP.create_state(hf_config, mesh_device, paged_config, caches=None, dtype_policy=policy)
    cfg = MLP.run_config(model_config, weight_config, state)
    y = MLP.forward_decode(x, cfg, ctx)                                 # or forward_prefill

``ctx`` is the per-call :class:`~deepseek_tt.modules.forward_context.ForwardContext` (mode, RoPE tensors,
page table, user id or decode positions, optional stage observer); modules that need none accept ``None``.
``state_dict`` holds the module's own HF tensors with keys relative to the module (``"gate_proj.weight"``);
``output_path`` is a directory the module writes its converted tensors into; the returned weight config
mirrors the model config's key structure with :class:`WeightRecord` leaves. :func:`save_weight` is the
one way to write a converted tensor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.config.dtype_policy import DtypePolicy, get_dtype_policy
from deepseek_tt.config.run_config import MESH_DEVICE_KEY, RunConfig, WeightRecord, create_run_config
from deepseek_tt.modules.forward_context import ForwardContext
from deepseek_tt.modules.kv_cache import USERS_PER_ROW, PagedConfig

#: File suffix of a dumped ttnn tensor.
TENSOR_SUFFIX = ".tensorbin"


class AbstractModule:
    """Base of the namespace classes; every stage is a classmethod."""

    def __init__(self) -> None:  # pragma: no cover - guard
        raise TypeError(f"{type(self).__name__} is a namespace class; use its classmethods")

    @classmethod
    def convert_weights(
        cls,
        hf_config: Any,
        state_dict: Mapping[str, torch.Tensor],
        output_path: Path,
        mesh_device: Any,
        *,
        dtype_policy: DtypePolicy | str | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Convert and save the module's weights; ``progress`` shows a bar where a module has long loops."""
        raise NotImplementedError

    @classmethod
    def model_config(
        cls, hf_config: Any, mesh_device: Any, mode: str, *, users_per_row: int = USERS_PER_ROW,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        """The op configs of ``mode`` (``"prefill"`` / ``"decode"``): a module whose configs differ by mode
        only through this argument implements this, and the two methods below call it."""
        raise NotImplementedError

    @classmethod
    def prefill_model_config(
        cls, hf_config: Any, mesh_device: Any, *, users_per_row: int = USERS_PER_ROW, dtype_policy: DtypePolicy | str | None = None
    ) -> dict[str, Any]:
        return cls.model_config(hf_config, mesh_device, "prefill", users_per_row=users_per_row, dtype_policy=dtype_policy)

    @classmethod
    def decode_model_config(
        cls, hf_config: Any, mesh_device: Any, *, users_per_row: int = USERS_PER_ROW, dtype_policy: DtypePolicy | str | None = None
    ) -> dict[str, Any]:
        return cls.model_config(hf_config, mesh_device, "decode", users_per_row=users_per_row, dtype_policy=dtype_policy)

    @classmethod
    def create_state(
        cls,
        hf_config: Any,
        mesh_device: Any,
        paged_config: PagedConfig | None = None,
        *,
        caches: Any = None,
        dtype_policy: DtypePolicy | str | None = None,
    ) -> dict[str, Any]:
        """Runtime objects of the module; by default just the device (``paged_config`` / ``caches``: the
        KVPE cache geometry and contents, for the modules that hold one)."""
        return {MESH_DEVICE_KEY: mesh_device}

    @classmethod
    def run_config(
        cls,
        model_config: dict[str, Any],
        weight_config: dict[str, Any],
        state: dict[str, Any],
        *,
        weight_root: Path | None = None,
        loaded: dict | None = None,
        shared: RunConfig | None = None,
    ) -> RunConfig:
        """The merge of ``create_run_config``, then :meth:`finalize_run_config`."""
        cfg = create_run_config(model_config, weight_config, state, weight_root=weight_root, loaded=loaded, shared=shared)
        return cls.finalize_run_config(cfg)

    @classmethod
    def finalize_run_config(cls, cfg: RunConfig) -> RunConfig:
        """Post-load step on a merged run config (e.g. stacking loaded expert slots); parents call their
        children's. Default: nothing. Must be idempotent (a config built with ``shared=`` is finalized again)."""
        return cfg

    @classmethod
    def forward_prefill(cls, x: Any, cfg: RunConfig, ctx: ForwardContext | None = None) -> Any:
        """One user's sequence through the module (``ctx``: the call's context; see the module docstring)."""
        raise NotImplementedError

    @classmethod
    def forward_decode(cls, x: Any, cfg: RunConfig, ctx: ForwardContext | None = None) -> Any:
        """One token per user through the module."""
        raise NotImplementedError


# --- helpers shared by all modules ---------------------------------------------------------------


def mesh_shape(mesh_device: Any) -> tuple[int, int]:
    """``(rows, cols)`` of a mesh device."""
    rows, cols = tuple(mesh_device.shape)
    return int(rows), int(cols)


def require_key(state_dict: Mapping[str, torch.Tensor], key: str, shape: tuple[int, ...] | None = None, *, where: str = "") -> torch.Tensor:
    """``state_dict[key]`` with one clear error when it is missing or has the wrong shape."""
    try:
        tensor = state_dict[key]
    except KeyError:
        raise KeyError(f"{where or 'state dict'}: missing weight {key!r}") from None
    if shape is not None and tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{where or 'state dict'}: weight {key!r} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
    return tensor


def save_weight(
    tensor: torch.Tensor,
    path: Path,
    mesh_device: Any,
    *,
    dtype: Any,
    shard_dims: tuple[int | None, int | None] = (None, None),
    layout: Any = None,
    memory_config: Any = None,
) -> WeightRecord:
    """Convert a torch tensor to a mesh-distributed ttnn tensor, dump it to ``path`` and return its record.

    ``shard_dims = (row_dim, col_dim)``: the tensor dim split across mesh rows / columns (``None``
    replicates along that axis). The tensor is converted on the host (no device memory is used) with
    ``ttnn.from_torch(..., mesh_mapper=ttnn.ShardTensor2dMesh(...))`` and written with ``ttnn.dump_tensor``.
    """
    from deepseek_tt.backend import ttnn

    path = Path(path)
    if path.suffix != TENSOR_SUFFIX:
        path = path.with_name(path.name + TENSOR_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, cols = mesh_shape(mesh_device)
    for axis, (dim, n) in enumerate(zip(shard_dims, (rows, cols))):
        if dim is not None and tensor.shape[dim] % n:
            raise ValueError(
                f"{path.name}: dim {dim} of shape {tuple(tensor.shape)} does not split over {n} devices on mesh axis {axis}"
            )
    if memory_config is None:
        memory_config = ttnn.DRAM_MEMORY_CONFIG
    tt_tensor = ttnn.from_torch(
        tensor.contiguous(),
        dtype=dtype,
        layout=layout if layout is not None else ttnn.TILE_LAYOUT,
        memory_config=memory_config,
        mesh_mapper=ttnn.ShardTensor2dMesh(mesh_device, mesh_shape=(rows, cols), dims=shard_dims),
    )
    ttnn.dump_tensor(str(path), tt_tensor)
    return WeightRecord(path=str(path), memory_config=memory_config)


def policy_dtype(dtype_policy: DtypePolicy | str | None, kind: str) -> Any:
    """The ttnn dtype of a weight kind under a policy (name, object or ``None`` = default)."""
    return get_dtype_policy(dtype_policy).dtype(kind)


# Compute-kernel configs are chosen from the dtype policy in one place (re-exported for the modules).
from deepseek_tt.config.compute_kernels import compute_kernel_config, matmul_compute_config  # noqa: E402,F401


class _PrefixView(Mapping[str, torch.Tensor]):
    """Lazy view of a mapping's keys under ``prefix`` (tensors are read only when asked for)."""

    def __init__(self, base: Mapping[str, torch.Tensor], prefix: str) -> None:
        self._base, self._prefix = base, prefix

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._base[self._prefix + key]

    def __iter__(self) -> Iterator[str]:
        cut = len(self._prefix)
        return (k[cut:] for k in self._base if k.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (self._prefix + key) in self._base


def sub_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str) -> Mapping[str, torch.Tensor]:
    """The entries under ``prefix`` (``"gate."``) with the prefix stripped, lazily: ``state_dict.view``
    (``LazyStateDict``, ``RandomStateDict``) when the source has it, else a :class:`_PrefixView`."""
    view = getattr(state_dict, "view", None)
    return view(prefix) if callable(view) else _PrefixView(state_dict, prefix)
