"""The demo's options (docs/DEMO_CONTRACT.md sections 1 and 5): one dataclass for the CLI, ``run_demo``,
validation and the output's ``config`` block.

``DemoOptions`` holds what the user asked for, as given (``None`` means "the default": ``$DEEPSEEK_V3_HF_MODEL``,
``$MESH_DEVICE``, ...); :func:`validate_options` refuses incompatible or out-of-range options with a
:class:`DemoInputError` naming the flag. The CLI's defaults are the dataclass's defaults.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from deepseek_tt.demo.errors import DemoInputError
from deepseek_tt.runtime.model_config import DEFAULT_MAX_SEQ_LEN

GENERATOR_CHOICES = ("bp", "pp")
SINGLE_LAYER_CHOICES = ("mlp", "moe")
RANDOM_WEIGHTS_PRESETS = ("full", "galaxy-tiny", "tiny")
DTYPE_POLICIES = ("default", "high_precision")
BACKENDS = ("auto", "ttnn", "emulator")


@dataclass(frozen=True)
class DemoOptions:
    """Every option of one demo run (the keyword arguments of ``run_demo``; the CLI flags of the same names)."""

    prompts: Sequence[str] | None = None
    model_path: str | Path | None = None
    cache_dir: str | Path | None = None
    max_new_tokens: int = 32
    early_print_first_user: bool = False
    generator: str = "bp"
    enable_trace: bool = False
    random_weights: bool = False
    single_layer: str | None = None
    token_accuracy: bool = False
    reference_file: str | Path | None = None
    tf_prompt_len: int | None = None
    output_path: str | Path | None = None
    backend: str | None = None
    mesh_shape: tuple[int, int] | str | None = None
    runtime: str | None = None
    dtype_policy: str = "default"
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    random_weights_preset: str = "full"
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    recalculate_weights: bool = False
    progress: bool = True
    #: The files the prompts came from (``output_path`` may not be one of them).
    prompts_files: Sequence[str | Path] = field(default=())

    @classmethod
    def from_args(cls, args: argparse.Namespace, prompts: Sequence[str] | None, output_path: Path | None) -> "DemoOptions":
        """The options of a parsed command line (flags named as the fields; ``--no-progress`` inverted)."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        given.update(
            prompts=prompts,
            output_path=output_path,
            progress=not args.no_progress,
            prompts_files=[args.prompts_file] if args.prompts_file is not None else [],
        )
        return cls(**given)


#: The defaults, for the CLI's flags.
DEFAULTS = DemoOptions()


def _choice(flag: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise DemoInputError(f"{flag} {value!r}: expected one of {', '.join(choices)}")


def validate_options(options: DemoOptions) -> None:
    """Every incompatible or out-of-range option, as a :class:`DemoInputError` naming the flag."""
    o = options
    _choice("--generator", o.generator, GENERATOR_CHOICES)
    if o.max_new_tokens < 1:
        raise DemoInputError(f"--max-new-tokens {o.max_new_tokens}: must be >= 1")
    if o.enable_trace and o.generator == "pp":
        raise DemoInputError("--enable-trace is not supported with --generator pp (tracing is for the bp decode path)")
    if o.token_accuracy and o.random_weights:
        raise DemoInputError("--token-accuracy cannot be combined with --random-weights (it needs the full model and a tokenizer)")
    if o.token_accuracy and o.reference_file is None:
        raise DemoInputError("--token-accuracy needs --reference-file PATH (a .pt/.refpt with reference_tokens)")
    if not o.token_accuracy and o.reference_file is not None:
        raise DemoInputError("--reference-file is only used with --token-accuracy")
    if o.tf_prompt_len is not None and not o.token_accuracy:
        raise DemoInputError("--tf-prompt-len is only used with --token-accuracy")
    if o.tf_prompt_len is not None and o.tf_prompt_len < 1:
        raise DemoInputError(f"--tf-prompt-len {o.tf_prompt_len}: must be >= 1")
    if o.single_layer is not None:
        if not o.random_weights:
            raise DemoInputError("--single-layer needs --random-weights")
        _choice("--single-layer", o.single_layer, SINGLE_LAYER_CHOICES)
        if o.single_layer == "moe":
            raise DemoInputError("--single-layer moe is not supported: random-weights runs are a single dense layer (--single-layer mlp)")
    _choice("--random-weights-preset", o.random_weights_preset, RANDOM_WEIGHTS_PRESETS)
    if not o.random_weights and not o.token_accuracy and not o.prompts:
        raise DemoInputError("no prompts: give prompts as arguments or --prompts-file FILE (prompts are optional only with --random-weights)")
    if o.prompts is not None and any(not isinstance(p, str) or not p.strip() for p in o.prompts):
        raise DemoInputError("prompts must be non-empty strings")
    for flag, value in (("--temperature", o.temperature), ("--top-p", o.top_p)):
        if value is not None and not math.isfinite(float(value)):
            raise DemoInputError(f"{flag} {value}: must be a finite number")


__all__ = [
    "BACKENDS",
    "DEFAULTS",
    "DTYPE_POLICIES",
    "GENERATOR_CHOICES",
    "RANDOM_WEIGHTS_PRESETS",
    "SINGLE_LAYER_CHOICES",
    "DemoOptions",
    "validate_options",
]
