"""Run the CI accuracy selection against every catalogued bug: the suite must catch each one.

    python -m deepseek_tt.accuracy.bug_catalogue [--bug NAME ...] [--mesh-shape N150|TG] [--markdown FILE]
    python -m deepseek_tt.accuracy.bug_catalogue --list

For each bug (``deepseek_tt/accuracy/bugs.py``) the repository's files (``git ls-files``: tracked and
untracked-but-not-ignored) are copied to a temporary directory, the bug's patch is applied to the copy and
``pytest -m "accuracy and quick" --quick -x`` runs there (cwd and ``PYTHONPATH`` = the copy, so the
patched library is what the tests import), without the bit-identity test (``CHANGE_DETECTORS``: it flags
every change, so it says nothing about the checks' power). A bug is *caught* when a test fails; the first failing test
id and the seconds until pytest stopped are recorded. Before the bugs, the unpatched copy runs the same
selection: a suite that fails without a bug would "catch" everything, so a red baseline is an error.

Exit status: 0 when every bug was caught, 1 when one was not (or timed out, or the baseline failed),
2 for bad input (an unknown bug, a patch that no longer applies: the bug and file are named).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor, as_completed
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deepseek_tt.accuracy.bugs import BUGS, CATEGORIES, Bug, PatchError, apply_bug, get_bug, patched_texts

#: Change detectors, left out of the selection: the bit-identity test fails on any change of the outputs (a
#: bug's or an intended fix's alike), so it would "catch" every bug first and hide whether the checks against
#: the reference can tell a wrong model from a right one, which is what the catalogue measures.
CHANGE_DETECTORS = ("suites/accuracy/test_bit_identity.py",)
#: The CI accuracy selection (tox's default env runs it with the unit tests), without the change detectors.
SELECTION = ("-m", "accuracy and quick", "--quick", *(f"--ignore={path}" for path in CHANGE_DETECTORS))
#: Never copied (build outputs, environments, results).
EXCLUDED_DIRS = {".git", ".venv", ".venv312", ".tox", "results", "generated", "__pycache__", ".pytest_cache", ".benchmarks", ".ci-venv"}
DEFAULT_TIMEOUT_S = 3600.0

CAUGHT, NOT_CAUGHT, TIMEOUT, ERROR = "caught", "NOT CAUGHT", "timeout", "error"


@dataclass(frozen=True)
class Failure:
    """One ``FAILED`` (the test body raised) or ``ERROR`` (setup / collection) line of pytest's summary."""

    kind: str
    node: str
    message: str

    @property
    def how(self) -> str:
        """``assert`` for a failed check, else the exception type (a crash still fails CI, but says less)."""
        if self.is_assertion:
            return "assert"
        head = self.message.split(":", 1)[0].strip()
        kind = head if head.isidentifier() else "crash"
        return kind if self.kind == "FAILED" else f"{kind} (setup)"

    @property
    def is_assertion(self) -> bool:
        """A failed check (assert / pytest.fail), not a crash of the code under test or of the harness."""
        return self.kind == "FAILED" and self.message.startswith(("AssertionError", "assert ", "Failed:"))


@dataclass
class Outcome:
    """The verdict of one pytest run against a (possibly patched) copy."""

    name: str
    category: str
    status: str
    caught_by: str = ""
    seconds: float = 0.0
    message: str = ""
    returncode: int | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def caught(self) -> bool:
        return self.status == CAUGHT


def repo_root() -> Path:
    """The repository this module belongs to (the directory holding ``deepseek_tt/``)."""
    return Path(__file__).resolve().parents[2]


