"""Whether a model's dims split over a mesh, asked before anything is loaded (``--mesh-shape``).

The rules are the model modules' own checks (MLA heads and hidden size, dense and shared-expert MLP
widths, routed experts per device, users per device), called with a shape-only stand-in for the mesh,
plus the two that live inside weight conversion (the LM head's vocabulary and the norms' hidden size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepseek_tt.backend import ttnn
from deepseek_tt.config.mesh import NAMED_MESH_SHAPES, format_mesh_shape


@dataclass(frozen=True)
class MeshShapeOnly:
    """Just the ``shape`` of a mesh: what the modules' dimension checks read."""

    shape: tuple[int, int]


def mesh_problems(hf_config: Any, mesh: tuple[int, int], users_per_row: int | None = None) -> list[str]:
    """Every reason the model of ``hf_config`` cannot run on a ``mesh`` (empty when it fits)."""
    from deepseek_tt.modules import kv_cache
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


__all__ = ["describe_misfit", "fitting_meshes", "mesh_problems", "tiling_problems"]
