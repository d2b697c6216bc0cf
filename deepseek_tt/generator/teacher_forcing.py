"""Teacher-forced decoding of one sequence against a reference (``--token-accuracy``, docs/DESIGN.md section 6).

The prompt ``tokens[:P]`` is prefilled as user 0; then every step feeds the ground-truth token (not the
prediction) and compares the model's argmax for position ``i`` with the reference's argmax there (top-1:
``top5_tokens[i, 0]`` when the file has top-5 rows, else ``tokens[i]``, which past the file's own split is
the reference's greedy choice) and with the reference top-5 row ``i`` (top-5). So a ``--tf-prompt-len``
that moves the split into the file's real-text prompt still measures agreement with the reference model,
not the model's accuracy on that text. The number of steps is ``max_new_tokens`` capped to the ``T - P``
ground-truth tokens available.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from deepseek_tt.accuracy.refpt import RefptReference
from deepseek_tt.generator.base import INACTIVE_POSITION, DecoderModel, TokenCallback
from deepseek_tt.generator.statistics import GenerationStatistics, StatisticsRecorder

TF_USER = 0


@dataclass(frozen=True)
class TokenAccuracy:
    """Teacher-forced agreement with the reference (the ``token_accuracy`` JSON block)."""

    reference_file: str
    prompt_len: int
    num_tokens: int
    top1_correct: int
    top1_accuracy: float
    top5_correct: int | None
    top5_accuracy: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TeacherForcingOutput:
    accuracy: TokenAccuracy
    prompt_tokens: list[int]
    predicted_tokens: list[int]
    statistics: GenerationStatistics


def teacher_force(
    model: DecoderModel,
    reference: RefptReference,
    max_new_tokens: int,
    prompt_len: int | None = None,
    on_token: TokenCallback | None = None,
    progress: bool = False,
) -> TeacherForcingOutput:
    """Run teacher forcing over ``reference``; see the module docstring."""
    p = reference.prompt_len(prompt_len)
    steps = min(int(max_new_tokens), reference.length - p)
    if steps < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if p + steps > model.max_seq_len:
        raise ValueError(f"{reference.path}: {p + steps} tokens exceed the model's max_seq_len {model.max_seq_len}")
    truth = reference.tokens
    recorder = StatisticsRecorder()
    model.reset()
    t0 = time.perf_counter()
    logits = model.prefill(truth[:p].clone(), TF_USER)[-1]
    recorder.add_prefill(time.perf_counter() - t0, p)

    predicted: list[int] = []
    top1 = top5 = 0
    tokens = torch.zeros(model.max_batch_size, dtype=torch.long)
    positions = torch.full((model.max_batch_size,), INACTIVE_POSITION, dtype=torch.long)
    for i in tqdm(range(p, p + steps), desc="teacher forcing", unit="tok", disable=not progress):
        if i > p:
            tokens[TF_USER], positions[TF_USER] = truth[i - 1], i - 1
            t0 = time.perf_counter()
            logits = model.decode(tokens, positions)[TF_USER]
            recorder.add_decode_step(time.perf_counter() - t0, 1)
        guess = int(torch.argmax(logits.float()))
        predicted.append(guess)
        recorder.add_new_tokens(1)
        reference_argmax = int(reference.top5[i, 0]) if reference.top5 is not None else int(truth[i])
        top1 += int(guess == reference_argmax)
        if reference.top5 is not None:
            top5 += int(guess in reference.top5[i].tolist())
        if on_token is not None:
            on_token(0, guess)

    accuracy = TokenAccuracy(
        reference_file=str(reference.path),
        prompt_len=p,
        num_tokens=steps,
        top1_correct=top1,
        top1_accuracy=top1 / steps,
        top5_correct=top5 if reference.top5 is not None else None,
        top5_accuracy=top5 / steps if reference.top5 is not None else None,
    )
    return TeacherForcingOutput(accuracy, truth[:p].tolist(), predicted, recorder.finish(1))


__all__ = ["TeacherForcingOutput", "TokenAccuracy", "teacher_force"]
