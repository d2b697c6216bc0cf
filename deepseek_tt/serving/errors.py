"""OpenAI's error body for every failure, and the request-size limit.

Every error the server returns is ``{"error": {"message", "type", "param", "code"}}`` (the shape the
``openai`` client parses into ``APIStatusError.message``): invalid requests are 400
(``invalid_request_error``, ``param`` naming the field), unknown models 404 (``model_not_found``), bodies
over ``--max-request-bytes`` 413, unknown routes 404 / 405, a generation that failed inside the model 500
(``server_error``). Nothing of the request's input is echoed back (a NaN or a lone surrogate would make
the error itself unserialisable).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("deepseek_tt.serving")

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class OpenAIError(Exception):
    """An error answered in OpenAI's format."""

    def __init__(self, status: int, message: str, *, type: str = INVALID_REQUEST, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = INVALID_REQUEST, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p != "body"]
    # pydantic adds the union member it tried ("str", "list[int]", "function-after[...]") to the location
    parts = [p for p in parts if not (p.startswith(("list[", "function-", "str", "int", "float", "bool", "dict[")) or p in ("none",))]
    return ".".join(parts) or None


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """A one-line message naming the first invalid field (and how many more there are), and that field."""
    # a union's branches each report; a specific complaint (a range, invalid text) beats "not a string"
    errors = sorted(exc.errors(), key=lambda e: str(e.get("type", "")).endswith("_type"))
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    param = _param(tuple(first.get("loc", ())))
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    others = {_param(tuple(e.get("loc", ()))) for e in errors[1:]} - {param}
    if others:
        message += f" (also invalid: {', '.join(sorted(str(o) for o in others))})"
    return message, param


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's format."""

    @app.exception_handler(OpenAIError)
    async def _openai(_: Request, exc: OpenAIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc)
        return JSONResponse(error_body(message, param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        type_ = INVALID_REQUEST if exc.status_code < 500 else SERVER_ERROR
        return JSONResponse(error_body(str(exc.detail), type_, None, code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body("internal server error", SERVER_ERROR), status_code=500)


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before anything parses it.

    The body is read here (``Content-Length`` is checked first, chunked bodies are counted) and replayed
    to the app; later ``receive`` calls reach the server's own, so the app still sees the client leave.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse(error_body(
            f"the request body is larger than this server's limit of {self.max_bytes} bytes (--max-request-bytes)",
            param=None, code="request_too_large"), status_code=413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - JSONResponse never reads
    return {"type": "http.disconnect"}


__all__ = ["BodySizeLimit", "OpenAIError", "error_body", "install_error_handlers", "validation_message"]
