"""The OpenAI-compatible server through a real HTTP client on a loopback port."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from suites.serving.conftest import SERVED_NAME

pytestmark = pytest.mark.unit

#: The seed README's request, as written.
SEED_CURL_BODY = {"model": SERVED_NAME, "prompt": "San Francisco is a", "max_tokens": 32, "temperature": 0, "top_p": 0.9, "top_k": 10}

PROMPTS = [f"The {word} module provides" for word in
           "os sys json re string socket pickle shutil random logging".split()]


def _complete(client: httpx.Client, prompt: str, max_tokens: int = 8, **extra) -> dict:
    response = client.post("/v1/completions", json={"model": SERVED_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def _stream_events(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def test_seed_curl_request(live_server):
    with live_server.client() as client:
        response = client.post("/v1/completions", headers={"Content-Type": "application/json"}, content=json.dumps(SEED_CURL_BODY))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["model"] == SERVED_NAME
    choice = body["choices"][0]
    assert choice["finish_reason"] in ("length", "stop")
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(live_server.stack.tokenizer.encode(SEED_CURL_BODY["prompt"]))
    assert 1 <= usage["completion_tokens"] <= 32
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if choice["finish_reason"] == "length":
        assert usage["completion_tokens"] == 32


def test_models_endpoint_lists_the_served_model(live_server):
    with live_server.client() as client:
        data = client.get("/v1/models").json()["data"]
    assert SERVED_NAME in [entry["id"] for entry in data]


def test_streaming_matches_the_non_streaming_answer(live_server):
    with live_server.client() as client:
        whole = _complete(client, PROMPTS[0], max_tokens=16)
        with client.stream("POST", "/v1/completions", json={"model": SERVED_NAME, "prompt": PROMPTS[0], "max_tokens": 16, "temperature": 0, "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _stream_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_concurrent_requests_are_batched_and_match_their_single_answers(live_server):
    with live_server.client() as client:
        alone = {prompt: _complete(client, prompt)["choices"][0]["text"] for prompt in PROMPTS}
    engine = live_server.stack.engine
    before = engine.stats.max_active
    engine.stats.max_active = 0
    with ThreadPoolExecutor(max_workers=len(PROMPTS)) as pool, live_server.client() as client:
        together = dict(zip(PROMPTS, pool.map(lambda p: _complete(client, p)["choices"][0]["text"], PROMPTS)))
    assert together == alone
    assert engine.stats.max_active > 1, "concurrent requests were served one after another"
    engine.stats.max_active = max(before, engine.stats.max_active)


def test_client_disconnect_mid_stream_frees_its_slot(live_server):
    engine = live_server.stack.engine
    with live_server.client() as client:
        with client.stream("POST", "/v1/completions", json={"model": SERVED_NAME, "prompt": PROMPTS[1], "max_tokens": 200, "temperature": 0, "stream": True}) as response:
            lines = response.iter_lines()
            received = [line for _, line in zip(range(4), lines)]
            assert any(line.startswith("data: ") for line in received)
        # the stream is closed here, long before 200 tokens; the server keeps serving others
        answer = _complete(client, PROMPTS[2], max_tokens=8)
    assert answer["usage"]["completion_tokens"] >= 1
    import time

    deadline = time.monotonic() + 30
    while engine.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.active == 0, "the disconnected request still holds a decode slot"


def test_client_disconnect_without_streaming_frees_its_slot(live_server):
    """A non-streaming client that gives up (read timeout) must not keep its slot for 200 tokens."""
    engine = live_server.stack.engine
    cancelled = engine.stats.cancelled
    with httpx.Client(base_url=live_server.url, timeout=httpx.Timeout(120, read=1.0)) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/completions", json={"model": SERVED_NAME, "prompt": PROMPTS[3], "max_tokens": 200, "temperature": 0})
    import time

    deadline = time.monotonic() + 60
    while (engine.active or engine.stats.cancelled == cancelled) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.stats.cancelled == cancelled + 1, "the abandoned request was not cancelled"
    assert engine.active == 0, "the abandoned request still holds a decode slot"
