"""The bug catalogue (deepseek_tt/accuracy/bugs.py) and its runner, checked cheaply.

- Every patch applies exactly once to the current model code, changes it, and leaves valid Python.
- The catalogue holds at least 20 bugs and covers every category of ``bugs.CATEGORIES``.
- The runner: a stale patch is an exit-2 error naming the bug and file; the verdict logic; and, on a tiny
  fake repository, the whole mechanism (copy, patch, PYTHONPATH, pytest, first failing test, timeout).
"""

from __future__ import annotations

import ast
import shutil
import textwrap
from pathlib import Path

import pytest

from deepseek_tt.accuracy import bug_catalogue as runner
from deepseek_tt.accuracy.bugs import BUGS, CATEGORIES, WHOLE_MODEL_BUGS, Bug, Edit, PatchError, apply_bug, get_bug, patched_texts

pytestmark = pytest.mark.unit

ROOT = runner.repo_root()
REQUIRED_CATEGORIES = {
    "routing", "rope_yarn", "attention_scale", "kv_cache", "norms", "residuals", "mlp_wiring", "expert_placement", "dtype_policy",
}


@pytest.mark.parametrize("bug", BUGS, ids=[b.name for b in BUGS])
def test_patch_applies_exactly_once_and_changes_the_code(bug: Bug):
    texts = patched_texts(bug, ROOT)  # raises PatchError unless every snippet occurs exactly once
    assert texts, bug.name
    for rel, (original, patched) in texts.items():
        assert rel.startswith("deepseek_tt/") and not rel.startswith("deepseek_tt/accuracy/"), f"{bug.name}: patches {rel}"
        assert patched != original
        ast.parse(patched, filename=rel)  # the bug is a logic error, never a syntax error
    assert bug.category in CATEGORIES and bug.description


def test_catalogue_size_and_coverage():
    names = [b.name for b in BUGS]
    assert len(names) == len(set(names)), "bug names must be unique"
    assert len(BUGS) >= 20
    covered = {b.category for b in BUGS}
    assert REQUIRED_CATEGORIES <= covered, f"categories without a bug: {sorted(REQUIRED_CATEGORIES - covered)}"
    assert set(WHOLE_MODEL_BUGS) <= set(names)


def test_issue_examples_are_in_the_catalogue():
    for name in ("routed_scaling_factor_missing", "topk_group_not_applied", "group_score_best_expert", "weights_from_biased_scores",
                 "shared_expert_dropped", "attention_dropped_in_moe_layer", "rms_norm_eps_0_1", "rms_norm_not_normalising",
                 "yarn_correction_range_unrounded", "lm_head_bfloat4"):
        get_bug(name)
    with pytest.raises(KeyError, match="unknown bug 'nope'"):
        get_bug("nope")


def test_stale_patch_names_bug_and_file(tmp_path, capsys):
    bug = BUGS[0]
    for rel in bug.files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    target = tmp_path / bug.edits[0].path
    target.write_text(target.read_text().replace(bug.edits[0].old, ""))
    with pytest.raises(PatchError, match=f"bug {bug.name}: {bug.edits[0].path}: .* occurs 0 times"):
        apply_bug(bug, tmp_path)
    assert runner.main(["--repo", str(tmp_path), "--bug", bug.name]) == 2
    err = capsys.readouterr().err
    assert bug.name in err and bug.edits[0].path in err


