"""Continuous batching over the runtime facade (``TtModel`` / ``ReferenceModel``).

One worker thread owns the model. Each iteration it admits waiting requests into free decode slots
(prefilling each, which also yields its first token), then runs ONE batched decode step for every
active slot, so requests that arrive together share decode steps instead of being served one after
another. Requests leave their slot on eos, on ``max_tokens``, at the context limit, or when cancelled
(a client that went away); the slot is reused by the next waiting request.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from deepseek_tt.generator.base import INACTIVE_POSITION, DecoderModel, normalize_eos
from deepseek_tt.generator.sampling import SamplingParams, select_token

log = logging.getLogger("deepseek_tt.serving")

#: Called from the worker thread with (token id or None, finish reason or None).
TokenSink = Callable[[int | None, str | None], None]

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_CANCELLED = "cancelled"
FINISH_ERROR = "error"


class RequestTooLong(ValueError):
    """The prompt plus ``max_tokens`` does not fit the model's context."""


@dataclass
class Request:
    """One completion being served."""

    request_id: int
    prompt: list[int]
    max_tokens: int
    sampling: SamplingParams
    sink: TokenSink
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    slot: int | None = None
    finish_reason: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass
class EngineStats:
    decode_steps: int = 0
    prefills: int = 0
    max_active: int = 0  # the largest number of requests sharing one decode step
    finished: int = 0


class BatchingEngine:
    """Serve many requests through one model with a shared decode batch (continuous batching)."""

    def __init__(self, model: DecoderModel, eos_token_ids: int | Iterable[int] | None) -> None:
        self.model = model
        self.eos = normalize_eos(eos_token_ids)
        self.stats = EngineStats()
        self._waiting: deque[Request] = deque()
        self._slots: list[Request | None] = [None] * model.max_batch_size
        self._wake = threading.Condition()
        self._ids = itertools.count(1)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="deepseek-tt-engine", daemon=True)

    # -- public API ---------------------------------------------------------------------------------
    def start(self) -> "BatchingEngine":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout)

    def check_fits(self, prompt_len: int, max_tokens: int) -> None:
        """Raise :class:`RequestTooLong` when the request cannot fit the model's context."""
        if prompt_len < 1:
            raise RequestTooLong("the prompt is empty after tokenization")
        if prompt_len + max_tokens > self.model.max_seq_len:
            raise RequestTooLong(
                f"prompt ({prompt_len} tokens) + max_tokens ({max_tokens}) exceeds the context of "
                f"{self.model.max_seq_len} tokens"
            )

    def submit(self, prompt: list[int], max_tokens: int, sampling: SamplingParams, sink: TokenSink) -> Request:
        """Queue a request; ``sink`` receives each token, then ``(None, finish_reason)``."""
        self.check_fits(len(prompt), max_tokens)
        request_id = next(self._ids)
        generator = None if sampling.greedy else torch.Generator().manual_seed(int(sampling.seed))
        request = Request(request_id, list(prompt), int(max_tokens), sampling, sink, generator)
        with self._wake:
            self._waiting.append(request)
            self._wake.notify_all()
        return request

    @property
    def active(self) -> int:
        return sum(slot is not None for slot in self._slots)

    # -- worker -------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._waiting and self.active == 0:
                    self._wake.wait()
                if self._stopping:
                    break
            try:
                self._admit()
                self._drop_cancelled()
                if self.active:
                    self._decode_step()
            except Exception as exc:  # keep serving: fail the requests in flight, not the server
                log.exception("engine step failed")
                for slot, request in enumerate(self._slots):
                    if request is not None:
                        self._finish(slot, FINISH_ERROR, error=exc)
        for slot, request in enumerate(self._slots):
            if request is not None:
                self._finish(slot, FINISH_CANCELLED)

    def _admit(self) -> None:
        while True:
            with self._wake:
                free = next((i for i, r in enumerate(self._slots) if r is None), None)
                if free is None or not self._waiting:
                    return
                request = self._waiting.popleft()
            if request.cancelled.is_set():
                request.sink(None, FINISH_CANCELLED)
                continue
            request.slot = free
            self._slots[free] = request
            logits = self.model.prefill(torch.tensor(request.prompt, dtype=torch.long), user_id=free)
            self.stats.prefills += 1
            self._emit(free, select_token(logits[-1], request.sampling, request.generator))

    def _drop_cancelled(self) -> None:
        for slot, request in enumerate(self._slots):
            if request is not None and request.cancelled.is_set():
                self._finish(slot, FINISH_CANCELLED)

    def _decode_step(self) -> None:
        batch = self.model.max_batch_size
        tokens = torch.zeros(batch, dtype=torch.long)
        positions = torch.full((batch,), INACTIVE_POSITION, dtype=torch.long)
        for slot, request in enumerate(self._slots):
            if request is not None:
                tokens[slot] = request.tokens[-1]
                positions[slot] = len(request.prompt) + len(request.tokens) - 1
        self.stats.max_active = max(self.stats.max_active, self.active)
        logits = self.model.decode(tokens, positions)
        self.stats.decode_steps += 1
        for slot, request in enumerate(self._slots):
            if request is not None:
                self._emit(slot, select_token(logits[slot], request.sampling, request.generator))

    def _emit(self, slot: int, token: int) -> None:
        request = self._slots[slot]
        assert request is not None
        request.tokens.append(token)
        request.sink(token, None)
        if token in self.eos:
            self._finish(slot, FINISH_STOP)
        elif len(request.tokens) >= request.max_tokens:
            self._finish(slot, FINISH_LENGTH)
        elif len(request.prompt) + len(request.tokens) >= self.model.max_seq_len:
            self._finish(slot, FINISH_LENGTH)

    def _finish(self, slot: int, reason: str, error: Exception | None = None) -> None:
        request = self._slots[slot]
        assert request is not None
        self._slots[slot] = None
        request.finish_reason = reason
        self.stats.finished += 1
        try:
            request.sink(None, reason)
        except Exception:  # a sink must never take the engine down
            log.exception("token sink of request %d failed", request.request_id)
