"""A live server on a loopback port for the serving tests (module-scoped: started once per module)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from deepseek_tt.serving.launch import ServingStack, load_serving_stack

SERVED_NAME = "deepseek-ai/DeepSeek-R1-0528"


@dataclass
class LiveServer:
    url: str
    stack: ServingStack

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def serving_model_path(preset_checkpoint):
    """The embedded trained model; a 2-layer ``galaxy-tiny`` checkpoint in a checkout without it."""
    try:
        from reference_models.embedded import embedded_model_path

        return embedded_model_path()
    except FileNotFoundError:
        return preset_checkpoint("galaxy-tiny", num_layers=2)


@pytest.fixture(scope="module")
def live_server(serving_model_path, tmp_path_factory) -> Iterator[LiveServer]:
    stack = load_serving_stack(
        model_path=serving_model_path, cache_dir=tmp_path_factory.mktemp("serving-cache"), mesh_shape=(1, 1),
        max_seq_len=256, served_names=[SERVED_NAME],
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(stack.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start within 60 s"
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", stack)
    finally:
        server.should_exit = True
        thread.join(30)
        stack.close()
