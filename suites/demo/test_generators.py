"""bp / pp generators, sampling, eos, traced decode and statistics on a deterministic fake model."""

from __future__ import annotations

import pytest
import torch

from deepseek_tt.generator import BatchParallelGenerator, PipelineParallelGenerator, SamplingParams, make_generator
from deepseek_tt.generator.base import STOP_EOS, STOP_MAX_NEW_TOKENS, STOP_MAX_SEQ_LEN
from deepseek_tt.generator.trace import TraceUnsupportedError
from suites.demo.fake_model import EOS, FakeModel, TraceableFakeModel

pytestmark = pytest.mark.demo

PROMPTS = [[5, 9, 11], [7, 2], [13, 14, 15, 16, 17], [21], [33, 34], [40, 41, 42]]  # 6 users > batch of 4


def _tokens(output):
    return [r.tokens for r in output.results]


def _expected_greedy(model: FakeModel, prompt: list[int], n: int) -> list[int]:
    history, out = list(prompt), []
    for _ in range(n):
        token = int(torch.argmax(model._logits(history, len(prompt))))
        out.append(token)
        history.append(token)
    return out


@pytest.mark.parametrize("name", ["bp", "pp"])
def test_greedy_tokens_follow_each_users_history(name):
    model = FakeModel()
    out = make_generator(name, model).generate(PROMPTS, max_new_tokens=6)
    assert _tokens(out) == [_expected_greedy(FakeModel(), p, 6) for p in PROMPTS]
    assert [r.prompt_tokens for r in out.results] == PROMPTS
    assert all(r.stop_reason == STOP_MAX_NEW_TOKENS for r in out.results)


def test_bp_and_pp_give_identical_greedy_and_sampled_tokens():
    for sampling in (SamplingParams(), SamplingParams(temperature=0.8, top_k=20, top_p=0.9, seed=7)):
        bp = BatchParallelGenerator(FakeModel()).generate(PROMPTS, 8, sampling)
        pp = PipelineParallelGenerator(FakeModel()).generate(PROMPTS, 8, sampling)
        assert _tokens(bp) == _tokens(pp)


def test_bp_decodes_whole_batch_per_step_and_pp_interleaves():
    bp_model, pp_model = FakeModel(), FakeModel()
    BatchParallelGenerator(bp_model).generate(PROMPTS[:4], 5)
    PipelineParallelGenerator(pp_model).generate(PROMPTS[:4], 5)
    assert bp_model.decode_calls == 4  # 5 new tokens: 1 from prefill + 4 batched steps
    assert pp_model.decode_calls == 4 + 3  # users join one per tick, so the pipeline drains longer


def test_same_seed_same_samples_and_other_seed_differs():
    params = SamplingParams(temperature=1.0, seed=3)
    first = _tokens(BatchParallelGenerator(FakeModel()).generate(PROMPTS, 10, params))
    again = _tokens(BatchParallelGenerator(FakeModel()).generate(PROMPTS, 10, params))
    other = _tokens(BatchParallelGenerator(FakeModel()).generate(PROMPTS, 10, SamplingParams(temperature=1.0, seed=4)))
    greedy = _tokens(BatchParallelGenerator(FakeModel()).generate(PROMPTS, 10))
    assert first == again
    assert first != other
    assert first != greedy


def test_top_k_one_is_greedy():
    greedy = _tokens(BatchParallelGenerator(FakeModel()).generate(PROMPTS, 6))
    top1 = _tokens(BatchParallelGenerator(FakeModel()).generate(PROMPTS, 6, SamplingParams(temperature=2.0, top_k=1, seed=9)))
    assert top1 == greedy


@pytest.mark.parametrize("name", ["bp", "pp"])
def test_stop_on_eos(name):
    model = FakeModel(eos_after={7: 3, 21: 1})
    out = make_generator(name, model).generate(PROMPTS, 8, eos_token_id=EOS)
    by_first = {r.prompt_tokens[0]: r for r in out.results}
    assert by_first[7].tokens[-1] == EOS and len(by_first[7].tokens) == 3 and by_first[7].stop_reason == STOP_EOS
    assert by_first[21].tokens == [EOS] and by_first[21].stop_reason == STOP_EOS
    assert all(len(r.tokens) == 8 for first, r in by_first.items() if first not in (7, 21))
    # without eos ids the same model keeps going
    out = make_generator(name, FakeModel(eos_after={7: 3})).generate(PROMPTS, 8)
    assert all(len(r.tokens) == 8 for r in out.results)


def test_stop_at_max_seq_len():
    model = FakeModel(max_seq_len=8)
    out = BatchParallelGenerator(model).generate([[3, 4, 5]], 20)
    assert out.results[0].stop_reason == STOP_MAX_SEQ_LEN
    assert len(out.results[0].prompt_tokens) + len(out.results[0].tokens) == 8


def test_traced_decode_captures_once_and_matches_eager():
    eager = _tokens(BatchParallelGenerator(FakeModel()).generate(PROMPTS, 7))
    model = TraceableFakeModel()
    traced = BatchParallelGenerator(model, enable_trace=True).generate(PROMPTS, 7)
    assert _tokens(traced) == eager
    assert len(model.traces) == 2  # one capture per wave of 4 users
    assert [t.replays for t in model.traces] == [5, 5]  # 6 decode steps: 1 eager (compile) + 5 replays
    assert all(t.released for t in model.traces)


def test_trace_unsupported_model_and_pp_trace_are_refused():
    with pytest.raises(TraceUnsupportedError, match="no traceable decode step"):
        BatchParallelGenerator(FakeModel(), enable_trace=True)
    with pytest.raises(ValueError, match="--enable-trace is not supported with --generator pp"):
        PipelineParallelGenerator(TraceableFakeModel(), enable_trace=True)


def test_bad_prompts_are_refused():
    gen = BatchParallelGenerator(FakeModel())
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        gen.generate([[3], []], 4)
    with pytest.raises(ValueError, match="token id 64 outside the vocabulary"):
        gen.generate([[3, 64]], 4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate([[3]], 0)


def test_statistics_follow_the_definitions():
    out = BatchParallelGenerator(FakeModel()).generate(PROMPTS[:4], 6)
    s = out.statistics
    assert s.num_users == 4 and s.prompt_tokens == sum(len(p) for p in PROMPTS[:4]) and s.new_tokens == 24
    assert s.decode_steps == 5
    assert s.prefill_tokens_per_s == pytest.approx(s.prompt_tokens / s.prefill_time_s)
    assert s.ttft_s == pytest.approx(s.prefill_time_s / 4)
    steady = s.decode_time_s - s.compile_step_time_s
    assert s.decode_tokens_per_s_per_user == pytest.approx(4 / steady)
    assert s.decode_tokens_per_s == pytest.approx(4 * s.decode_tokens_per_s_per_user)
    assert s.total_runtime_s >= s.prefill_time_s + s.decode_time_s
    assert set(s.to_dict()) >= {"prefill_tokens_per_s", "ttft_s", "decode_tokens_per_s_per_user", "decode_tokens_per_s", "total_runtime_s"}
    assert "decode t/s/u" in s.table()


def test_one_new_token_needs_no_decode_step():
    model = FakeModel()
    out = BatchParallelGenerator(model).generate(PROMPTS[:2], 1)
    assert model.decode_calls == 0 and all(len(r.tokens) == 1 for r in out.results)
    assert out.statistics.decode_tokens_per_s_per_user is None and out.statistics.compile_step_time_s is None
