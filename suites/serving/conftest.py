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

from deepseek_tt.serving.engine import BatchingEngine
from deepseek_tt.serving.launch import ServingStack, load_serving_stack
from deepseek_tt.serving.server import create_app

SERVED_NAME = "deepseek-ai/DeepSeek-R1-0528"


@dataclass
class LiveServer:
    url: str
    stack: ServingStack

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 120, **kwargs})

    def openai(self, **kwargs):
        """The real ``openai`` client pointed at this server (no retries: a failure shows at once)."""
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=120, **kwargs)


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


def _serve(stack: ServingStack) -> Iterator[LiveServer]:
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


@pytest.fixture(scope="module")
def live_server(serving_model_path, tmp_path_factory) -> Iterator[LiveServer]:
    """The server on the TT-NN model (emulated), 1x1 mesh, context 256."""
    stack = load_serving_stack(
        model_path=serving_model_path, cache_dir=tmp_path_factory.mktemp("serving-cache"), mesh_shape=(1, 1),
        max_seq_len=256, served_names=[SERVED_NAME],
    )
    yield from _serve(stack)


@pytest.fixture(scope="module")
def fake_server(serving_model_path) -> Iterator[LiveServer]:
    """The same app and engine over a fast deterministic fake model (suites/demo/fake_model.py) with the
    served model's tokenizer: for checks of the HTTP layer (validation, errors, fuzzing) that need no
    real logits. Small request limit (64 KiB) so size checks stay cheap."""
    from contextlib import ExitStack

    from transformers import AutoTokenizer

    from suites.demo.fake_model import FakeModel

    tokenizer = AutoTokenizer.from_pretrained(str(serving_model_path), local_files_only=True)
    model = FakeModel(vocab_size=len(tokenizer), max_batch_size=8, max_seq_len=256)
    engine = BatchingEngine(model, model.hf_config.eos_token_id).start()
    app = create_app(engine, tokenizer, [SERVED_NAME], max_request_bytes=64 * 1024)
    yield from _serve(ServingStack(app, engine, model, tokenizer, ExitStack()))
