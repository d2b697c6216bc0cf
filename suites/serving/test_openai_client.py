"""The server through the real ``openai`` Python client: completions, chat, streaming, logprobs, echo,
``n``, seeds, neutral parameters (on the TT-NN model, emulated) and every error kind (on the same app over
a fast fake model, since errors never reach the model)."""

from __future__ import annotations

import math

import openai
import pytest

from suites.serving.conftest import SERVED_NAME

pytestmark = pytest.mark.unit

PROMPT = "A list is a mutable sequence of"
CHAT = [{"role": "system", "content": "You answer questions about Python."},
        {"role": "user", "content": "What does the json module provide?"}]


@pytest.fixture(scope="module")
def client(live_server):
    return live_server.openai()


@pytest.fixture(scope="module")
def fake_client(fake_server):
    return fake_server.openai()


def test_completion(client, live_server):
    response = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=6, temperature=0)
    choice = response.choices[0]
    assert response.object == "text_completion" and choice.finish_reason in ("length", "stop") and choice.text
    assert response.usage.prompt_tokens == len(live_server.stack.tokenizer.encode(PROMPT))
    assert response.usage.completion_tokens == 6 or choice.finish_reason == "stop"
    assert choice.logprobs is None


def test_completion_stream_with_usage_matches_the_whole_answer(client):
    whole = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=6, temperature=0)
    chunks = list(client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=6, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


def test_completion_logprobs_are_top_k_of_the_raw_distribution(client):
    response = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=3)
    lp = response.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert "".join(lp.tokens) == response.choices[0].text
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) <= 3 and all(v <= 0 for v in top.values())
        # greedy: the chosen token is the most likely one, so its logprob is the top one
        assert logprob == pytest.approx(max(top.values()), abs=1e-6)
        assert math.fsum(math.exp(v) for v in top.values()) <= 1 + 1e-5


def test_echo_with_max_tokens_zero_gives_the_prompt_logprobs(client, live_server):
    prompt_ids = live_server.stack.tokenizer.encode(PROMPT)
    response = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=0, echo=True, logprobs=2)
    choice = response.choices[0]
    assert choice.text == PROMPT and choice.finish_reason == "length"
    assert response.usage.completion_tokens == 0 and response.usage.prompt_tokens == len(prompt_ids)
    lp = choice.logprobs
    assert len(lp.token_logprobs) == len(prompt_ids)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v is not None and v <= 0 for v in lp.token_logprobs[1:])
    assert all(len(top) == 2 and max(top.values()) >= v - 1e-6 for top, v in zip(lp.top_logprobs[1:], lp.token_logprobs[1:]))
    # echo with generation: the prompt's entries, then the generated tokens'
    more = client.completions.create(model=SERVED_NAME, prompt=prompt_ids, max_tokens=2, echo=True, logprobs=1, temperature=0)
    assert len(more.choices[0].logprobs.token_logprobs) == len(prompt_ids) + 2
    assert more.choices[0].logprobs.token_logprobs[1:len(prompt_ids)] == pytest.approx(lp.token_logprobs[1:], abs=1e-5)


def test_n_choices_and_seeds(client):
    def texts(**kw):
        r = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=8, temperature=1.0, **kw)
        return [c.text for c in sorted(r.choices, key=lambda c: c.index)]

    seeded = texts(n=2, seed=7)
    assert len(seeded) == 2 and seeded == texts(n=2, seed=7)  # a seed makes sampling reproducible
    assert seeded[0] != seeded[1]  # each choice has its own stream
    # no seed: a fresh one per request (8 sampled tokens of a 4096-token vocabulary never repeat by chance)
    assert texts() != texts()


def test_several_prompts_in_one_request(client):
    prompts = [PROMPT, "The os module provides"]
    response = client.completions.create(model=SERVED_NAME, prompt=prompts, max_tokens=4, temperature=0, n=2)
    assert sorted(c.index for c in response.choices) == [0, 1, 2, 3]
    alone = [client.completions.create(model=SERVED_NAME, prompt=p, max_tokens=4, temperature=0).choices[0].text for p in prompts]
    by_index = {c.index: c.text for c in response.choices}
    assert [by_index[0], by_index[1], by_index[2], by_index[3]] == [alone[0], alone[0], alone[1], alone[1]]


def test_neutral_parameters_are_accepted(client):
    plain = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=4, temperature=0)
    neutral = client.completions.create(
        model=SERVED_NAME, prompt=PROMPT, max_tokens=4, temperature=0, frequency_penalty=0, presence_penalty=0,
        logit_bias={}, best_of=1, logprobs=None, suffix=None, user="someone", top_p=1, echo=False,
        extra_body={"top_k": -1, "repetition_penalty": 1.0})
    assert neutral.choices[0].text == plain.choices[0].text


def test_stop_string_ends_the_text_before_it(client):
    whole = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=12, temperature=0).choices[0].text
    words = whole.split()
    assert len(words) >= 2, whole
    stop = words[1]
    cut = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == whole[: whole.index(stop)]


def test_chat_completion_uses_the_models_template(client, live_server):
    tokenizer = live_server.stack.tokenizer
    rendered = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith(tokenizer.bos_token) and rendered.endswith("<｜Assistant｜>")
    response = client.chat.completions.create(model=SERVED_NAME, messages=CHAT, max_tokens=6, temperature=0)
    choice = response.choices[0]
    assert response.object == "chat.completion" and choice.message.role == "assistant"
    assert response.usage.prompt_tokens == len(tokenizer.encode(rendered, add_special_tokens=False))
    # the same engine: the chat answer is the completion of the rendered prompt
    ids = tokenizer.encode(rendered, add_special_tokens=False)
    same = client.completions.create(model=SERVED_NAME, prompt=ids, max_tokens=6, temperature=0)
    assert choice.message.content == same.choices[0].text
    assert choice.finish_reason == same.choices[0].finish_reason