def test_bad_arguments_exit_2(capsys):
    assert runner.main(["--bug", "no_such_bug"]) == 2
    assert "unknown bug 'no_such_bug'" in capsys.readouterr().err
    assert runner.main(["--category", "nope"]) == 2
    assert runner.main(["--jobs", "0"]) == 2
    assert runner.main(["--markdown", "/no/such/dir/table.md", "--bug", BUGS[0].name]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_list(capsys):
    assert runner.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(b.name in out for b in BUGS)


def test_verdict():
    fail = [runner.Failure("FAILED", "suites/x.py::t", "AssertionError: PCC 0.5")]
    assert runner.verdict("b", "routing", 1, 3.0, fail).status == runner.CAUGHT
    assert runner.verdict("b", "routing", 1, 3.0, fail).caught_by == "suites/x.py::t"
    assert runner.verdict("b", "routing", 0, 3.0, []).status == runner.NOT_CAUGHT
    assert runner.verdict("b", "routing", None, 3.0, []).status == runner.TIMEOUT
    assert runner.verdict("b", "routing", 2, 3.0, []).status == runner.ERROR  # collection error: not a catch
    assert runner.verdict("b", "routing", 1, 3.0, []).status == runner.ERROR  # no failing test named
    assert runner.verdict("base", "-", 0, 3.0, [], baseline=True).status == runner.NOT_CAUGHT
    assert runner.verdict("base", "-", 1, 3.0, fail, baseline=True).status == runner.ERROR
    assert fail[0].is_assertion and not runner.Failure("FAILED", "n", "ValueError: x").is_assertion
    assert not runner.Failure("ERROR", "n", "AssertionError: in a fixture").is_assertion
    assert runner.Failure("FAILED", "n", "RuntimeError: position 96").how == "RuntimeError"
    assert runner.Failure("ERROR", "n", "ValueError: x").how == "ValueError (setup)"
    assert fail[0].how == "assert"


def test_summary_parsing():
    out = "....\nFAILED a/b.py::t[x-y] - AssertionError: bad - worse\nERROR c.py::u - ValueError: v\n1 failed"
    assert runner.failing_tests(out) == [
        runner.Failure("FAILED", "a/b.py::t[x-y]", "AssertionError: bad - worse"),
        runner.Failure("ERROR", "c.py::u", "ValueError: v"),
    ]


def test_repository_files_skip_build_outputs():
    files = runner.repository_files(ROOT)
    assert "deepseek_tt/accuracy/bugs.py" in files and "conftest.py" in files
    assert not any(Path(f).parts[0] in runner.EXCLUDED_DIRS for f in files)


FAKE_CONFTEST = '''
import pytest

def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true")
    parser.addoption("--mesh-shape", default=None)
    parser.addoption("--results-dir", default=None)
'''

FAKE_TEST = '''
import time
import pytest
from deepseek_tt import constants

@pytest.mark.accuracy
@pytest.mark.quick
def test_value():
    assert constants.VALUE == 1, "VALUE changed"

@pytest.mark.accuracy
@pytest.mark.quick
def test_sleep():
    time.sleep(constants.SLEEP)
'''


FAKE_CHANGE_DETECTOR = '''
import pytest
from deepseek_tt import constants

@pytest.mark.accuracy
@pytest.mark.quick
def test_outputs_unchanged():
    assert (constants.VALUE, constants.SLEEP) == (1, 0), "outputs moved"
'''


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    """A tiny repository with the runner's contract: a ``deepseek_tt`` package and quick accuracy tests."""
    root = tmp_path / "fake"
    (root / "deepseek_tt").mkdir(parents=True)
    (root / "suites").mkdir()
    (root / "deepseek_tt" / "__init__.py").write_text("")
    (root / "deepseek_tt" / "constants.py").write_text("VALUE = 1\nSLEEP = 0\n")
    (root / "conftest.py").write_text(textwrap.dedent(FAKE_CONFTEST))
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    accuracy: a\n    quick: q\n")
    (root / "suites" / "test_fake.py").write_text(textwrap.dedent(FAKE_TEST))
    # A change detector collected before test_fake.py: it fails on any change, so it must not be what catches.
    for path in runner.CHANGE_DETECTORS:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(FAKE_CHANGE_DETECTOR))
    return root


def test_runner_end_to_end_on_a_fake_repository(fake_repo: Path, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the fake suite needs none; saves seconds per run
    files = runner.repository_files(fake_repo)
    assert "deepseek_tt/constants.py" in files
    base = runner.run_bug(None, fake_repo, files, timeout_s=120)
    assert base.status == runner.NOT_CAUGHT, base
    bug = Bug("value_two", "VALUE is 2", "routing", (Edit("deepseek_tt/constants.py", "VALUE = 1", "VALUE = 2"),))
    out = runner.run_bug(bug, fake_repo, files, timeout_s=120)
    assert out.status == runner.CAUGHT and out.caught_by == "suites/test_fake.py::test_value", out  # not the change detector
    assert out.failures[0].is_assertion and "VALUE changed" in out.failures[0].message
    assert (fake_repo / "deepseek_tt" / "constants.py").read_text() == "VALUE = 1\nSLEEP = 0\n", "the original must stay untouched"
    slow = Bug("slow", "sleeps", "routing", (Edit("deepseek_tt/constants.py", "SLEEP = 0", "SLEEP = 60"),))
    assert runner.run_bug(slow, fake_repo, files, timeout_s=5).status == runner.TIMEOUT


def test_change_detectors_are_left_out_of_the_selection():
    root = Path(__file__).resolve().parents[2]
    for path in runner.CHANGE_DETECTORS:
        assert (root / path).is_file(), f"{path}: a change detector the runner leaves out no longer exists"
        assert f"--ignore={path}" in runner.pytest_command("python", None, Path("results"))


def test_markdown_table():
    outcomes = [
        runner.Outcome("baseline (no bug)", "-", runner.NOT_CAUGHT, seconds=10),
        runner.Outcome("b1", "routing", runner.CAUGHT, caught_by="suites/a.py::t[x|y]", seconds=5,
                       failures=[runner.Failure("FAILED", "suites/a.py::t[x|y]", "AssertionError: PCC")]),
        runner.Outcome("b2", "norms", runner.NOT_CAUGHT, seconds=7),
    ]
    text = runner.markdown_table(outcomes, title="t", total_s=120)
    assert "| b1 | routing | caught | `suites/a.py::t[x\\|y]` | assert | 5 |" in text
    assert "1 of 2 bugs caught" in text
    assert "b2" in runner.format_table(outcomes)


def test_docs_list_every_bug():
    text = (ROOT / "docs" / "BUG_CATALOGUE.md").read_text()
    missing = [b.name for b in BUGS if f"`{b.name}`" not in text]
    assert not missing, f"docs/BUG_CATALOGUE.md does not list {missing}"