def repository_files(root: Path) -> list[str]:
    """Relative paths of the repository's files: ``git ls-files`` (tracked + untracked not ignored), or a
    walk that skips :data:`EXCLUDED_DIRS` when ``root`` is not a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root, capture_output=True, check=True,
        ).stdout
        files = [f for f in out.decode().split("\0") if f]
        return [f for f in files if (root / f).is_file() and not set(Path(f).parts) & EXCLUDED_DIRS]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS and not d.endswith(".egg-info")]
            files += [str(Path(dirpath, f).relative_to(root)) for f in filenames if not f.endswith(".pyc")]
        return files


def copy_repository(root: Path, dest: Path, files: Sequence[str]) -> None:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)


def pytest_command(python: str, mesh_shape: str | None, results_dir: Path, extra: Sequence[str] = (), *, stop_first: bool = True) -> list[str]:
    cmd = [python, "-m", "pytest", *SELECTION, "-p", "no:cacheprovider", "-q", "-rfE", "--results-dir", str(results_dir)]
    if stop_first:
        cmd.append("-x")
    if mesh_shape:
        cmd += ["--mesh-shape", mesh_shape]
    return cmd + list(extra)


def subprocess_env(copy: Path) -> dict[str, str]:
    from deepseek_tt.config.environment import CACHE_DIR_ENV
    from reports.store import RUN_ID_ENV

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "250"  # the short summary keeps more of each failure's message
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env[RUN_ID_ENV] = f"bug-catalogue-{os.getpid()}"
    env.pop(CACHE_DIR_ENV, None)  # a shared weight cache would hide bugs in the conversion code
    return env


def failing_tests(output: str) -> list[Failure]:
    """The ``FAILED`` / ``ERROR`` lines of pytest's short summary (``-rfE``), in order."""
    failures = []
    for line in output.splitlines():
        for kind in ("FAILED", "ERROR"):
            if line.startswith(kind + " "):
                node, _, msg = line[len(kind) + 1 :].partition(" - ")
                failures.append(Failure(kind, node.strip(), msg.strip()[:300]))
    return failures


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_selection(copy: Path, *, python: str, mesh_shape: str | None, timeout_s: float, extra: Sequence[str] = (),
                  log: Path | None = None, stop_first: bool = True) -> tuple[int | None, float, list[Failure]]:
    """Run pytest in ``copy``; ``(returncode or None on timeout, seconds, the summary's failures)``."""
    log = log or copy / ".bug-catalogue-pytest.log"
    cmd = pytest_command(python, mesh_shape, copy / "results", extra, stop_first=stop_first)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=copy, env=subprocess_env(copy), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc = None
        except BaseException:
            _kill_group(proc)
            raise
    seconds = time.perf_counter() - start
    return rc, seconds, failing_tests(log.read_text(errors="replace"))


def verdict(name: str, category: str, rc: int | None, seconds: float, failures: list[Failure], *, baseline: bool = False) -> Outcome:
    """Turn a pytest run into an :class:`Outcome` (pytest exit 1 with a failing test = caught)."""
    outcome = Outcome(name, category, ERROR, seconds=seconds, returncode=rc, failures=list(failures))
    message = failures[0].message if failures else ""
    if rc is None:
        outcome.status, outcome.message = TIMEOUT, "pytest did not finish within the timeout"
    elif rc == 1 and failures:
        outcome.status, outcome.caught_by, outcome.message = CAUGHT, failures[0].node, message
    elif rc == 0:
        outcome.status = NOT_CAUGHT
    else:
        outcome.message = f"pytest exited with status {rc} (collection or usage error?) {message}".strip()
    if baseline and outcome.status != NOT_CAUGHT:
        outcome.status = ERROR
    return outcome


def run_bug(bug: Bug | None, root: Path, files: Sequence[str], *, python: str = sys.executable, mesh_shape: str | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S, extra: Sequence[str] = (), log_dir: Path | None = None, keep: bool = False,
            stop_first: bool = True) -> Outcome:
    """Copy the repository, apply ``bug`` (None: the unpatched baseline), run the selection, clean up."""
    name = bug.name if bug else "baseline (no bug)"
    category = bug.category if bug else "-"
    tmp = Path(tempfile.mkdtemp(prefix=f"bug-{bug.name if bug else 'baseline'}-"))
    try:
        copy = tmp / "repo"
        copy_repository(root, copy, files)
        if bug is not None:
            apply_bug(bug, copy)
        log = (log_dir / f"{bug.name if bug else 'baseline'}.log") if log_dir else None
        rc, seconds, failures = run_selection(
            copy, python=python, mesh_shape=mesh_shape, timeout_s=timeout_s, extra=extra, log=log, stop_first=stop_first
        )
        return verdict(name, category, rc, seconds, failures, baseline=bug is None)
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# --- report ----------------------------------------------------------------------------------------


def _rows(outcomes: Sequence[Outcome]) -> list[dict[str, str]]:
    return [
        {
            "bug": o.name,
            "category": o.category,
            "status": o.status,
            "caught by": o.caught_by or "-",
            "how": o.failures[0].how if o.caught and o.failures else "-",
            "seconds": f"{o.seconds:.0f}",
        }
        for o in outcomes
    ]


def format_table(outcomes: Sequence[Outcome]) -> str:
    import pandas as pd

    frame = pd.DataFrame(_rows(outcomes))
    with pd.option_context("display.max_colwidth", 120, "display.width", 250):
        return frame.to_string(index=False)


