"""The OpenAI-compatible server on the TT-NN model, started in-process on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVED_NAME = "deepseek-ai/DeepSeek-R1-0528"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_stack(stack, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Serve a ``ServingStack`` with uvicorn on a free loopback port; yields its base URL, closes the stack."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(stack.app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    try:
        if not server.started:
            raise RuntimeError(f"the server did not start within {startup_timeout_s:.0f} s")
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)
        stack.close()


@contextmanager
def started_server(model_path: Path, cache_dir: Path | None = None, mesh_shape: str | tuple[int, int] | None = (1, 1),
                   max_seq_len: int = 512, backend: str | None = None) -> Iterator[str]:
    """Load the TT-NN model of ``model_path`` into a serving stack and serve it; yields the base URL."""
    from deepseek_tt.serving.launch import load_serving_stack

    stack = load_serving_stack(model_path=model_path, cache_dir=cache_dir, mesh_shape=mesh_shape, backend=backend,
                               max_seq_len=max_seq_len, served_names=[SERVED_NAME])
    with serve_stack(stack) as url:
        yield url
