"""Greedy generations against transformers' ``generate`` on the same checkpoint.

The torch reference behind the facade must agree token for token (same weights, same arithmetic): a
check of the generator, the per-user KV caches and the position handling.
"""

from __future__ import annotations

import pytest

from deepseek_tt.generator.compare import agreed_prefix_length, greedy_prefix_agreement
from deepseek_tt.runtime.reference_model import ReferenceModel
from reference_models.reference import load_reference_model

pytestmark = pytest.mark.demo

PROMPTS = [[0, 17, 250, 31, 77], [0, 900, 12], [0, 5, 6, 7, 8, 9, 10]]
NEW_TOKENS = 6


def test_agreed_prefix_length():
    assert agreed_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert agreed_prefix_length([1, 2], [1, 2, 3]) == 2
    assert agreed_prefix_length([5], [1]) == 0


def test_reference_facade_matches_transformers_generate(tiny_model_dir):
    hf = load_reference_model(tiny_model_dir)
    model = ReferenceModel(hf, max_batch_size=2, max_seq_len=64)  # 3 prompts: two waves
    agreement = greedy_prefix_agreement(model, hf, PROMPTS, NEW_TOKENS)
    assert agreement.per_prompt == [NEW_TOKENS] * len(PROMPTS)
