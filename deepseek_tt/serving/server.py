"""An OpenAI-compatible server (FastAPI) over the batching engine.

Endpoints: ``POST /v1/completions`` and ``POST /v1/chat/completions`` (each streaming with
``"stream": true`` as server-sent events), ``GET /v1/models``, ``GET /health``; the OpenAPI schema at
``/openapi.json``. Fields follow OpenAI's (plus vLLM's ``top_k``); see :mod:`.protocol` for what is
accepted and :mod:`.errors` for the error format. Tokenization and chat-template rendering run in worker
threads, never on the event loop; a client that goes away (streaming or not) frees its decode slot.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from deepseek_tt.serving.detokenize import Detokenizer
from deepseek_tt.serving.engine import FINISH_CANCELLED, FINISH_ERROR, BatchingEngine, RequestTooLong, TokenEvent
from deepseek_tt.serving.errors import SERVER_ERROR, BodySizeLimit, OpenAIError, error_body, install_error_handlers
from deepseek_tt.serving.protocol import ChatCompletionRequest, CompletionRequest, _SamplingFields

#: Default of ``--max-request-bytes``: room for a 128k-token prompt as text or token ids, with JSON escapes.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_SUBREQUESTS = 64  # prompts x n in one request


@dataclass
class _Choice:
    """One generated sequence of a request (one prompt x one of ``n``)."""

    index: int
    prompt: list[int]
    detok: Detokenizer
    request: Any = None
    finish: str | None = None
    count: int = 0
    prompt_logprobs: list[tuple[float | None, list[tuple[int, float]] | None]] | None = None
    #: (token id, logprob, top alternatives) of the generated tokens not yet sent
    pending: list[tuple[int, float, list[tuple[int, float]]]] = field(default_factory=list)


class _Tokens:
    """Tokenizer calls off the event loop, token strings for log-probabilities."""

    def __init__(self, tokenizer: Any, vocab_size: int, workers: int = 4) -> None:
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deepseek-tt-tokenize")
        self.token_text = lru_cache(maxsize=65536)(self._token_text)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def render_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise OpenAIError(400, "this model has no chat template (tokenizer_config.json chat_template); use /v1/completions",
                              param="messages", code="no_chat_template")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.encode(text, add_special_tokens=False)  # the template writes bos itself

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _token_text(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False)

    def check_ids(self, ids: list[int]) -> None:
        bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise OpenAIError(400, f"prompt: token id {bad} is outside the vocabulary [0, {self.vocab_size})", param="prompt")


def _refuse_unsupported(body: _SamplingFields) -> None:
    problem = body.unsupported()
    if problem is not None:
        raise OpenAIError(400, problem[1], param=problem[0], code="unsupported_parameter")


def create_app(engine: BatchingEngine, tokenizer: Any, model_names: list[str],
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> FastAPI:
    """The FastAPI app serving ``engine``; ``model_names[0]`` is the id shown in ``/v1/models``."""
    app = FastAPI(title="deepseek-tt", version="1.0",
                  description="DeepSeek-V3 on TT-NN: OpenAI-compatible completions and chat completions")
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=max_request_bytes)
    created = int(time.time())
    tokens = _Tokens(tokenizer, engine.model.vocab_size)
    max_seq_len = engine.model.max_seq_len

    def check_model(name: str) -> None:
        if name not in model_names:
            raise OpenAIError(404, f"the model {name!r} does not exist here; served: {', '.join(model_names)}",
                              param="model", code="model_not_found")

    def check_fits(prompt: list[int], max_tokens: int, param: str) -> None:
        try:
            engine.check_fits(len(prompt), max_tokens)
        except RequestTooLong as exc:
            raise OpenAIError(400, f"{param}: {exc}", param=param, code="context_length_exceeded") from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "active": engine.active}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": created, "owned_by": "deepseek-tt",
                      "max_model_len": max_seq_len} for name in model_names],
        }

    async def generate(choices: list[_Choice], body: _SamplingFields, max_tokens: int, logprobs: int | None,
                       prompt_logprobs: bool) -> AsyncIterator[_Choice]:
        """Submit every choice, then yield a choice each time it has news (text, log-probabilities or its
        finish). Cancels whatever is still running when the consumer stops (a client that went away)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, TokenEvent]] = asyncio.Queue()
        for choice in choices:
            def sink(event: TokenEvent, index: int = choice.index) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, (index, event))

            choice.request = engine.submit(choice.prompt, max_tokens, body.sampling(choice.index), sink,
                                           logprobs=logprobs, prompt_logprobs=prompt_logprobs)
        by_index = {c.index: c for c in choices}
        open_ = len(choices)
        try:
            while open_:
                index, event = await queue.get()
                choice = by_index[index]
                if choice.finish is not None:
                    continue  # events after a stop string ended this choice
                if event.prompt_logprobs is not None:
                    choice.prompt_logprobs = event.prompt_logprobs
                    yield choice
                    continue
                if event.token is not None:
                    choice.count += 1
                    if event.logprob is not None:
                        choice.pending.append((event.token, event.logprob, event.top_logprobs or []))
                    choice.detok.add(event.token)
                    if choice.detok.stopped:
                        choice.request.cancel()
                        choice.finish, open_ = "stop", open_ - 1
                    yield choice
                    continue
                if event.finish == FINISH_ERROR:
                    raise OpenAIError(500, "the model failed while generating this completion", type=SERVER_ERROR)
                if event.finish == FINISH_CANCELLED:
                    return
                choice.detok.flush()
                choice.finish, open_ = ("stop" if event.finish == "stop" else "length"), open_ - 1
                yield choice
        finally:
            for choice in choices:
                if choice.request is not None:
                    choice.request.cancel()

    async def until_disconnected(http_request: Request) -> None:
        """Return when the client closes its connection (the body has been read by then)."""
        while True:
            message = await http_request.receive()
            if message["type"] == "http.disconnect":
                return

    async def collect(events: AsyncIterator[_Choice], http_request: Request) -> bool:
        """Drain ``events``; False when the client went away first (the work is then cancelled)."""
        async def drain() -> None:
            async for _ in events:
                pass

        work = asyncio.ensure_future(drain())
        gone = asyncio.ensure_future(until_disconnected(http_request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            await events.aclose()
            return False
        work.result()  # raises the generation's error, if any
        return True

    def sse(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload)}\n\n"

    async def sse_stream(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
        try:
            async for payload in chunks:
                yield sse(payload)
        except OpenAIError as exc:  # headers are gone: the error becomes an event
            yield sse(exc.body())
        yield "data: [DONE]\n\n"

    def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    # ------------------------------------------------------------------------------ /v1/completions
    def completion_logprobs(entries: list[tuple[int, float | None, list[tuple[int, float]] | None]],
                            offset: int) -> dict[str, Any]:
        out: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for token, logprob, top in entries:
            text = tokens.token_text(token)
            out["tokens"].append(text)
            out["token_logprobs"].append(logprob)
            out["top_logprobs"].append(None if top is None else {tokens.token_text(t): lp for t, lp in top})
            out["text_offset"].append(offset)
            offset += len(text)
        return out

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, http_request: Request):
        check_model(body.model)
        _refuse_unsupported(body)
        prompts = body.prompts()
        n = body.choices()
        if len(prompts) * n > MAX_SUBREQUESTS:
            raise OpenAIError(400, f"prompts x n is {len(prompts) * n}; at most {MAX_SUBREQUESTS} per request", param="n")
        max_tokens = 16 if body.max_tokens is None else body.max_tokens
        prompt_ids: list[list[int]] = []
        for prompt in prompts:
            ids = await tokens.run(tokens.encode, prompt) if isinstance(prompt, str) else prompt
            if not isinstance(prompt, str):
                tokens.check_ids(ids)
            check_fits(ids, max_tokens, "prompt")
            prompt_ids.append(ids)
        echo_texts = [p if isinstance(p, str) else tokens.decode(ids) for p, ids in zip(prompts, prompt_ids)]
        stops = body.stop_strings()
        choices = [_Choice(p * n + i, prompt_ids[p], Detokenizer(tokenizer, stops)) for p in range(len(prompts)) for i in range(n)]
        want_logprobs = body.logprobs is not None
        events = generate(choices, body, max_tokens, body.logprobs, prompt_logprobs=bool(body.echo and want_logprobs))
        completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
        prompt_total = sum(len(ids) for ids in prompt_ids)

        def logprob_entries(choice: _Choice) -> list[tuple[int, float | None, list[tuple[int, float]] | None]]:
            entries: list[tuple[int, float | None, list[tuple[int, float]] | None]] = []
            if choice.prompt_logprobs is not None:
                entries += [(t, lp, top) for t, (lp, top) in zip(choice.prompt, choice.prompt_logprobs)]
                choice.prompt_logprobs = []  # sent once
            entries += [(t, lp, top) for t, lp, top in choice.pending]
            choice.pending.clear()
            return entries

        def payload(index: int, text: str, logprobs: dict[str, Any] | None, finish: str | None) -> dict[str, Any]:
            return {"id": completion_id, "object": "text_completion", "created": int(time.time()), "model": body.model,
                    "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]}

        if body.stream:
            async def chunks() -> AsyncIterator[dict[str, Any]]:
                sent_text = {c.index: 0 for c in choices}
                if body.echo:
                    for choice in choices:
                        if not want_logprobs:
                            yield payload(choice.index, echo_texts[choice.index // n], None, None)
                async for choice in events:
                    text = choice.detok.text[sent_text[choice.index]:]
                    prefix = ""
                    logprobs = None
                    if want_logprobs:
                        had_prompt = choice.prompt_logprobs is not None and len(choice.prompt_logprobs) > 0
                        entries = logprob_entries(choice)
                        if had_prompt:
                            prefix = echo_texts[choice.index // n]
                        logprobs = completion_logprobs(entries, sent_text[choice.index])
                    sent_text[choice.index] += len(text)
                    if text or prefix or choice.finish is not None or (logprobs and logprobs["tokens"]):
                        yield payload(choice.index, prefix + text, logprobs, choice.finish)
                if body.include_usage():
                    yield {"id": completion_id, "object": "text_completion", "created": int(time.time()),
                           "model": body.model, "choices": [], "usage": usage(prompt_total, sum(c.count for c in choices))}

            return StreamingResponse(sse_stream(chunks()), media_type="text/event-stream")

        collected: dict[int, list] = {c.index: [] for c in choices}

        async def record() -> AsyncIterator[_Choice]:
            async for choice in events:
                if want_logprobs:
                    collected[choice.index] += logprob_entries(choice)
                yield choice

        if not await collect(record(), http_request):
            return JSONResponse(error_body("the client closed the connection"), status_code=499)
        result = []
        for choice in choices:
            prefix = echo_texts[choice.index // n] if body.echo else ""
            logprobs = completion_logprobs(collected[choice.index], 0) if want_logprobs else None
            result.append({"index": choice.index, "text": prefix + choice.detok.text, "logprobs": logprobs,
                           "finish_reason": choice.finish or "length"})
        return JSONResponse({"id": completion_id, "object": "text_completion", "created": int(time.time()),
                             "model": body.model, "choices": result,
                             "usage": usage(prompt_total, sum(c.count for c in choices))})

    # ------------------------------------------------------------------------- /v1/chat/completions
    def chat_logprobs(entries: list[tuple[int, float, list[tuple[int, float]]]]) -> list[dict[str, Any]]:
        def item(token: int, logprob: float) -> dict[str, Any]:
            text = tokens.token_text(token)
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

        return [{**item(t, lp), "top_logprobs": [item(a, alp) for a, alp in top]} for t, lp, top in entries]

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, http_request: Request):
        check_model(body.model)
        _refuse_unsupported(body)
        n = body.choices()
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        prompt = await tokens.run(tokens.render_chat, messages)
        requested = body.max_new_tokens()
        max_tokens = requested if requested is not None else max_seq_len - len(prompt)
        check_fits(prompt, max(max_tokens, 1), "messages")
        stops = body.stop_strings()
        choices = [_Choice(i, prompt, Detokenizer(tokenizer, stops)) for i in range(n)]
        logprob_count = body.logprob_count()
        events = generate(choices, body, max_tokens, logprob_count, prompt_logprobs=False)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"

        def chunk(index: int, delta: dict[str, Any], logprobs: Any, finish: str | None) -> dict[str, Any]:
            return {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": body.model, "system_fingerprint": None,
                    "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

        if body.stream:
            async def chunks() -> AsyncIterator[dict[str, Any]]:
                sent = {c.index: 0 for c in choices}
                for choice in choices:
                    yield chunk(choice.index, {"role": "assistant", "content": ""}, None, None)
                async for choice in events:
                    text = choice.detok.text[sent[choice.index]:]
                    sent[choice.index] += len(text)
                    logprobs = None
                    if logprob_count is not None and choice.pending:
                        logprobs = {"content": chat_logprobs(choice.pending)}
                        choice.pending = []
                    if text or logprobs:
                        yield chunk(choice.index, {"content": text}, logprobs, None)
                    if choice.finish is not None:
                        yield chunk(choice.index, {}, None, choice.finish)
                if body.include_usage():
                    yield {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                           "model": body.model, "choices": [], "usage": usage(len(prompt), sum(c.count for c in choices))}

            return StreamingResponse(sse_stream(chunks()), media_type="text/event-stream")

        if not await collect(events, http_request):
            return JSONResponse(error_body("the client closed the connection"), status_code=499)
        result = [{"index": c.index, "message": {"role": "assistant", "content": c.detok.text},
                   "logprobs": {"content": chat_logprobs(c.pending)} if logprob_count is not None else None,
                   "finish_reason": c.finish or "length"} for c in choices]
        return JSONResponse({"id": completion_id, "object": "chat.completion", "created": int(time.time()),
                             "model": body.model, "system_fingerprint": None, "choices": result,
                             "usage": usage(len(prompt), sum(c.count for c in choices))})

    return app


__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "create_app"]
