"""Teacher-forced top-1 compares with the reference's argmax (top-5 row 0), as docs/DESIGN.md section 6 defines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepseek_tt.accuracy.refpt import RefptReference
from deepseek_tt.generator.teacher_forcing import teacher_force

pytestmark = pytest.mark.unit

VOCAB = 16


class NextTokenModel:
    """A facade whose argmax after token t is (t + 1) % VOCAB."""

    vocab_size, max_batch_size, max_seq_len = VOCAB, 2, 64

    def reset(self) -> None:
        pass

    def _logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((tokens + 1) % VOCAB, VOCAB).float()

    def prefill(self, tokens: torch.Tensor, user_id: int) -> torch.Tensor:
        return self._logits(tokens)

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self._logits(tokens)


def _reference(truth: list[int], top1: list[int]) -> RefptReference:
    """Top-5 rows: the reference's argmax first, the text's token second when they differ."""
    top5 = torch.stack([torch.tensor([r, t if t != r else 15, 14, 13, 12]) for t, r in zip(truth, top1)])
    return RefptReference(Path("hand.refpt"), torch.tensor(truth), top5, version=0, default_prompt_len=len(truth) // 2 + 1)


def test_top1_is_agreement_with_the_reference_argmax_not_the_text():
    # ground truth 0,1,2,...: the model predicts every next token of the text
    truth = list(range(10))
    # the reference disagrees with the text at positions 3 and 4 (its argmax is 9 there)
    top1 = [t if i not in (3, 4) else 9 for i, t in enumerate(truth)]
    accuracy = teacher_force(NextTokenModel(), _reference(truth, top1), max_new_tokens=20, prompt_len=2).accuracy
    assert accuracy.num_tokens == 8
    assert accuracy.top1_correct == 6  # positions 3 and 4: the model follows the text, not the reference
    assert accuracy.top5_correct == 8


def test_without_top5_rows_top1_falls_back_to_the_ground_truth():
    truth = list(range(10))
    reference = RefptReference(Path("v0.refpt"), torch.tensor(truth), None, version=0, default_prompt_len=6)
    accuracy = teacher_force(NextTokenModel(), reference, max_new_tokens=20).accuracy
    assert (accuracy.top1_correct, accuracy.num_tokens, accuracy.top5_accuracy) == (4, 4, None)
