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
    """One measured value (docs/DESIGN.md section 5.5)."""

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
            handle.write(json.dumps(dataclasses.asdict(row), default=_plain) + "\n")


def _plain(value: Any) -> Any:
    """numpy / torch scalars as Python numbers (so an int seq_len stays an int); anything else as text."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            plain = item()
        except (TypeError, ValueError, RuntimeError):
            return str(value)
        if isinstance(plain, (bool, int, float, str)):
            return plain
    return str(value)


class ResultFileError(ValueError):
    """A result file that cannot be read as result rows; the message names the file and line."""


_STRING_FIELDS = ("module", "mode", "mesh", "backend", "dtype_policy", "run_id", "git_revision", "machine")
_INT_FIELDS = ("seq_len", "batch")
_BOOL_FIELDS = ("passed", "higher_is_better")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_row(record: Any) -> dict[str, Any]:
    """Check one decoded JSON line against :class:`ResultRow`; returns the row with defaults filled in.

    Raises ``ValueError`` with a short reason (the caller adds file and line). Unknown keys are ignored,
    so rows written by a newer version still load; NaN and infinite values load (the comparison judges them).
    """
    if not isinstance(record, dict):
        raise ValueError(f"a result row must be a JSON object, got {type(record).__name__}")
    for key in ("test_id", "metric"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ValueError(f"'{key}' must be a non-empty string")
    if not _is_number(record.get("value")):
        raise ValueError(f"'value' must be a number, got {json.dumps(record.get('value'))[:40]}")
    row = {name: record.get(name) for name in RESULT_COLUMNS}
    for key in _STRING_FIELDS:
        if row[key] is not None and not isinstance(row[key], str):
            raise ValueError(f"'{key}' must be a string or null")
    for key in _INT_FIELDS:
        if row[key] is not None and (not _is_number(row[key]) or float(row[key]) != int(row[key])):
            raise ValueError(f"'{key}' must be an integer or null")
    for key in _BOOL_FIELDS:
        if row[key] is not None and not isinstance(row[key], bool):
            raise ValueError(f"'{key}' must be true, false or null")
    if row["threshold"] is not None and not _is_number(row["threshold"]):
        raise ValueError("'threshold' must be a number or null")
    if row["timestamp"] is None or not _is_number(row["timestamp"]) or row["timestamp"] != row["timestamp"]:
        raise ValueError("'timestamp' must be a number")
    if row["extra"] is None:
        row["extra"] = {}
    if not isinstance(row["extra"], dict):
        raise ValueError("'extra' must be a JSON object")
    if row["higher_is_better"] is None:
        row["higher_is_better"] = True
    row["module"] = row["module"] or ""
    row["mode"] = row["mode"] or ""
    return row


def _read_rows(file: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    try:
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ResultFileError(f"{file}:{number}: not a JSON result row ({exc.msg})") from None
                except RecursionError:
                    raise ResultFileError(f"{file}:{number}: not a result row (JSON nested too deeply)") from None
                try:
                    row = validate_row(record)
                except ValueError as exc:
                    raise ResultFileError(f"{file}:{number}: bad result row: {exc}") from None
                row["source"] = f"{file}:{number}"
                records.append(row)
    except UnicodeDecodeError:
        raise ResultFileError(f"{file}: not a UTF-8 text file of JSON result rows") from None
    except IsADirectoryError:
        raise ResultFileError(f"{file}: is a directory, not a result file") from None
    except FileNotFoundError:
        raise ResultFileError(f"{file}: no such result file") from None
    except PermissionError:
        raise ResultFileError(f"{file}: not readable (permission denied)") from None
    return records


#: Columns of a loaded frame: the row's fields, where it came from (``file:line``) and its ``stage``
#: (``extra["stage"]``, or ""), which is part of a measurement's identity.
LOADED_COLUMNS = RESULT_COLUMNS + ["source", "stage"]


def load_results(paths: Iterable[Path] | Path) -> pd.DataFrame:
    """Read result files (or every ``*.jsonl`` in a directory) into one DataFrame with LOADED_COLUMNS.

    Raises :class:`ResultFileError` naming the file and line of the first malformed row.
    """
    if isinstance(paths, (str, Path)):
        root = Path(paths)
        files = sorted(p for p in root.glob("*.jsonl") if p.is_file()) if root.is_dir() else [root]
    else:
        files = [Path(p) for p in paths]
    records: list[dict[str, Any]] = []
    for file in files:
        records += _read_rows(file)
    for record in records:
        stage = record["extra"].get("stage")
        record["stage"] = "" if stage is None else str(stage)
    if not records:
        return pd.DataFrame(columns=LOADED_COLUMNS)
    frame = pd.DataFrame.from_records(records, columns=LOADED_COLUMNS)
    frame["value"] = frame["value"].astype(float)
    frame["timestamp"] = frame["timestamp"].astype(float)
    return frame


def rows_to_jsonl(frame: pd.DataFrame) -> str:
    """The inverse of :func:`load_results` for a frame of loaded rows (only RESULT_COLUMNS are written)."""
    lines = []
    for record in frame[RESULT_COLUMNS].to_dict("records"):
        clean = {key: (None if key != "value" and _is_missing(value) else value) for key, value in record.items()}
        lines.append(json.dumps(clean, default=str))
    return "\n".join(lines) + ("\n" if lines else "")


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, (dict, list, str)) else False
    except (TypeError, ValueError):
        return False
