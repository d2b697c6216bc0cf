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

from deepseek_tt.generator.base import DecoderModel, GenerationOutput, GenerationRun, TokenCallback, UserState, decode_inputs
from deepseek_tt.generator.sampling import SamplingParams
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
        run = GenerationRun(self.model, self.name, prompts, max_new_tokens, sampling, eos_token_id, on_token, self.progress)
        for wave in run.waves():
            for user in wave:
                run.prefill(user)
            self._decode_wave(wave, run)
        return run.output()

    def _decode_wave(self, wave: list[UserState], run: GenerationRun) -> None:
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
                run.decoded([u for u in wave if not u.done], logits, time.perf_counter() - t0)
                step += 1
        finally:
            if trace is not None:
                trace.release()


__all__ = ["BatchParallelGenerator"]
