"""Batch-parallel generator (``--generator bp``, the default).

Users are served in waves of ``model.max_batch_size`` (32 per mesh row on a Galaxy; slot ``s`` lives on
row ``s // 32``). Each wave prefills its users one by one, then decodes the whole batch one token per
step until every user has stopped (eos, ``max_new_tokens`` or the sequence limit). With
``enable_trace`` the first step runs eagerly (compile), the next is captured once and every later step
replays the trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from deepseek_tt.generator.base import (
    DecoderModel,
    GenerationOutput,
    TokenCallback,
    UserState,
    accept_token,
    decode_inputs,
    new_user,
    normalize_eos,
    to_result,
    validate_prompts,
)
from deepseek_tt.generator.sampling import SamplingParams
from deepseek_tt.generator.statistics import StatisticsRecorder
from deepseek_tt.generator.trace import DecodeTrace


class BatchParallelGenerator:
    """Prefill each user, then decode the whole batch of users per step."""

    name = "bp"

    def __init__(self, model: DecoderModel, *, enable_trace: bool = False, progress: bool = False) -> None:
        self.model = model
        self.enable_trace = enable_trace
        self.progress = progress
        if enable_trace:
            DecodeTrace(model)  # fail now, before any work, if the model cannot be traced

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int = 32,
        sampling: SamplingParams = SamplingParams(),
        eos_token_id: int | Iterable[int] | None = None,
        on_token: TokenCallback | None = None,
    ) -> GenerationOutput:
        """Generate up to ``max_new_tokens`` tokens for every prompt (lists of token ids)."""
        checked = validate_prompts(self.model, prompts, max_new_tokens)
        eos = normalize_eos(eos_token_id)
        recorder = StatisticsRecorder()
        bar = tqdm(total=len(checked) * max_new_tokens, desc=f"generate ({self.name})", unit="tok", disable=not self.progress)

        def _on_token(index: int, token: int) -> None:
            recorder.add_new_tokens(1)
            bar.update(1)
            if on_token is not None:
                on_token(index, token)

        finished: list[UserState] = []
        batch = self.model.max_batch_size
        for start in range(0, len(checked), batch):
            self.model.reset()
            wave = [new_user(i, i - start, checked[i], sampling) for i in range(start, min(start + batch, len(checked)))]
            for user in wave:
                t0 = time.perf_counter()
                logits = self.model.prefill(torch.tensor(user.prompt, dtype=torch.long), user.slot)
                recorder.add_prefill(time.perf_counter() - t0, len(user.prompt))
                accept_token(user, logits[-1], sampling, eos, max_new_tokens, self.model.max_seq_len, _on_token)
            self._decode_wave(wave, recorder, sampling, eos, max_new_tokens, _on_token)
            for user in wave:
                bar.update(max_new_tokens - len(user.tokens))
            finished.extend(wave)
        bar.close()
        return GenerationOutput([to_result(u) for u in finished], recorder.finish(len(checked)))

    def _decode_wave(
        self,
        wave: list[UserState],
        recorder: StatisticsRecorder,
        sampling: SamplingParams,
        eos: frozenset[int],
        max_new_tokens: int,
        on_token: TokenCallback,
    ) -> None:
        trace = DecodeTrace(self.model) if self.enable_trace else None
        step = 0
        try:
            while any(not u.done for u in wave):
                tokens, positions = decode_inputs(wave, self.model.max_batch_size)
                if trace is not None and step >= 1 and not trace.captured:
                    trace.capture(tokens, positions)  # not timed: a one-off cost like compilation
                t0 = time.perf_counter()
                if trace is not None and trace.captured:
                    logits = trace.replay(tokens, positions)
                else:
                    logits = self.model.decode(tokens, positions)
                active = [u for u in wave if not u.done]
                recorder.add_decode_step(time.perf_counter() - t0, len(active))
                for user in active:
                    accept_token(user, logits[user.slot], sampling, eos, max_new_tokens, self.model.max_seq_len, on_token)
                step += 1
        finally:
            if trace is not None:
                trace.release()


__all__ = ["BatchParallelGenerator"]
