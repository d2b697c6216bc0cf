"""Shared pieces of the demo suite: a tiny checkpoint, prompt files, an in-process CLI runner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from deepseek_tt.demo.cli import main

DEMO_PRESET = "tiny"


@pytest.fixture(scope="session")
def tiny_model_dir(preset_checkpoint) -> Path:
    """A complete tiny-preset model directory (config, fp8 safetensors, BPE tokenizer)."""
    return preset_checkpoint(DEMO_PRESET)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """``run_cli(*argv) -> CliResult``: the demo's ``main`` in-process (runtime: the torch reference unless given)."""

    def run(*argv: str, runtime: str | None = "reference") -> CliResult:
        args = [str(a) for a in argv] + ["--no-progress"]
        if runtime is not None and "--runtime" not in args:
            args += ["--runtime", runtime]
        capsys.readouterr()
        code = main(args)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def write_prompts(path: Path, prompts: list[str], layout: str = "list") -> Path:
    entries = [{"prompt": p} for p in prompts]
    path.write_text(json.dumps(entries if layout == "list" else {"prompts": entries}))
    return path


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]
