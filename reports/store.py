"""The results store: one row per measured value, appended to JSON-lines files, read with pandas.

Every accuracy and perf test writes rows through :func:`append_rows`; a run is one file
``<results-dir>/run-<run_id>.jsonl`` whose rows all carry the run's metadata (git revision, backend,
mesh, machine), so files can be copied between machines and concatenated for history.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

RESULTS_DIR_ENV = "DEEPSEEK_TT_RESULTS_DIR"
DEFAULT_RESULTS_DIR = Path("results")


@dataclass(frozen=True)
class ResultRow:
    """One measured value (DESIGN.md section 5)."""

    test_id: str
    module: str
    mode: str  # prefill | decode | teacher_forcing | generate | ...
    metric: str  # pcc | top1 | top5 | ttft_s | prefill_tok_s | decode_tok_s_u | ...
    value: float
    threshold: float | None = None
    passed: bool | None = None
    seq_len: int | None = None
    batch: int | None = None
    mesh: str | None = None
    backend: str | None = None
    dtype_policy: str | None = None
    higher_is_better: bool = True
    run_id: str | None = None
    git_revision: str | None = None
    machine: str | None = None
    timestamp: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)


RESULT_COLUMNS = [f.name for f in dataclasses.fields(ResultRow)]


def git_revision(cwd: Path | None = None) -> str:
    """Short git revision of the checkout (``+dirty`` when modified), or ``unknown``."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return f"{rev}+dirty" if dirty else rev
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_name() -> str:
    return f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cpus)"


RUN_ID_ENV = "DEEPSEEK_TT_RUN_ID"


def new_run_id() -> str:
    """``$DEEPSEEK_TT_RUN_ID`` when set (so several pytest sessions of one nightly share a run), else a fresh id."""
    if os.environ.get(RUN_ID_ENV):
        return os.environ[RUN_ID_ENV]
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"


def run_file(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / f"run-{run_id}.jsonl"


def append_rows(path: Path, rows: Iterable[ResultRow]) -> None:
    """Append rows to a JSON-lines file (created with its parent directory when missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(dataclasses.asdict(row), default=str) + "\n")


def load_results(paths: Iterable[Path] | Path) -> pd.DataFrame:
    """Read result files (or every ``*.jsonl`` in a directory) into one DataFrame with RESULT_COLUMNS."""
    if isinstance(paths, (str, Path)):
        root = Path(paths)
        files = sorted(root.glob("*.jsonl")) if root.is_dir() else [root]
    else:
        files = [Path(p) for p in paths]
    records: list[dict[str, Any]] = []
    for file in files:
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{file}:{number}: not a JSON result row ({exc.msg})") from exc
    frame = pd.DataFrame.from_records(records, columns=RESULT_COLUMNS) if records else pd.DataFrame(columns=RESULT_COLUMNS)
    return frame
