"""``python -m reports``: compare the latest run with a baseline, promote a run, ingest other outputs.

    python -m reports compare --results-dir results --baseline reports/baselines/emulator.jsonl \
        --markdown report.md --html report.html        # exit 1 when anything regressed
    python -m reports promote --results-dir results --baseline reports/baselines/emulator.jsonl [--run ID]
    python -m reports ingest --results-dir results --demo-output out.json --benchmark-json bench.json
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

from reports.compare import CompareError, CompareSettings, check_run_ids, compare, latest_run_id
from reports.ingest import drop_recorded, rows_from_benchmark_json, rows_from_demo_output
from reports.render import render_html, render_markdown
from reports.store import (
    DEFAULT_RESULTS_DIR,
    RESULTS_DIR_ENV,
    ResultFileError,
    append_rows,
    git_revision,
    load_results,
    machine_name,
    new_run_id,
    rows_to_jsonl,
    run_file,
)

DEFAULT_BASELINE = Path("reports/baselines/emulator.jsonl")


class ReportError(Exception):
    """A user-facing problem with the inputs; printed as one line."""


def _check_results_dir(results_dir: Path) -> None:
    if not results_dir.is_dir():
        what = "not a directory" if results_dir.exists() else "no such directory (run the suites first)"
        raise ReportError(f"--results-dir {results_dir}: {what}")


def _load_dir(results_dir: Path):
    _check_results_dir(results_dir)
    results = load_results(results_dir)
    if results.empty:
        raise ReportError(f"--results-dir {results_dir}: no result rows in *.jsonl")
    return results


def _inputs(results_dir: Path, *others: Path) -> set[Path]:
    """Resolved paths of every file a command reads (outputs must not be one of them)."""
    files = {p.resolve() for p in Path(results_dir).glob("*.jsonl")} if Path(results_dir).is_dir() else set()
    return files | {Path(p).resolve() for p in others if p is not None}


def _check_output(flag: str, path: Path, inputs: set[Path]) -> None:
    """An output path must be a writable file location that is not one of this run's inputs."""
    path = Path(path)
    if path.is_dir():
        raise ReportError(f"{flag} {path}: is a directory; give a file path")
    if path.resolve() in inputs:
        raise ReportError(f"{flag} {path}: is an input of this command; refusing to overwrite it")
    if path.parent.exists() and not path.parent.is_dir():
        raise ReportError(f"{flag} {path}: {path.parent} is not a directory")


def _check_baseline(path: Path) -> None:
    if path.is_dir():
        raise ReportError(f"--baseline {path}: is a directory; give a .jsonl file")
    if not path.is_file():
        raise ReportError(f"--baseline {path}: no such file (create one with `python -m reports promote`)")


def _cmd_compare(args: argparse.Namespace) -> int:
    _check_results_dir(args.results_dir)
    _check_baseline(args.baseline)
    html_path = args.html or args.results_dir / "report.html"
    inputs = _inputs(args.results_dir, args.baseline)
    if args.markdown:
        _check_output("--markdown", args.markdown, inputs)
    _check_output("--html", html_path, inputs)
    if args.markdown and html_path and Path(args.markdown).resolve() == Path(html_path).resolve():
        raise ReportError(f"--markdown and --html are the same file ({args.markdown})")
    results = _load_dir(args.results_dir)
    baseline = load_results(args.baseline)
    if baseline.empty:
        raise ReportError(f"--baseline {args.baseline}: no result rows; nothing to compare against (promote a run first)")
    if args.run and args.run not in set(results["run_id"]):
        raise ReportError(f"--run {args.run}: not found in {args.results_dir}")
    settings = CompareSettings(min_band=args.min_band, sigmas=args.sigmas, fail_on_missing=not args.allow_missing)
    comparison = compare(results, baseline, latest_run=args.run, settings=settings)
    markdown = render_markdown(comparison, results)
    if args.markdown:
        _write_atomic(args.markdown, markdown, "--markdown")
    print(markdown)
    _write_atomic(html_path, render_html(comparison, results), "--html")
    print(f"HTML report: {html_path}")
    return 1 if comparison.regressed else 0


