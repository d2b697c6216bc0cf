"""Pipeline-parallel generator (``--generator pp``).

What it does here: prefill and decode are pipelined across users. Each tick prefills the next waiting
user of the wave and then runs one decode step for every user already prefilled, so the first users
stream tokens while later prompts are still being prefilled (lower time to first decode, the same
tokens: every user's computation is independent of the others). Slots without a running user are
passed at position -1.

What it stands for on hardware: tt-metal's pipeline-parallel DeepSeek generator splits the decoder
stack into stages over mesh rows and streams micro-batches of users from stage to stage. The runtime
facade (docs/TEAM_CONTRACTS.md) exposes whole-model prefill/decode only, so this generator pipelines at
the user level; a layer-stage schedule needs a per-stage facade. Tracing is not supported with pp (as in
the seed README).
"""

from __future__ import annotations

import time
from collections import deque
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
        batch, max_seq_len = self.model.max_batch_size, self.model.max_seq_len
        for start in range(0, len(checked), batch):
            self.model.reset()
            waiting = deque(new_user(i, i - start, checked[i], sampling) for i in range(start, min(start + batch, len(checked))))
            running: list[UserState] = []
            while waiting or any(not u.done for u in running):
                if waiting:
                    user = waiting.popleft()
                    t0 = time.perf_counter()
                    logits = self.model.prefill(torch.tensor(user.prompt, dtype=torch.long), user.slot)
                    recorder.add_prefill(time.perf_counter() - t0, len(user.prompt))
                    accept_token(user, logits[-1], sampling, eos, max_new_tokens, max_seq_len, _on_token)
                    running.append(user)
                active = [u for u in running if not u.done]
                if not active:
                    continue
                tokens, positions = decode_inputs(active, batch)
                t0 = time.perf_counter()
                logits = self.model.decode(tokens, positions)
                recorder.add_decode_step(time.perf_counter() - t0, len(active))
                for user in active:
                    accept_token(user, logits[user.slot], sampling, eos, max_new_tokens, max_seq_len, _on_token)
            for user in running:
                bar.update(max_new_tokens - len(user.tokens))
            finished.extend(running)
        bar.close()
        return GenerationOutput([to_result(u) for u in finished], recorder.finish(len(checked)))


__all__ = ["PipelineParallelGenerator"]
