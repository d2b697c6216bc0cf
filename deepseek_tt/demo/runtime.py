"""Opening the mesh and loading the model runtime behind the facade (``TtModel`` or ``ReferenceModel``)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from deepseek_tt.demo.model_source import ModelChoice

log = logging.getLogger("deepseek_tt.demo")

RUNTIMES = ("tt", "reference")
#: The runtime the demo uses unless told otherwise: the TT-NN model.
DEFAULT_RUNTIME = "tt"
TRACE_REGION_SIZE = 64 * 1024 * 1024


def resolve_runtime(runtime: str | None) -> str:
    """``tt`` (the TT-NN model) or ``reference`` (transformers on torch); ``None`` is the default."""
    runtime = runtime or DEFAULT_RUNTIME
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    return runtime


@contextmanager
def open_mesh(mesh_shape: tuple[int, int], enable_trace: bool) -> Iterator[Any]:
    """The mesh device of the selected backend, closed on exit."""
    from deepseek_tt.backend import ttnn

    kwargs = {"trace_region_size": TRACE_REGION_SIZE} if enable_trace else {}
    device = ttnn.open_mesh_device(ttnn.MeshShape(*mesh_shape), **kwargs)
    try:
        yield device
    finally:
        ttnn.close_mesh_device(device)


def load_model(
    runtime: str,
    model: ModelChoice,
    mesh_device: Any,
    cache_dir: Path,
    *,
    dtype_policy: str,
    max_seq_len: int,
    recalculate_weights: bool = False,
    progress: bool = True,
    pipelined: bool = False,
) -> Any:
    """Load ``model`` with the runtime ``runtime`` (``tt`` or ``reference``); ``pipelined``: the TT model's
    decoder layers split over the mesh rows (``--generator pp``)."""
    common = dict(
        dtype_policy=dtype_policy,
        max_seq_len=max_seq_len,
        recalculate_weights=recalculate_weights,
        random_weights=model.random_weights,
        hf_config=model.hf_config,
        progress=progress,
    )
    if runtime == "tt" and pipelined:
        from deepseek_tt.runtime.pipelined_model import PipelinedTtModel

        return PipelinedTtModel.load(model.path, mesh_device, cache_dir, **common, weight_source=model.weights)
    if runtime == "tt":
        from deepseek_tt.runtime.tt_model import TtModel

        return TtModel.load(model.path, mesh_device, cache_dir, **common, weight_source=model.weights)
    from deepseek_tt.runtime.reference_model import ReferenceModel

    import torch

    big = model.random_weights and model.hf_config is not None and model.hf_config.hidden_size >= 4096
    return ReferenceModel.load(model.path, mesh_device, cache_dir, **common, dtype=torch.bfloat16 if big else torch.float32)


__all__ = ["DEFAULT_RUNTIME", "RUNTIMES", "load_model", "open_mesh", "resolve_runtime"]
