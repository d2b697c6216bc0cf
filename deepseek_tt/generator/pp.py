"""Pipeline-parallel generator (``--generator pp``).

What it does here: prefill and decode are pipelined across users. Each tick prefills the next waiting
user of the wave and then runs one decode step for every user already prefilled, so the first users
stream tokens while later prompts are still being prefilled (lower time to first decode, the same
tokens: every user's computation is independent of the others). Slots without a running user are
passed at position -1.

What it stands for on hardware: tt-metal's pipeline-parallel DeepSeek generator splits the decoder
stack into stages over mesh rows and streams micro-batches of users from stage to stage. The runtime
facade (docs/ARCHITECTURE.md) exposes whole-model prefill/decode only, so this generator pipelines at
the user level; a layer-stage schedule needs a per-stage facade. Tracing is not supported with pp (as in
the seed README).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence

from deepseek_tt.generator.base import DecoderModel, GenerationOutput, GenerationRun, TokenCallback, UserState, decode_inputs
from deepseek_tt.generator.sampling import SamplingParams


class PipelineParallelGenerator:
    """Interleave one user's prefill with a decode step of the users already running."""

    name = "pp"

    def __init__(self, model: DecoderModel, *, enable_trace: bool = False, progress: bool = False) -> None:
        if enable_trace:
            raise ValueError("--enable-trace is not supported with --generator pp (use --generator bp)")
        self.model = model
        self.progress = progress

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
            waiting = deque(wave)
            running: list[UserState] = []
            while waiting or any(not u.done for u in running):
                if waiting:
                    user = waiting.popleft()
                    run.prefill(user)
                    running.append(user)
                active = [u for u in running if not u.done]
                if not active:
                    continue
                tokens, positions = decode_inputs(active, self.model.max_batch_size)
                t0 = time.perf_counter()
                logits = self.model.decode(tokens, positions)
                run.decoded(active, logits, time.perf_counter() - t0)
        return run.output()


__all__ = ["PipelineParallelGenerator"]
