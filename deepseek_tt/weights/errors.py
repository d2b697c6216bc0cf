"""Errors raised for a bad model directory; every message names the file or key at fault."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A model directory, config or tensor is not what a DeepSeek-V3 checkpoint should be."""


class MissingCheckpointFileError(CheckpointError, FileNotFoundError):
    """A directory or file the checkpoint needs does not exist."""


__all__ = ["CheckpointError", "MissingCheckpointFileError"]
