"""Continuous batching over the runtime facade (``TtModel`` / ``ReferenceModel``).

One worker thread owns the model. Each iteration it admits waiting requests into free decode slots
(prefilling each, which also yields its first token), then runs ONE batched decode step for every
active slot, so requests that arrive together share decode steps instead of being served one after
another. Requests leave their slot on eos, on ``max_tokens``, at the context limit, or when cancelled
(a client that went away); the slot is reused by the next waiting request.

Log-probabilities come from the model's raw logits (before temperature, top-k and top-p, as vLLM's
default): each generated token's, the ``top_logprobs`` most likely alternatives, and on request the
prompt tokens' (``echo``), so a served completion also shows what the TT-NN model computed.
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

#: (token id, log-probability) pairs, most likely first.
TopLogprobs = list[tuple[int, float]]


@dataclass(frozen=True)
class TokenEvent:
    """What the worker reports: a generated token (with its log-probabilities when asked for), the
    prompt's log-probabilities (``prompt_logprobs``, once, before any token), or the finish reason."""

    token: int | None = None
    finish: str | None = None
    logprob: float | None = None
    top_logprobs: TopLogprobs | None = None
    #: per prompt token: (its log-probability or None for the first, the top alternatives or None)
    prompt_logprobs: list[tuple[float | None, TopLogprobs | None]] | None = None
    error: str | None = None


#: Called from the worker thread with each event of a request.
TokenSink = Callable[[TokenEvent], None]

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
    #: how many alternatives to report per token (None: no log-probabilities at all)
    logprobs: int | None = None
    #: report the prompt tokens' log-probabilities (OpenAI's ``echo`` with ``logprobs``)
    prompt_logprobs: bool = False
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
    cancelled: int = 0  # requests that left early (client gone, stop string)


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
        if max_tokens < 0:
            raise RequestTooLong(f"max_tokens must be >= 0, got {max_tokens}")
        if prompt_len + max_tokens > self.model.max_seq_len:
            raise RequestTooLong(
                f"prompt ({prompt_len} tokens) + max_tokens ({max_tokens}) exceeds the context of "
                f"{self.model.max_seq_len} tokens"
            )

    def submit(
        self, prompt: list[int], max_tokens: int, sampling: SamplingParams, sink: TokenSink,
        logprobs: int | None = None, prompt_logprobs: bool = False,
    ) -> Request:
        """Queue a request; ``sink`` receives the prompt log-probabilities when asked, each token, then the
        finish reason. ``max_tokens`` 0 only prefills (prompt log-probabilities)."""
        self.check_fits(len(prompt), max_tokens)
        request_id = next(self._ids)
        # torch seeds are 64-bit: any integer seed maps onto that range
        generator = None if sampling.greedy else torch.Generator().manual_seed(int(sampling.seed) % 2**64)
        request = Request(request_id, list(prompt), int(max_tokens), sampling, sink, generator,
                          logprobs=logprobs, prompt_logprobs=prompt_logprobs)
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
                request.sink(TokenEvent(finish=FINISH_CANCELLED))
                continue
            request.slot = free
            self._slots[free] = request
            try:
                logits = self.model.prefill(torch.tensor(request.prompt, dtype=torch.long), user_id=free)
            except Exception as exc:  # this request failed, not the ones in the batch
                log.exception("prefill of request %d failed", request.request_id)
                self._finish(free, FINISH_ERROR, error=exc)
                continue
            self.stats.prefills += 1
            if request.prompt_logprobs:
                request.sink(TokenEvent(prompt_logprobs=prompt_logprobs(logits, request.prompt, request.logprobs or 0)))
            if request.max_tokens == 0:
                self._finish(free, FINISH_LENGTH)
                continue
            self._emit(free, select_token(logits[-1], request.sampling, request.generator), logits[-1])

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
                self._emit(slot, select_token(logits[slot], request.sampling, request.generator), logits[slot])

    def _emit(self, slot: int, token: int, logits: torch.Tensor) -> None:
        request = self._slots[slot]
        assert request is not None
        request.tokens.append(token)
        if request.logprobs is None:
            request.sink(TokenEvent(token=token))
        else:
            logprob, top = token_logprobs(logits, token, request.logprobs)
            request.sink(TokenEvent(token=token, logprob=logprob, top_logprobs=top))
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
        self.stats.cancelled += reason == FINISH_CANCELLED
        try:
            request.sink(TokenEvent(finish=reason, error=None if error is None else f"{type(error).__name__}: {error}"))
        except Exception:  # a sink must never take the engine down
            log.exception("token sink of request %d failed", request.request_id)


#: -inf (a token the model rules out) is reported as this, since JSON has no infinity.
LOGPROB_FLOOR = -9999.0


def token_logprobs(logits: torch.Tensor, token: int, top: int) -> tuple[float, TopLogprobs]:
    """``token``'s log-probability under ``logits`` ([V]) and the ``top`` most likely tokens'."""
    logp = torch.log_softmax(logits.float().reshape(-1), dim=-1).clamp(min=LOGPROB_FLOOR)
    values, ids = torch.topk(logp, top) if top > 0 else (logp[:0], logp[:0].long())
    return float(logp[token]), list(zip(ids.tolist(), values.tolist()))


def prompt_logprobs(logits: torch.Tensor, prompt: list[int], top: int) -> list[tuple[float | None, TopLogprobs | None]]:
    """Each prompt token's log-probability given the tokens before it (None for the first) and the
    ``top`` alternatives at its position, from prefill logits ``[S, V]``."""
    out: list[tuple[float | None, TopLogprobs | None]] = [(None, None)]
    if len(prompt) < 2:
        return out
    logp = torch.log_softmax(logits[: len(prompt) - 1].float(), dim=-1).clamp(min=LOGPROB_FLOOR)
    target = torch.tensor(prompt[1:], dtype=torch.long)
    chosen = logp.gather(1, target[:, None])[:, 0].tolist()
    if top > 0:
        values, ids = torch.topk(logp, top, dim=-1)
        tops = [list(zip(i, v)) for i, v in zip(ids.tolist(), values.tolist())]
    else:
        tops = [[] for _ in chosen]
    out.extend(zip(chosen, tops))
    return out
