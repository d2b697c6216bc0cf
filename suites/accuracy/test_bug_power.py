"""The whole-model checks have the power to see the five whole-model bugs.

Each bug of :data:`deepseek_tt.accuracy.bugs.WHOLE_MODEL_BUGS` (routed_scaling_factor not applied, the
topk_group limit not applied, routing weights from the biased scores, the shared expert dropped, attention
zeroed in one layer) is applied to a copy of the repository, and the CI selections of the full-model
checks (``suites/accuracy/test_model.py`` on galaxy-tiny random weights and the matrix's ``model`` cases,
random and the trained checkpoint) and of teacher forcing (``test_embedded_model_teacher_forcing``) run
there in a subprocess: a full-model check and teacher forcing must each now FAIL on an assertion (not on a
crash or a fixture error). The unpatched copy runs the same selection first and must pass, so a red suite
cannot pass for power. (Routing weights taken from the biased scores barely move galaxy-tiny's random
logits, whose correction biases are small, and move the trained checkpoint's bfp8 logits by about their own
quantization noise: measured relative error 0.0256 against 0.0136 clean, top-1 120/128 against a floor of
119. The checkpoint's bf16 case, free of that noise, is what sees it: norm ratio error 0.0038 against 0.0022,
top-1 0.9375 against 0.95.)

Each patched run takes minutes on 2 cores, so these are nightly (``slow``);
``python -m deepseek_tt.accuracy.bug_catalogue`` checks the whole catalogue against the whole CI selection.
"""

from __future__ import annotations

import pytest

from deepseek_tt.accuracy import bug_catalogue as runner
from deepseek_tt.accuracy.bugs import WHOLE_MODEL_BUGS, get_bug
from deepseek_tt.config.mesh import format_mesh_shape

pytestmark = [pytest.mark.accuracy, pytest.mark.slow]

MODEL_CHECK = "suites/accuracy/test_model.py"
MATRIX = "suites/accuracy/test_matrix.py"
TEACHER_FORCING = "suites/accuracy/test_teacher_forcing.py"
#: the full-model checks (both files) and teacher forcing on the embedded model
FULL_MODEL_CHECKS = (MODEL_CHECK, MATRIX)
TIMEOUT_S = 1800.0


def selection(mesh_shape: tuple[int, int]) -> tuple[str, ...]:
    """The full-model checks and teacher forcing, CI-sized (``-m "accuracy and quick"``), on ``mesh_shape``."""
    mesh = f"mesh{format_mesh_shape(mesh_shape)}"
    matrix_cases = [f"model-prefill-seq128-users1-{mesh}-bfp8-random", f"model-decode-seq1-users32-{mesh}-bfp8-random",
                    f"model-prefill-seq128-users1-{mesh}-bfp8-checkpoint", f"model-prefill-seq128-users1-{mesh}-bf16-checkpoint"]
    return (MODEL_CHECK, *(f"{MATRIX}::test_accuracy[{case}]" for case in matrix_cases),
            f"{TEACHER_FORCING}::test_embedded_model_teacher_forcing")


def _run(bug_name: str | None, mesh_shape: tuple[int, int]) -> runner.Outcome:
    root = runner.repo_root()
    bug = get_bug(bug_name) if bug_name else None
    return runner.run_bug(
        bug, root, runner.repository_files(root), mesh_shape=format_mesh_shape(mesh_shape), timeout_s=TIMEOUT_S,
        extra=selection(mesh_shape), stop_first=False,
    )


@pytest.fixture(scope="module")
def baseline(mesh_shape) -> runner.Outcome:
    return _run(None, mesh_shape)


@pytest.mark.parametrize("bug_name", WHOLE_MODEL_BUGS)
def test_whole_model_checks_fail_with_the_bug(bug_name, baseline, mesh_shape):
    assert baseline.status == runner.NOT_CAUGHT, f"the unpatched copy must pass {selection(mesh_shape)}: {baseline}"
    outcome = _run(bug_name, mesh_shape)
    assert outcome.status != runner.TIMEOUT, f"{bug_name}: no verdict within {TIMEOUT_S:.0f} s"
    failed = {f.node.split("::")[0]: f for f in outcome.failures if f.is_assertion}
    crashes = [f for f in outcome.failures if not f.is_assertion]
    assert not crashes, f"{bug_name}: a crash or a fixture error is not a verdict: {crashes}"
    assert failed.keys() & set(FULL_MODEL_CHECKS), f"{bug_name}: every full-model check passed with the bug ({outcome.failures})"
    assert TEACHER_FORCING in failed, f"{bug_name}: teacher forcing passed with the bug ({outcome.failures})"
