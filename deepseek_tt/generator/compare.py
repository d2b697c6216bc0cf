"""Free-running greedy generations of a facade model against ``transformers``' ``generate``.

Two free-running greedy generations part for good at their first differing token, so the figure is the
length of the prefix on which both agree (per prompt, and its mean over prompts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from deepseek_tt.generator.base import DecoderModel
from deepseek_tt.generator.bp import BatchParallelGenerator


def agreed_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if int(x) != int(y):
            break
        n += 1
    return n


@torch.no_grad()
def hf_greedy(hf_model: torch.nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
    """``hf_model.generate`` greedily, one prompt at a time (no padding), ignoring eos."""
    out = []
    for prompt in prompts:
        ids = torch.tensor([list(prompt)], dtype=torch.long)
        generated = hf_model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
            do_sample=False, eos_token_id=None, pad_token_id=0,
        )
        out.append(generated[0, ids.shape[1] :].tolist())
    return out


@dataclass(frozen=True)
class PrefixAgreement:
    per_prompt: list[int]
    max_new_tokens: int

    @property
    def mean(self) -> float:
        return sum(self.per_prompt) / len(self.per_prompt)


def greedy_prefix_agreement(
    model: DecoderModel, hf_model: torch.nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int
) -> PrefixAgreement:
    """Generate greedily with ``model`` (bp generator) and with ``hf_model``; the agreed prefix lengths."""
    ours = BatchParallelGenerator(model).generate(prompts, max_new_tokens).results
    theirs = hf_greedy(hf_model, prompts, max_new_tokens)
    return PrefixAgreement([agreed_prefix_length(r.tokens, t) for r, t in zip(ours, theirs)], max_new_tokens)


__all__ = ["PrefixAgreement", "agreed_prefix_length", "greedy_prefix_agreement", "hf_greedy"]
