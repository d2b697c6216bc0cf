"""Top-k / top-p filtering and token selection."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.generator.sampling import SamplingParams, filter_logits, select_token

pytestmark = pytest.mark.demo


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([0.1, 3.0, 2.0, -1.0, 2.5])
    kept = torch.isfinite(filter_logits(logits, top_k=2, top_p=None)).nonzero().flatten().tolist()
    assert kept == [1, 4]


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, None, 0.5)).tolist() == [True, False, False, False]
    assert torch.isfinite(filter_logits(logits, None, 0.75)).tolist() == [True, True, False, False]
    assert torch.isfinite(filter_logits(logits, None, 0.9)).tolist() == [True, True, True, False]
    assert torch.isfinite(filter_logits(logits, None, 1.0)).all()


def test_sampling_respects_the_filters():
    logits = torch.tensor([0.0, 5.0, 4.9, 4.8, -3.0])
    gen = torch.Generator().manual_seed(0)
    picks = {select_token(logits, SamplingParams(temperature=1.0, top_k=2), gen) for _ in range(200)}
    assert picks == {1, 2}
    assert select_token(logits, SamplingParams(), None) == 1


@pytest.mark.parametrize("kwargs", [{"temperature": -1.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_bad_sampling_params(kwargs):
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)
