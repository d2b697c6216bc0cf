"""Whether a model fits a mesh, asked before anything is loaded (``--mesh-shape``): its dims split over the mesh,
and its weights and KV cache fit the chips' DRAM.

The split rules are the model modules' own checks (MLA heads and hidden size, dense and shared-expert MLP
widths, routed experts per device, users per device), called with a shape-only stand-in for the mesh,
plus the two that live inside weight conversion (the LM head's vocabulary and the norms' hidden size).
The memory rule adds up the weight and KV-cache bytes of the fullest device as the model lays them out
(``perf.roofline``) against the DRAM of the mesh device's architecture (``perf.hardware``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepseek_tt.backend import ttnn
from deepseek_tt.config.mesh import NAMED_MESH_SHAPES, format_mesh_shape
from deepseek_tt.modules import kv_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeshShapeOnly:
    """Just the ``shape`` of a mesh: what the modules' dimension checks read."""

    shape: tuple[int, int]


def mesh_problems(hf_config: Any, mesh: tuple[int, int], users_per_row: int | None = None) -> list[str]:
    """Every reason the model of ``hf_config`` cannot run on a ``mesh`` (empty when it fits)."""
    from deepseek_tt.modules.experts import experts_per_device
    from deepseek_tt.modules.mla import _check_mesh
    from deepseek_tt.modules.mlp import MLP, SharedExpert

    rows, cols = int(mesh[0]), int(mesh[1])
    stand_in = MeshShapeOnly((rows, cols))
    n_layers = int(hf_config.num_hidden_layers)
    has_dense = min(int(getattr(hf_config, "first_k_dense_replace", 0) or 0), n_layers) > 0
    has_moe = n_layers > int(getattr(hf_config, "first_k_dense_replace", 0) or 0)
    checks: list[Callable[[], Any]] = [
        lambda: _check_mesh(hf_config, stand_in),
        lambda: kv_cache.users_per_device(users_per_row or kv_cache.USERS_PER_ROW, cols),
    ]
    if has_dense:
        checks.append(lambda: MLP._check_dims(hf_config, stand_in))
    if has_moe:
        checks += [lambda: SharedExpert._check_dims(hf_config, stand_in), lambda: experts_per_device(hf_config, stand_in)]
    problems = []
    for check in checks:
        try:
            check()
        except ValueError as exc:
            problems.append(str(exc))
    if int(hf_config.vocab_size) % (cols * ttnn.TILE_SIZE):
        problems.append(f"LMHead: vocab_size {hf_config.vocab_size} does not split into tiles over {cols} mesh columns")
    return problems


def tiling_problems(hf_config: Any) -> list[str]:
    """Dims the TT-NN ops cannot take on any mesh (the rotary op works on whole 32-wide tiles)."""
    rope = int(hf_config.qk_rope_head_dim)
    if rope % ttnn.TILE_SIZE:
        return [f"qk_rope_head_dim {rope} is not a multiple of {ttnn.TILE_SIZE} (ttnn.experimental.rotary_embedding_llama needs whole tiles)"]
    return []


def fitting_meshes(hf_config: Any) -> list[str]:
    """The named meshes (N150, N300, T3K, TG, DUAL, QUAD) the model splits over, as ``NAME (RxC)``."""
    return [f"{name} ({format_mesh_shape(shape)})" for name, shape in NAMED_MESH_SHAPES.items() if not mesh_problems(hf_config, shape)]


def describe_misfit(hf_config: Any, mesh: tuple[int, int]) -> str | None:
    """One line saying why the model does not fit ``mesh`` and which meshes it does fit; None when it fits."""
    problems = mesh_problems(hf_config, mesh)
    if not problems:
        return None
    fits = fitting_meshes(hf_config)
    where = f"it fits {', '.join(fits)}" if fits else "it fits none of the named meshes"
    return f"the model's dims do not split over a {format_mesh_shape(mesh)} mesh: {'; '.join(problems)} ({where})"


def device_memory_need(hf_config: Any, dtype_policy: Any, mesh: tuple[int, int], parallelism: str, max_seq_len: int,
                       users_per_row: int = kv_cache.USERS_PER_ROW) -> float:
    """Bytes of weights and KV cache on the fullest device (``perf.roofline``'s layout, checked against the
    loaded models' own tensors by the unit tests): what a device needs at least, before activations and
    program and trace buffers."""
    from deepseek_tt.perf.roofline import stored_kv_cache_bytes_per_device, stored_weight_bytes_per_device

    weights = stored_weight_bytes_per_device(hf_config, dtype_policy, mesh, parallelism)
    kv = stored_kv_cache_bytes_per_device(hf_config, dtype_policy, mesh, parallelism, max_seq_len, users_per_row)
    return max(w + k for w, k in zip(weights, kv))


