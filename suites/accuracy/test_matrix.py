"""``pytest -m accuracy``: the module x mode x seq_len x users x mesh x dtype policy x weights matrix.

Cases and runs are defined in ``suites/accuracy/matrix.py``. ``--quick`` (CI) keeps the cases marked
``quick``; the nightly run takes them all. With ``--mesh-shape`` (e.g. ``--backend ttnn --mesh-shape TG``
on a Galaxy) the mesh axis is that one shape; otherwise the emulator runs 1x1 and 4x8.
"""

from __future__ import annotations

import pytest

from deepseek_tt.accuracy.checks import check_metrics
from deepseek_tt.config.mesh import format_mesh_shape, parse_mesh_shape
from suites.accuracy.matrix import MESHES, matrix_cases, run_for

pytestmark = pytest.mark.accuracy


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    given = metafunc.config.getoption("--mesh-shape")
    meshes = (parse_mesh_shape(given),) if given else MESHES
    params = []
    for case in matrix_cases(meshes):
        marks = [pytest.mark.quick] if case.quick else []
        if case.mode == "prefill" and case.seq_len > 128 and case.mesh != (1, 1):
            marks.append(pytest.mark.slow)
        params.append(pytest.param(case, case.mesh, id=case.id, marks=marks))
    metafunc.parametrize(["case", "mesh_device"], params, indirect=["mesh_device"])


def test_accuracy(case, mesh_device, request, record_result):
    """Every stage of the case's module: PCC, relative error, norm ratio (and top-1 for ``model``) against
    the table; all recorded, every failing stage named (the model's drill-down comes with a failure)."""
    run = run_for(case, request, mesh_device)
    values = run.values.get(case.module)
    assert values, f"{case.id}: the run measured nothing for {case.module}"
    mesh = format_mesh_shape(case.mesh)
    failures = []
    for stage, metrics in values:
        try:
            check_metrics(case.module, case.mode, case.policy, metrics, record_result, what=f"{case.id}: {stage}",
                          threshold_module=case.threshold_module(), seq_len=case.seq_len, batch=case.users, mesh=mesh,
                          stage=stage, weights=case.weights)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        detail = run.drilldown.describe() if run.drilldown is not None else "(no drill-down)"
        raise AssertionError("\n".join(failures) + "\n" + detail)
