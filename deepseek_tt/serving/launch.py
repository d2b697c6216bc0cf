"""Assemble model, tokenizer, engine and app (shared by the CLI and the tests)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from transformers import AutoTokenizer

from deepseek_tt.config.mesh import default_mesh_shape, parse_mesh_shape
from deepseek_tt.demo.model_source import ModelChoice, resolve_cache_dir, resolve_model_path
from deepseek_tt.demo.runtime import load_model, open_mesh, resolve_runtime
from deepseek_tt.serving.engine import BatchingEngine
from deepseek_tt.serving.server import DEFAULT_MAX_REQUEST_BYTES, create_app


@dataclass
class ServingStack:
    app: FastAPI
    engine: BatchingEngine
    model: Any
    tokenizer: Any
    _resources: ExitStack

    def close(self) -> None:
        self.engine.stop()
        self._resources.close()


def load_serving_stack(
    model_path: Path | None = None,
    cache_dir: Path | None = None,
    mesh_shape: str | tuple[int, int] | None = None,
    backend: str | None = None,
    runtime: str | None = None,
    max_seq_len: int = 1024,
    served_names: list[str] | None = None,
    dtype_policy: str = "default",
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    recalculate_weights: bool = False,
) -> ServingStack:
    """Open the mesh, load the model (converting weights through the cache) and start the engine."""
    from deepseek_tt import backend as backend_module

    backend_module.select_backend(backend)
    shape = parse_mesh_shape(mesh_shape) if isinstance(mesh_shape, str) else (mesh_shape or default_mesh_shape())
    cache = resolve_cache_dir(cache_dir)
    path, _source = resolve_model_path(model_path, cache)
    resources = ExitStack()
    try:
        mesh_device = resources.enter_context(open_mesh(shape, enable_trace=False))
        model = load_model(resolve_runtime(runtime), ModelChoice(path, _source), mesh_device, cache, dtype_policy=dtype_policy,
                           max_seq_len=max_seq_len, recalculate_weights=recalculate_weights, progress=False)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        engine = BatchingEngine(model, model.hf_config.eos_token_id).start()
    except BaseException:
        resources.close()
        raise
    names = list(dict.fromkeys([*(served_names or []), path.name]))
    return ServingStack(create_app(engine, tokenizer, names, max_request_bytes=max_request_bytes), engine, model, tokenizer, resources)
