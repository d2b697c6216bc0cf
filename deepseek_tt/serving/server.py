"""An OpenAI-compatible completions server (FastAPI) over the batching engine.

Endpoints: ``POST /v1/completions`` (streaming with ``"stream": true`` as server-sent events),
``GET /v1/models``, ``GET /health``. Request fields follow OpenAI's and vLLM's names (``model``,
``prompt``, ``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stream``, ``stop``);
unknown or out-of-range fields are a 422 naming the field, a prompt over the context a 400.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from deepseek_tt.generator.sampling import SamplingParams
from deepseek_tt.serving.engine import FINISH_ERROR, BatchingEngine, RequestTooLong


class CompletionRequest(BaseModel):
    """The subset of OpenAI's completion request this server implements."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1, description="-1 (or 0) disables top-k, as in vLLM")
    seed: int | None = Field(None, ge=0)
    stream: bool = False
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    user: str | None = None

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_k=self.top_k if self.top_k > 0 else None,
            top_p=self.top_p if self.top_p < 1.0 else None,
            seed=self.seed if self.seed is not None else 0,
        )

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]


class _Detokenizer:
    """Incremental text: decode all tokens, emit the new suffix, hold back incomplete characters and
    text that could still become a stop string."""

    def __init__(self, tokenizer: Any, stops: list[str]) -> None:
        self.tokenizer, self.stops = tokenizer, stops
        self.tokens: list[int] = []
        self.sent = 0
        self.stopped = False

    def add(self, token: int) -> str:
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        for stop in self.stops:
            cut = text.find(stop)
            if cut != -1:
                self.stopped = True
                return self._take(text[:cut])
        if text.endswith("\ufffd"):
            return ""
        keep = max((len(s) - 1 for s in self.stops), default=0)
        return self._take(text[: len(text) - keep] if keep else text)

    def flush(self) -> str:
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        return "" if self.stopped else self._take(text)

    def _take(self, text: str) -> str:
        delta = text[self.sent :]
        self.sent = max(self.sent, len(text))
        return delta


def create_app(engine: BatchingEngine, tokenizer: Any, model_names: list[str]) -> FastAPI:
    """The FastAPI app serving ``engine``; ``model_names[0]`` is the id shown in ``/v1/models``."""
    app = FastAPI(title="deepseek-tt", description="DeepSeek-V3 on TT-NN, OpenAI-compatible completions")
    created = int(time.time())

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "active": engine.active}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": created, "owned_by": "deepseek-tt",
                      "max_model_len": engine.model.max_seq_len} for name in model_names],
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, http_request: Request):
        if body.model not in model_names:
            raise HTTPException(404, f"model {body.model!r} is not served here; served: {', '.join(model_names)}")
        prompt = tokenizer.encode(body.prompt)
        try:
            engine.check_fits(len(prompt), body.max_tokens)
        except RequestTooLong as exc:
            raise HTTPException(400, str(exc)) from None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int | None, str | None]] = asyncio.Queue()

        def sink(token: int | None, finish: str | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (token, finish))

        request = engine.submit(prompt, body.max_tokens, body.sampling(), sink)
        completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
        detok = _Detokenizer(tokenizer, body.stop_strings())

        async def events() -> AsyncIterator[tuple[str, str | None, int]]:
            """(text delta, finish reason or None, completion tokens so far); cancels on exit."""
            count = 0
            try:
                while True:
                    token, finish = await queue.get()
                    if token is not None:
                        count += 1
                        delta = detok.add(token)
                        if detok.stopped:
                            request.cancel()
                            yield delta, "stop", count
                            return
                        if delta:
                            yield delta, None, count
                        continue
                    if finish == FINISH_ERROR:
                        raise HTTPException(500, "the model failed while generating this completion")
                    yield detok.flush(), ("stop" if finish == "stop" else "length"), count
                    return
            finally:
                request.cancel()  # a client that went away frees its slot

        def chunk(text: str, finish: str | None) -> dict[str, Any]:
            return {"id": completion_id, "object": "text_completion", "created": int(time.time()),
                    "model": body.model, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}

        usage = lambda count: {"prompt_tokens": len(prompt), "completion_tokens": count, "total_tokens": len(prompt) + count}  # noqa: E731

        if body.stream:
            async def stream() -> AsyncIterator[str]:
                async for text, finish, count in events():
                    if await http_request.is_disconnected():
                        return
                    payload = chunk(text, finish)
                    if finish is not None:
                        payload["usage"] = usage(count)
                    yield f"data: {json.dumps(payload)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(stream(), media_type="text/event-stream")

        pieces, finish_reason, count = [], "length", 0
        async for text, finish, count in events():
            pieces.append(text)
            finish_reason = finish or finish_reason
        body_json = chunk("".join(pieces), finish_reason)
        body_json["usage"] = usage(count)
        return JSONResponse(body_json)

    return app


__all__ = ["CompletionRequest", "create_app"]
