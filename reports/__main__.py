"""``python -m reports``: compare the latest run with a baseline, promote a run, ingest other outputs.

    python -m reports compare --results-dir results --baseline reports/baselines/emulator.jsonl \
        --markdown report.md --html report.html        # exit 1 when anything regressed
    python -m reports promote --results-dir results --baseline reports/baselines/emulator.jsonl [--run ID]
    python -m reports ingest --results-dir results --demo-output out.json --benchmark-json bench.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from reports.compare import CompareSettings, compare, latest_run_id
from reports.ingest import rows_from_benchmark_json, rows_from_demo_output
from reports.render import render_html, render_markdown
from reports.store import DEFAULT_RESULTS_DIR, append_rows, git_revision, load_results, machine_name, new_run_id, run_file

DEFAULT_BASELINE = Path("reports/baselines/emulator.jsonl")


class ReportError(Exception):
    """A user-facing problem with the inputs; printed as one line."""


def _load_dir(results_dir: Path):
    if not results_dir.is_dir():
        raise ReportError(f"--results-dir {results_dir}: no such directory (run the suites first)")
    results = load_results(results_dir)
    if results.empty:
        raise ReportError(f"--results-dir {results_dir}: no result rows in *.jsonl")
    return results


def _cmd_compare(args: argparse.Namespace) -> int:
    results = _load_dir(args.results_dir)
    if not args.baseline.is_file():
        raise ReportError(f"--baseline {args.baseline}: no such file (create one with `python -m reports promote`)")
    baseline = load_results(args.baseline)
    if args.run and args.run not in set(results["run_id"]):
        raise ReportError(f"--run {args.run}: not found in {args.results_dir}")
    settings = CompareSettings(min_band=args.min_band, sigmas=args.sigmas, fail_on_missing=not args.allow_missing)
    comparison = compare(results, baseline, latest_run=args.run, settings=settings)
    markdown = render_markdown(comparison)
    if args.markdown:
        _write_atomic(args.markdown, markdown)
    print(markdown)
    html_path = args.html or args.results_dir / "report.html"
    _write_atomic(html_path, render_html(comparison, results))
    print(f"HTML report: {html_path}")
    return 1 if comparison.regressed else 0


def _cmd_promote(args: argparse.Namespace) -> int:
    results = _load_dir(args.results_dir)
    run = args.run or latest_run_id(results)
    rows = results[results["run_id"] == run]
    if rows.empty:
        raise ReportError(f"--run {run}: not found in {args.results_dir}")
    args.baseline.parent.mkdir(parents=True, exist_ok=True)
    if args.baseline.exists():
        shutil.copy2(args.baseline, args.baseline.with_suffix(args.baseline.suffix + ".prev"))
    _write_atomic(args.baseline, rows.to_json(orient="records", lines=True))
    print(f"baseline {args.baseline} <- run {run} ({len(rows)} rows)")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    if not (args.demo_output or args.benchmark_json):
        raise ReportError("ingest: give --demo-output and/or --benchmark-json")
    run_id = args.run or new_run_id()
    metadata = {"git_revision": git_revision(), "machine": machine_name(), "backend": args.backend, "mesh": args.mesh}
    rows = []
    for path in args.demo_output or []:
        rows += rows_from_demo_output(path, run_id, **metadata)
    for path in args.benchmark_json or []:
        rows += rows_from_benchmark_json(path, run_id, **metadata)
    target = run_file(args.results_dir, run_id)
    append_rows(target, rows)
    print(f"{len(rows)} rows -> {target}")
    return 0


def _write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results-dir", type=Path, default=Path(os.environ.get("DEEPSEEK_TT_RESULTS_DIR", DEFAULT_RESULTS_DIR)))

    cmp_ = sub.add_parser("compare", parents=[common], help="latest run vs baseline and history; exit 1 on regression")
    cmp_.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    cmp_.add_argument("--run", help="run id to judge (default: the newest)")
    cmp_.add_argument("--markdown", type=Path, help="also write the Markdown summary here")
    cmp_.add_argument("--html", type=Path, help="HTML report path (default: <results-dir>/report.html)")
    cmp_.add_argument("--min-band", type=float, default=0.05, help="smallest throughput noise band (relative)")
    cmp_.add_argument("--sigmas", type=float, default=3.0, help="noise band width in standard deviations of the history")
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
    except (ReportError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
