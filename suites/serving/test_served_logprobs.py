"""The server's log-probabilities are the TT-NN model's: served prompt logprobs (``echo``, ``max_tokens``
0) of a fixed text against the transformers reference's on the same tokens.

Tolerances are the accuracy suite's: PCC of the per-token logprobs >= ``served_logprobs`` (the
full-model logits threshold), top-1 agreement of the reported alternatives with the reference's argmax
>= the strict teacher-forcing top-1 threshold.
"""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.accuracy.metrics import pcc
from deepseek_tt.accuracy.thresholds import pcc_threshold, teacher_forcing_threshold
from reference_models.reference import load_reference_model
from suites.serving.conftest import SERVED_NAME

pytestmark = [pytest.mark.accuracy, pytest.mark.quick]

TEXT_TOKENS = 128


def test_served_logprobs_match_the_reference(live_server, serving_model_path, record_result):
    tokenizer = live_server.stack.tokenizer
    text = (serving_model_path / "reference_prompt.txt").read_text(encoding="utf-8") if (serving_model_path / "reference_prompt.txt").is_file() \
        else "Comparisons yield boolean values: True or False. " * 40
    ids = tokenizer.encode(text)[:TEXT_TOKENS]
    served = live_server.openai().completions.create(model=SERVED_NAME, prompt=ids, max_tokens=0, echo=True, logprobs=5)
    lp = served.choices[0].logprobs
    assert len(lp.token_logprobs) == len(ids) and lp.token_logprobs[0] is None
    served_lp = torch.tensor(lp.token_logprobs[1:], dtype=torch.float64)

    model = load_reference_model(serving_model_path)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].double()
    ref_all = torch.log_softmax(logits, dim=-1)
    ref_lp = ref_all.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    ref_top1 = ref_all.argmax(dim=-1)
    # the served alternatives are keyed by token text; the best one is the TT model's argmax
    served_top1_text = [max(top, key=top.get) for top in lp.top_logprobs[1:]]
    ref_top1_text = [tokenizer.decode([int(t)], skip_special_tokens=False) for t in ref_top1]
    agreement = sum(a == b for a, b in zip(served_top1_text, ref_top1_text)) / len(ref_top1_text)

    value = pcc(ref_lp, served_lp)
    threshold = pcc_threshold("served_logprobs", "prefill")
    top1_threshold = teacher_forcing_threshold("strict", "top1")
    max_abs = float((ref_lp - served_lp).abs().max())
    record_result(module="serving", mode="prefill", metric="pcc", value=value, threshold=threshold,
                  seq_len=len(ids), batch=1, mesh="1x1", max_abs_logprob_diff=max_abs)
    record_result(module="serving", mode="prefill", metric="top1", value=agreement, threshold=top1_threshold,
                  seq_len=len(ids), batch=1, mesh="1x1")
    print(f"served vs reference logprobs over {len(ids) - 1} tokens: PCC {value:.5f}, top-1 {agreement:.3f}, max |diff| {max_abs:.4f}")
    assert value >= threshold, f"served logprobs PCC {value:.5f} < {threshold} (max |diff| {max_abs:.4f})"
    assert agreement >= top1_threshold, f"served top-1 agreement {agreement:.3f} < {top1_threshold}"