def describe_memory_misfit(hf_config: Any, dtype_policy: Any, mesh: tuple[int, int], parallelism: str, max_seq_len: int,
                           capacity_bytes: int, users_per_row: int = kv_cache.USERS_PER_ROW) -> str | None:
    """One line saying that the weights and KV cache exceed a chip's ``capacity_bytes`` of DRAM on ``mesh``, and
    with what they fit (a named mesh, the other generator, a shorter ``--max-seq-len``); None when they fit."""
    need = device_memory_need(hf_config, dtype_policy, mesh, parallelism, max_seq_len, users_per_row)
    if need <= capacity_bytes:
        return None
    gib = lambda b: f"{b / 2**30:.1f} GiB"  # noqa: E731
    other = "pp" if parallelism == "bp" else "bp"
    options = [f"--mesh-shape {name} ({format_mesh_shape(shape)})" for name, shape in NAMED_MESH_SHAPES.items()
               if shape[0] * shape[1] > mesh[0] * mesh[1] and not mesh_problems(hf_config, shape)
               and _fits(hf_config, dtype_policy, shape, parallelism, max_seq_len, capacity_bytes, users_per_row)][:1]
    if mesh[0] > 1 and _fits(hf_config, dtype_policy, mesh, other, max_seq_len, capacity_bytes, users_per_row):
        options.append(f"--generator {other}")
    shortest = 1024 if max_seq_len > 1024 else None
    if shortest and _fits(hf_config, dtype_policy, mesh, parallelism, shortest, capacity_bytes, users_per_row):
        options.append(f"--max-seq-len {shortest}")
    hint = f"it fits with {' or '.join(options)}" if options else "no named mesh, generator or shorter context fits it"
    policy = getattr(dtype_policy, "name", dtype_policy)
    return (f"the weights ({policy} policy) and KV cache ({max_seq_len} tokens per user) need at least "
            f"{gib(need)} on the fullest chip of the {format_mesh_shape(mesh)} mesh under --generator {parallelism}, "
            f"more than a chip's {gib(capacity_bytes)} of DRAM ({hint})")


def _fits(hf_config: Any, dtype_policy: Any, mesh: tuple[int, int], parallelism: str, max_seq_len: int, capacity: int,
          users_per_row: int) -> bool:
    try:
        return device_memory_need(hf_config, dtype_policy, mesh, parallelism, max_seq_len, users_per_row) <= capacity
    except ValueError:  # e.g. pp with fewer layers than rows, users that do not split over the columns
        return False


class DeviceMemoryError(ValueError):
    """The model's weights and KV cache cannot fit the chips of the mesh device."""


def check_device_memory(hf_config: Any, dtype_policy: Any, mesh_device: Any, parallelism: str, max_seq_len: int,
                        users_per_row: int = kv_cache.USERS_PER_ROW) -> None:
    """Before any weight is converted or loaded (``TtModel.load``, ``PipelinedTtModel.load``): :class:`DeviceMemoryError`
    (naming ``--mesh-shape``) when the model cannot fit the DRAM of ``mesh_device``'s chips (``arch()``). The
    emulator, which holds the model in host memory, runs it: there the misfit is a warning. Nothing is checked for
    an architecture of unknown DRAM."""
    from deepseek_tt.backend import backend_name
    from deepseek_tt.perf.hardware import DRAM_BYTES_PER_CHIP

    arch = mesh_device.arch()
    capacity = DRAM_BYTES_PER_CHIP.get(getattr(arch, "name", str(arch)))
    if capacity is None:
        log.info("no DRAM capacity known for %s: the model's device memory is not checked", arch)
        return
    mesh = tuple(int(d) for d in tuple(mesh_device.shape))
    misfit = describe_memory_misfit(hf_config, dtype_policy, mesh, parallelism, max_seq_len, capacity, users_per_row)
    if misfit is None:
        return
    where = f"--mesh-shape {format_mesh_shape(mesh)}"
    if backend_name() == "emulator":
        log.warning("%s: on a device %s; the emulator runs it in host memory", where, misfit)
        return
    raise DeviceMemoryError(f"{where}: {misfit}")


__all__ = ["DeviceMemoryError", "check_device_memory", "describe_memory_misfit", "describe_misfit", "device_memory_need", "fitting_meshes", "mesh_problems", "tiling_problems"]
