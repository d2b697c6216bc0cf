"""The demo's user-facing error: one line, no traceback, non-zero exit."""

from __future__ import annotations


class DemoInputError(ValueError):
    """Bad demo input (flag, prompt file, model directory, output path); the message names it."""


EXIT_BAD_INPUT = 2
