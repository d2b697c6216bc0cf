"""Task-level accuracy through lm-evaluation-harness: the shipped offline tasks run through the
OpenAI-compatible server on the TT-NN model (lm-eval's ``local-completions``: loglikelihood via
``echo``/``logprobs``, greedy generation) and on the transformers reference (lm-eval's ``hf`` backend).

Both must score well above chance, and their scores must agree within the calibrated tolerance
(``deepseek_tt.evaluation.agreement.TOLERANCE``). Runs in the ``eval`` tox env (``pip install .[eval]``).
"""

from __future__ import annotations

import pytest

from deepseek_tt.evaluation.__main__ import main as evaluation_main
from deepseek_tt.evaluation.agreement import MIN_ABOVE_CHANCE, compare_runs, format_table, result_fields
from deepseek_tt.evaluation.harness import TASK_METRICS, evaluate_reference, evaluate_server
from deepseek_tt.evaluation.local_server import SERVED_NAME, started_server
from reference_models.embedded import embedded_model_path

pytestmark = [pytest.mark.lm_eval]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import lm_eval  # noqa: F401  (the eval extra; imported here so the default env can deselect these tests)

    model_path = embedded_model_path()
    with started_server(model_path, cache_dir=tmp_path_factory.mktemp("lm-eval-cache"), max_seq_len=256) as url:
        server = evaluate_server(url, SERVED_NAME, model_path)
    reference = evaluate_reference(model_path)
    return server, reference


def test_shipped_tasks_are_complete(runs):
    server, reference = runs
    for run in (server, reference):
        assert {s.task: s.items for s in run.scores} == {"pydoc_mc": 60, "pydoc_gen": 40}
    assert {s.task for s in server.scores} == set(TASK_METRICS)


def test_server_and_reference_scores_agree(runs, record_result):
    server, reference = runs
    rows = compare_runs(server, reference)
    print("\n" + format_table(rows))
    print(f"lm-eval time: server {server.seconds:.0f} s, reference {reference.seconds:.0f} s")
    for fields in result_fields(rows):
        extra = fields.pop("extra")
        record_result(**fields, **extra)
    for r in rows:
        floor = r.chance + MIN_ABOVE_CHANCE[r.key]
        assert r.reference >= floor, f"{r.key}: reference scores {r.reference:.3f}, not above chance {r.chance} + {MIN_ABOVE_CHANCE[r.key]}"
        assert r.server >= floor, f"{r.key}: server scores {r.server:.3f}, not above chance {r.chance} + {MIN_ABOVE_CHANCE[r.key]}"
        assert r.agrees, f"{r.key}: server {r.server:.4f} vs reference {r.reference:.4f} differ by more than {r.tolerance}"


@pytest.mark.parametrize("argv, flag", [
    (["--tasks", "hellaswag"], "--tasks"),
    (["--model-path", "/nonexistent/model"], "--model-path"),
    (["--limit", "0"], "--limit"),
])
def test_cli_bad_input_exits_2(argv, flag, capsys):
    assert evaluation_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and len(err.splitlines()) == 1