def markdown_table(outcomes: Sequence[Outcome], *, title: str, total_s: float) -> str:
    rows = _rows(outcomes)
    header = ["bug", "category", "status", "caught by", "how", "seconds"]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        caught_by = f"`{row['caught by']}`" if row["caught by"] != "-" else "-"
        cells = [row["bug"], row["category"], row["status"], caught_by, row["how"], row["seconds"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    caught = sum(o.caught for o in outcomes if o.category != "-")
    total = sum(1 for o in outcomes if o.category != "-")
    lines += ["", f"{caught} of {total} bugs caught; total wall time {total_s / 60:.1f} min."]
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deepseek_tt.accuracy.bug_catalogue",
        description="Apply each catalogued bug to a copy of the repository and check that the CI accuracy selection catches it.",
    )
    parser.add_argument("--list", action="store_true", help="list the bugs and exit")
    parser.add_argument("--bug", action="append", default=[], metavar="NAME", help="run only this bug (repeatable)")
    parser.add_argument("--category", action="append", default=[], metavar="CAT", help="run only the bugs of this category (repeatable)")
    parser.add_argument("--mesh-shape", default=None, help="passed to pytest (N150 = 1x1, TG = 4x8); default: pytest's default")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help=f"seconds per bug (default {DEFAULT_TIMEOUT_S:.0f})")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table as Markdown to this file")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep each pytest run's output here (one file per bug)")
    parser.add_argument("--repo", type=Path, default=None, help="repository to copy (default: the one holding this module)")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the unpatched copy first (its failure makes every bug look caught)")
    parser.add_argument("--jobs", type=int, default=1, help="bugs run in parallel (default 1; each pytest run is CPU-heavy)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies (debugging)")
    parser.add_argument("--pytest-arg", action="append", default=[], metavar="ARG", help="extra argument for pytest (repeatable)")
    return parser


def select_bugs(names: Sequence[str], categories: Sequence[str]) -> list[Bug]:
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise KeyError(f"unknown category {unknown[0]!r}; expected one of {', '.join(CATEGORIES)}")
    bugs = [get_bug(n) for n in names] if names else list(BUGS)
    return [b for b in bugs if not categories or b.category in categories]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        width = max(len(b.name) for b in BUGS)
        for bug in BUGS:
            print(f"{bug.name:<{width}}  {bug.category:<17} {bug.description}")
        return 0
    root = (args.repo or repo_root()).resolve()
    if not (root / "deepseek_tt").is_dir():
        print(f"error: --repo {root}: no deepseek_tt/ package there", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs}: must be at least 1", file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print(f"error: --timeout {args.timeout}: must be positive", file=sys.stderr)
        return 2
    try:
        bugs = select_bugs(args.bug, args.category)
        for bug in bugs:  # every patch must apply before anything runs
            patched_texts(bug, root)
    except (KeyError, PatchError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    if args.markdown is not None and not args.markdown.parent.is_dir():
        print(f"error: --markdown {args.markdown}: directory {args.markdown.parent} does not exist", file=sys.stderr)
        return 2
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)

    # One snapshot of the checkout for the whole run: edits made meanwhile cannot mix two states in a table.
    snapshot = Path(tempfile.mkdtemp(prefix="bug-catalogue-snapshot-"))
    try:
        files = repository_files(root)
        copy_repository(root, snapshot, files)
        return _run_all(args, bugs, snapshot, files)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def _run_all(args: argparse.Namespace, bugs: list[Bug], root: Path, files: list[str]) -> int:
    from tqdm.auto import tqdm

    common = dict(python=sys.executable, mesh_shape=args.mesh_shape, timeout_s=args.timeout, extra=args.pytest_arg,
                  log_dir=args.log_dir, keep=args.keep)
    start = time.perf_counter()
    title = f"mesh {args.mesh_shape or 'default'}: `pytest -m \"accuracy and quick\" --quick -x`"
    outcomes: list[Outcome] = []
    if not args.skip_baseline:
        print("baseline: the unpatched copy must pass the selection ...", file=sys.stderr)
        base = run_bug(None, root, files, **common)
        outcomes.append(base)
        if base.status != NOT_CAUGHT:
            print(f"error: the unpatched repository does not pass the selection ({base.status}: {base.caught_by} {base.message}); "
                  "every bug would look caught", file=sys.stderr)
            print(format_table(outcomes))
            return 1
    by_name: dict[str, Outcome] = {}
    with tqdm(total=len(bugs), desc="bugs", unit="bug") as bar, ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_bug, bug, root, files, **common): bug for bug in bugs}
        for future in as_completed(futures):
            outcome = future.result()
            by_name[outcome.name] = outcome
            bar.update()
            tqdm.write(f"{outcome.name}: {outcome.status} {outcome.caught_by} ({outcome.seconds:.0f} s)")
            if args.markdown is not None:  # kept current, so an interrupted run still leaves its table
                done = outcomes + [by_name[b.name] for b in bugs if b.name in by_name]
                args.markdown.write_text(markdown_table(done, title=f"{title} (partial: {len(by_name)} of {len(bugs)} bugs)",
                                                        total_s=time.perf_counter() - start))
    outcomes += [by_name[bug.name] for bug in bugs]
    total = time.perf_counter() - start
    print(format_table(outcomes))
    bug_outcomes = [o for o in outcomes if o.category != "-"]
    missed = [o for o in bug_outcomes if not o.caught]
    print(f"\n{len(bug_outcomes) - len(missed)} of {len(bug_outcomes)} bugs caught in {total / 60:.1f} min"
          f" (mesh {args.mesh_shape or 'default'})")
    if args.markdown is not None:
        args.markdown.write_text(markdown_table(outcomes, title=title, total_s=total))
    for o in missed:
        print(f"not caught: {o.name} ({o.status}) {o.message}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
