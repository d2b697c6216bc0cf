"""``python -m deepseek_tt.evaluation``: task-level accuracy with lm-evaluation-harness, TT-NN vs reference.

    python -m deepseek_tt.evaluation                                  # embedded model, server started here
    python -m deepseek_tt.evaluation --server http://127.0.0.1:8000 --model-path DIR
    python -m deepseek_tt.evaluation --results-dir results/nightly --run $DEEPSEEK_TT_RUN_ID

Runs lm-eval on the shipped offline tasks (deepseek_tt/evaluation/tasks) through the OpenAI-compatible
server (``local-completions``) and on the transformers reference (``hf``), prints both scores and their
difference, and appends result rows to ``<results-dir>/run-<run>.jsonl``. Exit status 0 when every
difference is within its tolerance and both runs score above chance, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deepseek_tt.evaluation.harness import TASK_METRICS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deepseek_tt.evaluation", description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=None,
                        help="HF model dir: the reference and the tokenizer (default $DEEPSEEK_V3_HF_MODEL, else the embedded model)")
    parser.add_argument("--server", default=None, help="base URL of a running server (default: start one on a free loopback port)")
    parser.add_argument("--served-model", default=None, help="model id sent to --server (default: the name the started server uses)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="converted-weight cache of the started server")
    parser.add_argument("--max-seq-len", type=int, default=512, help="context of the started server (default 512)")
    parser.add_argument("--tasks", default=",".join(TASK_METRICS), help=f"comma-separated, from {', '.join(TASK_METRICS)}")
    parser.add_argument("--limit", type=int, default=None, help="first N items of each task (smoke runs)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where result rows go (default $DEEPSEEK_TT_RESULTS_DIR, else results/)")
    parser.add_argument("--run", default=None, help="run id of the rows (default $DEEPSEEK_TT_RUN_ID, else a fresh one)")
    return parser


def _fail(message: str) -> int:
    print(f"python -m deepseek_tt.evaluation: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_METRICS]
    if unknown or not tasks:
        return _fail(f"--tasks: unknown task {', '.join(unknown) or '(none given)'}; known: {', '.join(TASK_METRICS)}")
    if args.limit is not None and args.limit < 1:
        return _fail(f"--limit must be >= 1, got {args.limit}")
    from deepseek_tt.demo.model_source import resolve_cache_dir, resolve_model_path

    try:
        model_path, _ = resolve_model_path(args.model_path, resolve_cache_dir(args.cache_dir))
    except (FileNotFoundError, ValueError) as exc:
        return _fail(f"--model-path: {exc}")
    if not (model_path / "config.json").is_file():
        return _fail(f"--model-path {model_path}: no config.json")

    from deepseek_tt.evaluation.agreement import MIN_ABOVE_CHANCE, compare_runs, format_table, result_fields
    from deepseek_tt.evaluation.harness import evaluate_reference, evaluate_server, offline_environment
    from deepseek_tt.evaluation.local_server import SERVED_NAME, started_server

    offline_environment()
    if args.server:
        server_run = evaluate_server(args.server, args.served_model or SERVED_NAME, model_path, tasks, args.limit)
    else:
        with started_server(model_path, cache_dir=args.cache_dir, max_seq_len=args.max_seq_len) as url:
            server_run = evaluate_server(url, SERVED_NAME, model_path, tasks, args.limit)
    reference_run = evaluate_reference(model_path, tasks, args.limit)
    rows = compare_runs(server_run, reference_run)
    print(format_table(rows))
    print(f"lm-eval time: server {server_run.seconds:.0f} s, reference {reference_run.seconds:.0f} s")
    path = _write_rows(result_fields(rows), args.results_dir, args.run)
    print(f"result rows: {path}")
    ok = all(r.agrees for r in rows) and all(
        min(r.server, r.reference) >= r.chance + MIN_ABOVE_CHANCE[r.key] for r in rows)
    return 0 if ok else 1


def _write_rows(fields: list[dict], results_dir: Path | None, run: str | None) -> Path:
    from deepseek_tt import backend
    from reports.store import DEFAULT_RESULTS_DIR, RESULTS_DIR_ENV, ResultRow, append_rows, git_revision, machine_name, new_run_id, run_file

    root = results_dir or Path(os.environ.get(RESULTS_DIR_ENV) or DEFAULT_RESULTS_DIR)
    run_id = run or new_run_id()
    meta = {"run_id": run_id, "git_revision": git_revision(), "machine": machine_name(),
            "backend": backend.describe_backend(), "dtype_policy": "default"}
    rows = []
    for f in fields:
        passed = f["value"] <= f["threshold"] if f.get("higher_is_better") is False else f["value"] >= f["threshold"]
        rows.append(ResultRow(test_id=f"deepseek_tt.evaluation::{f['metric']}", passed=passed, **meta, **f))
    path = run_file(root, run_id)
    append_rows(path, rows)
    return path


if __name__ == "__main__":
    sys.exit(main())