def _cmd_promote(args: argparse.Namespace) -> int:
    _check_output("--baseline", args.baseline, _inputs(args.results_dir))
    results = _load_dir(args.results_dir)
    check_run_ids(results, str(args.results_dir))
    run = args.run or latest_run_id(results)
    rows = results[results["run_id"] == run]
    if rows.empty:
        raise ReportError(f"--run {run}: not found in {args.results_dir}")
    bad = rows[~rows["value"].astype(float).map(math.isfinite)]
    if len(bad):
        first = bad.iloc[0]
        raise ReportError(
            f"{first['source']}: run {run} has {len(bad)} non-finite value(s) ({first['test_id']} {first['metric']} = "
            f"{first['value']}); a baseline must hold finite values"
        )
    if args.baseline.exists():
        shutil.copy2(args.baseline, args.baseline.with_suffix(args.baseline.suffix + ".prev"))
    _write_atomic(args.baseline, rows_to_jsonl(rows), "--baseline")
    print(f"baseline {args.baseline} <- run {run} ({len(rows)} rows)")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    if not (args.demo_output or args.benchmark_json):
        raise ReportError("ingest: give --demo-output and/or --benchmark-json")
    if args.results_dir.exists() and not args.results_dir.is_dir():
        raise ReportError(f"--results-dir {args.results_dir}: not a directory")
    run_id = args.run or new_run_id()
    target = run_file(args.results_dir, run_id)
    for flag, paths in (("--demo-output", args.demo_output), ("--benchmark-json", args.benchmark_json)):
        for path in paths or []:
            if path.resolve() == target.resolve():
                raise ReportError(f"{flag} {path}: is the result file this command appends to")
            if not path.is_file():
                raise ReportError(f"{flag} {path}: {'is a directory' if path.is_dir() else 'no such file'}")
    if target.is_dir():
        raise ReportError(f"--run {run_id}: {target} is a directory")
    existing = load_results(target) if target.is_file() else load_results([])
    metadata = {**_run_provenance(existing), "backend": args.backend, "mesh": args.mesh}
    rows = []
    for path in args.demo_output or []:
        rows += rows_from_demo_output(path, run_id, **metadata)
    for path in args.benchmark_json or []:
        rows += rows_from_benchmark_json(path, run_id, **metadata)
    added = drop_recorded(rows, existing[["test_id", "metric", "stage"]].itertuples(index=False, name=None))
    append_rows(target, added)
    skipped = f" ({len(rows) - len(added)} already recorded by the run's tests)" if len(added) < len(rows) else ""
    print(f"{len(added)} rows -> {target}{skipped}")
    return 0


def _run_provenance(existing: pd.DataFrame) -> dict[str, str]:
    """git revision and machine of the rows a run already holds (their last values): ingesting later, or from
    another checkout, must not stamp the run's measurements with where the ingest ran; else this checkout's."""
    provenance = {"git_revision": git_revision(), "machine": machine_name()}
    for key in provenance:
        known = existing[key].dropna() if key in existing else []
        if len(known):
            provenance[key] = str(known.iloc[-1])
    return provenance


def _write_atomic(path: Path, text: str, flag: str = "output") -> None:
    """Write through a temp file in the same directory; the temp file never outlives a failure."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as handle:
            temp = Path(handle.name)
            try:
                handle.write(text)
            except BaseException:
                handle.close()
                temp.unlink(missing_ok=True)
                raise
        try:
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ReportError(f"{flag} {path}: cannot write ({exc.strerror or exc})") from None


def _non_negative(flag: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number >= 0, got {text!r}")
        return value
    return parse


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``python -m reports compare: error: argument --min-band: ...``), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m reports", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    common = _Parser(add_help=False)
    common.add_argument("--results-dir", type=Path, default=Path(os.environ.get(RESULTS_DIR_ENV, DEFAULT_RESULTS_DIR)))

    cmp_ = sub.add_parser("compare", parents=[common], help="latest run vs baseline and history; exit 1 on regression")
    cmp_.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    cmp_.add_argument("--run", help="run id to judge (default: the newest)")
    cmp_.add_argument("--markdown", type=Path, help="also write the Markdown summary here")
    cmp_.add_argument("--html", type=Path, help="HTML report path (default: <results-dir>/report.html)")
    cmp_.add_argument("--min-band", type=_non_negative("--min-band"), default=0.05, help="smallest throughput noise band (relative)")
    cmp_.add_argument("--sigmas", type=_non_negative("--sigmas"), default=3.0, help="noise band width in standard deviations of the history")
    cmp_.add_argument("--allow-missing", action="store_true", help="do not fail when baseline results are missing")
    cmp_.set_defaults(func=_cmd_compare)

    promote = sub.add_parser("promote", parents=[common], help="make a run the new baseline")
    promote.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    promote.add_argument("--run", help="run id (default: the newest)")
    promote.set_defaults(func=_cmd_promote)

    ingest = sub.add_parser("ingest", parents=[common], help="add demo statistics / benchmark JSON as result rows")
    ingest.add_argument("--demo-output", type=Path, action="append")
    ingest.add_argument("--benchmark-json", type=Path, action="append")
    ingest.add_argument("--run", help="run id to append to (default: a new run)")
    ingest.add_argument("--backend", default=None)
    ingest.add_argument("--mesh", default=None)
    ingest.set_defaults(func=_cmd_ingest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ReportError, ResultFileError, CompareError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
