"""Teacher-forced top-1 / top-5 of a whole model (``TtModel`` or ``ReferenceModel``) against a ``.refpt``.

Reads the reference with the model's vocabulary (ids outside it are a :class:`RefptError` naming the file,
before any decoding), splits it at ``T//2 + 1`` or ``prompt_len`` (the file's ``tf_prompt_len`` for v1),
prefills the prompt and feeds the ground truth token by token through
:func:`deepseek_tt.generator.teacher_forcing.teacher_force`. Thresholds: ``thresholds.teacher_forcing_threshold``.
"""

from __future__ import annotations

from pathlib import Path

from deepseek_tt.accuracy.refpt import RefptReference, load_refpt
from deepseek_tt.generator.base import DecoderModel
from deepseek_tt.generator.teacher_forcing import TeacherForcingOutput, TokenAccuracy, teacher_force


def load_reference_for(model: DecoderModel, reference_file: str | Path, entry_index: int | None = None) -> RefptReference:
    """``reference_file`` read and checked against ``model.vocab_size``."""
    return load_refpt(reference_file, vocab_size=int(model.vocab_size), entry_index=entry_index)


def run_teacher_forcing(
    model: DecoderModel,
    reference_file: str | Path,
    *,
    prompt_len: int | None = None,
    max_new_tokens: int | None = None,
    entry_index: int | None = None,
    progress: bool = False,
) -> TeacherForcingOutput:
    """Teacher-force ``model`` over ``reference_file``; ``max_new_tokens`` defaults to every ground-truth token."""
    reference = load_reference_for(model, reference_file, entry_index)
    steps = reference.length - reference.prompt_len(prompt_len) if max_new_tokens is None else int(max_new_tokens)
    return teacher_force(model, reference, steps, prompt_len=prompt_len, progress=progress)


def format_accuracy(accuracy: TokenAccuracy) -> str:
    """``top-1 0.950 (152/160), top-5 1.000 (160/160)`` (top-5 only when the reference has it)."""
    text = f"top-1 {accuracy.top1_accuracy:.3f} ({accuracy.top1_correct}/{accuracy.num_tokens})"
    if accuracy.top5_accuracy is not None:
        text += f", top-5 {accuracy.top5_accuracy:.3f} ({accuracy.top5_correct}/{accuracy.num_tokens})"
    return text + f" over {accuracy.num_tokens} tokens after a {accuracy.prompt_len}-token prompt"


__all__ = ["format_accuracy", "load_reference_for", "run_teacher_forcing"]
