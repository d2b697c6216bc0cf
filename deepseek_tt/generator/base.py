"""What the generators share: the model facade they drive, results, and per-user decoding state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from tqdm.auto import tqdm

from deepseek_tt.generator.sampling import SamplingParams, select_token, user_generator
from deepseek_tt.generator.statistics import GenerationStatistics, StatisticsRecorder
from deepseek_tt.runtime.token_ids import check_token_ids

#: Called with (user index, token id) as each token is produced (first user streaming, progress).
TokenCallback = Callable[[int, int], None]

STOP_EOS = "eos"
STOP_MAX_NEW_TOKENS = "max_new_tokens"
STOP_MAX_SEQ_LEN = "max_seq_len"
INACTIVE_POSITION = -1


class DecoderModel(Protocol):
    """The runtime facade of docs/ARCHITECTURE.md (``TtModel`` and ``ReferenceModel``)."""

    vocab_size: int
    max_batch_size: int
    max_seq_len: int

    def prefill(self, tokens: torch.Tensor, user_id: int) -> torch.Tensor: ...

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...

    def reset(self) -> None: ...


@dataclass
class GenerationResult:
    """One user's prompt, generated tokens and why generation stopped."""

    prompt_tokens: list[int]
    tokens: list[int]
    stop_reason: str


@dataclass
class GenerationOutput:
    results: list[GenerationResult]
    statistics: GenerationStatistics


@dataclass
class UserState:
    """A user being served in a decode slot."""

    index: int  # position in the caller's prompt list
    slot: int  # decode slot (row = slot // users per row)
    prompt: list[int]
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def position(self) -> int:
        """Where the last generated token goes in the KV cache."""
        return len(self.prompt) + len(self.tokens) - 1

    @property
    def done(self) -> bool:
        return self.stop_reason is not None


def normalize_eos(eos_token_id: int | Iterable[int] | None) -> frozenset[int]:
    if eos_token_id is None:
        return frozenset()
    if isinstance(eos_token_id, int):
        return frozenset({eos_token_id})
    return frozenset(int(t) for t in eos_token_id)


def validate_prompts(model: DecoderModel, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
    """Prompts as lists of ints; raises ``ValueError`` for empty prompts or ids outside the vocabulary."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    checked = []
    for i, prompt in enumerate(prompts):
        ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError(f"prompt {i} is empty")
        check_token_ids(ids, model.vocab_size, f"prompt {i}")  # before any work (the facade checks each call too)
        if len(ids) >= model.max_seq_len:
            raise ValueError(f"prompt {i}: {len(ids)} tokens leave no room below max_seq_len {model.max_seq_len}")
        checked.append(ids)
    return checked


def new_user(index: int, slot: int, prompt: list[int], sampling: SamplingParams) -> UserState:
    return UserState(index, slot, prompt, None if sampling.greedy else user_generator(sampling, index))


def accept_token(
    user: UserState,
    logits: torch.Tensor,
    sampling: SamplingParams,
    eos: frozenset[int],
    max_new_tokens: int,
    max_seq_len: int,
    on_token: TokenCallback | None,
) -> None:
    """Pick the user's next token from ``logits`` ([V]), record it and decide whether the user stops."""
    token = select_token(logits, sampling, user.generator)
    user.tokens.append(token)
    if on_token is not None:
        on_token(user.index, token)
    if token in eos:
        user.stop_reason = STOP_EOS
    elif len(user.tokens) >= max_new_tokens:
        user.stop_reason = STOP_MAX_NEW_TOKENS
    elif user.position + 1 >= max_seq_len:
        user.stop_reason = STOP_MAX_SEQ_LEN


def decode_inputs(users: Iterable[UserState], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and positions for one decode step; slots without an unfinished user get position -1."""
    tokens = torch.zeros(batch_size, dtype=torch.long)
    positions = torch.full((batch_size,), INACTIVE_POSITION, dtype=torch.long)
    for user in users:
        if not user.done:
            tokens[user.slot] = user.tokens[-1]
            positions[user.slot] = user.position
    return tokens, positions


def to_result(user: UserState) -> GenerationResult:
    return GenerationResult(user.prompt, list(user.tokens), user.stop_reason or STOP_MAX_NEW_TOKENS)


class GenerationRun:
    """One ``generate`` call's bookkeeping shared by the generators: checked prompts, waves of users,
    timed prefills, token acceptance, statistics and the progress bar."""

    def __init__(
        self,
        model: DecoderModel,
        name: str,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        sampling: SamplingParams,
        eos_token_id: int | Iterable[int] | None,
        on_token: TokenCallback | None,
        progress: bool,
    ) -> None:
        self.model = model
        self.prompts = validate_prompts(model, prompts, max_new_tokens)
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self.eos = normalize_eos(eos_token_id)
        self.recorder = StatisticsRecorder()
        self._on_token = on_token
        self._bar = tqdm(total=len(self.prompts) * max_new_tokens, desc=f"generate ({name})", unit="tok", disable=not progress)
        self._finished: list[UserState] = []

    def waves(self) -> Iterator[list[UserState]]:
        """The users in waves of ``model.max_batch_size`` (slot = index within the wave); the model is
        reset before each wave, and each wave counts as finished once the caller is done with it."""
        batch = self.model.max_batch_size
        for start in range(0, len(self.prompts), batch):
            self.model.reset()
            wave = [new_user(i, i - start, self.prompts[i], self.sampling) for i in range(start, min(start + batch, len(self.prompts)))]
            yield wave
            for user in wave:
                self._bar.update(self.max_new_tokens - len(user.tokens))
            self._finished.extend(wave)

    def prefill(self, user: UserState) -> None:
        """Prefill the user's prompt (timed) and accept its first token."""
        t0 = time.perf_counter()
        logits = self.model.prefill(torch.tensor(user.prompt, dtype=torch.long), user.slot)
        self.recorder.add_prefill(time.perf_counter() - t0, len(user.prompt))
        self.accept(user, logits[-1])

    def decoded(self, active: list[UserState], logits: torch.Tensor, seconds: float) -> None:
        """Record a decode step of ``seconds`` and accept each active user's token from its slot's logits."""
        self.recorder.add_decode_step(seconds, len(active))
        for user in active:
            self.accept(user, logits[user.slot])

    def accept(self, user: UserState, logits: torch.Tensor) -> None:
        accept_token(user, logits, self.sampling, self.eos, self.max_new_tokens, self.model.max_seq_len, self._token_produced)

    def output(self) -> GenerationOutput:
        self._bar.close()
        return GenerationOutput([to_result(u) for u in self._finished], self.recorder.finish(len(self.prompts)))

    def _token_produced(self, index: int, token: int) -> None:
        self.recorder.add_new_tokens(1)
        self._bar.update(1)
        if self._on_token is not None:
            self._on_token(index, token)


__all__ = [
    "DecoderModel",
    "GenerationOutput",
    "GenerationResult",
    "GenerationRun",
    "INACTIVE_POSITION",
    "STOP_EOS",
    "STOP_MAX_NEW_TOKENS",
    "STOP_MAX_SEQ_LEN",
    "TokenCallback",
    "UserState",
]