def test_chat_stream_logprobs_and_usage(client):
    whole = client.chat.completions.create(model=SERVED_NAME, messages=CHAT, max_tokens=5, temperature=0,
                                           logprobs=True, top_logprobs=2)
    entries = whole.choices[0].logprobs.content
    assert len(entries) == whole.usage.completion_tokens
    assert all(len(e.top_logprobs) == 2 and e.logprob == pytest.approx(e.top_logprobs[0].logprob, abs=1e-6) for e in entries)
    chunks = list(client.chat.completions.create(model=SERVED_NAME, messages=CHAT, max_tokens=5, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_models_list(client):
    assert SERVED_NAME in [m.id for m in client.models.list()]


# -- errors: every kind comes back in OpenAI's format, so the client raises the right class with the message

BAD_COMPLETIONS = [
    ({"temperature": 3.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"seed": 2**64}, "seed"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"presence_penalty": -1}, "presence_penalty"),
    ({"logit_bias": {"5": 10}}, "logit_bias"),
    ({"best_of": 3}, "best_of"),
    ({"suffix": "tail"}, "suffix"),
    ({"logprobs": 21}, "logprobs"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"n": 100}, "n"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"max_tokens": 10_000}, "prompt"),
    ({"prompt": [0, 99_999]}, "prompt"),
    ({"extra_body": {"mystery": 1}}, "mystery"),
]


@pytest.mark.parametrize(("kwargs", "param"), BAD_COMPLETIONS, ids=[p + str(i) for i, (_, p) in enumerate(BAD_COMPLETIONS)])
def test_invalid_completion_is_a_400_naming_the_parameter(fake_client, kwargs, param):
    args = {"model": SERVED_NAME, "prompt": "x", "max_tokens": 2, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        fake_client.completions.create(**args)
    error = info.value
    assert error.status_code == 400 and error.body["type"] == "invalid_request_error"
    assert error.body["param"] == param and param in error.message


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages.0.content"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"max_tokens": 10_000}, "messages"),
])
def test_invalid_chat_request_is_a_400_naming_the_parameter(fake_client, kwargs, param):
    args = {"model": SERVED_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        fake_client.chat.completions.create(**args)
    assert info.value.body["param"].startswith(param), info.value.body


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
@pytest.mark.parametrize("field", ["temperature", "top_p", "frequency_penalty"])
def test_non_finite_numbers_are_a_400(fake_server, field, literal):
    """JSON extensions the openai client refuses to send but Python's parser reads: a 400, not a 500."""
    body = b'{"model": "%s", "prompt": "x", "max_tokens": 1, "%s": %s}' % (SERVED_NAME.encode(), field.encode(), literal)
    with fake_server.client() as http:
        response = http.post("/v1/completions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["param"] == field


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/completions", b'{"model": "%s", "prompt": "\\ud800 lone", "max_tokens": 1}'),
    ("/v1/completions", b'{"model": "%s", "prompt": "x", "stop": ["\\udfff"], "max_tokens": 1}'),
    ("/v1/chat/completions", b'{"model": "%s", "messages": [{"role": "user", "content": "\\ud83d"}], "max_tokens": 1}'),
])
def test_lone_surrogate_is_a_400(fake_server, path, body):
    """Escaped lone surrogates are valid JSON but not Unicode text (the openai client cannot send them)."""
    with fake_server.client() as http:
        response = http.post(path, content=body % SERVED_NAME.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "surrogate" in response.json()["error"]["message"]


def test_unknown_model_is_404_model_not_found(fake_client):
    with pytest.raises(openai.NotFoundError) as info:
        fake_client.completions.create(model="gpt-4", prompt="x")
    assert info.value.body["code"] == "model_not_found" and "gpt-4" in info.value.message
    with pytest.raises(openai.NotFoundError):
        fake_client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])


def test_body_over_the_limit_is_413(fake_client):
    with pytest.raises(openai.APIStatusError) as info:
        fake_client.completions.create(model=SERVED_NAME, prompt="word " * 20_000, max_tokens=1)
    assert info.value.status_code == 413 and info.value.body["code"] == "request_too_large"
    assert "--max-request-bytes" in info.value.message


def test_malformed_json_is_a_400(fake_server):
    with fake_server.client() as http:
        response = http.post("/v1/completions", content=b'{"model": "x", "prompt": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "JSON" in error["message"] and error["type"] == "invalid_request_error"


def test_tokenization_runs_off_the_event_loop(fake_server, monkeypatch):
    """While one prompt is being tokenized (held until /health has answered), other clients are served:
    on the event loop the tokenizer would block /health, and the held call would time out first."""
    import threading

    tokenizer = fake_server.stack.tokenizer
    real_encode = tokenizer.encode
    started, health_answered = threading.Event(), threading.Event()
    held_until_health: list[bool] = []

    def encode(text, *args, **kwargs):
        if text == "HOLD":
            started.set()
            held_until_health.append(health_answered.wait(timeout=30))
        return real_encode(text, *args, **kwargs)

    monkeypatch.setattr(tokenizer, "encode", encode)
    result: list[int] = []

    def held_request() -> None:
        with fake_server.client() as http:
            result.append(http.post("/v1/completions", json={"model": SERVED_NAME, "prompt": "HOLD", "max_tokens": 1}).status_code)

    thread = threading.Thread(target=held_request)
    thread.start()
    assert started.wait(timeout=60), "the held prompt never reached the tokenizer"
    with fake_server.client(timeout=60) as http:
        assert http.get("/health").status_code == 200
    health_answered.set()
    thread.join(60)
    assert held_until_health == [True], "/health was not answered while a prompt was being tokenized"
    assert result == [200]
