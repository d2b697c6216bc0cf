"""Loaders of the shipped task data (``custom_dataset`` of the task YAMLs: no download, no cache)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def _load(name: str) -> dict[str, datasets.Dataset]:
    path = HERE / name
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {"test": datasets.Dataset.from_list(rows)}


def load_mc(**_kwargs) -> dict[str, datasets.Dataset]:
    return _load("pydoc_mc.jsonl")


def load_gen(**_kwargs) -> dict[str, datasets.Dataset]:
    return _load("pydoc_gen.jsonl")
