"""``python -m deepseek_tt.demo`` / ``deepseek-tt-demo``: the original demo's CLI (docs/DEMO_CONTRACT.md), flag for flag.

The original demo's flags keep their names and meanings, and their defaults except where docs/DEMO_CONTRACT.md section 1 says otherwise; ``--backend``, ``--mesh-shape``, ``--runtime``,
``--dtype-policy``, the sampling flags and ``--random-weights-preset`` are this project's additions.
Bad input prints one ``error:`` line to stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from deepseek_tt.demo.errors import EXIT_BAD_INPUT, DemoInputError
from deepseek_tt.demo.model_source import CACHE_DIR_ENV, MODEL_PATH_ENV
from deepseek_tt.demo.output import default_output_path
from deepseek_tt.demo.prompts import load_prompts_file
from deepseek_tt.demo.options import (
    BACKENDS,
    DEFAULTS,
    DTYPE_POLICIES,
    GENERATOR_CHOICES,
    RANDOM_WEIGHTS_PRESETS,
    SINGLE_LAYER_CHOICES,
    DemoOptions,
)
from deepseek_tt.demo.run import run_with_options
from deepseek_tt.demo.runtime import DEFAULT_RUNTIME, RUNTIMES


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepseek-tt-demo",
        description="DeepSeek-V3 demo on TT-NN (real ttnn on Tenstorrent hardware, else the emulator).",
    )
    p.add_argument("prompts", nargs="*", help="Prompt text(s). Required unless --random-weights is set.")
    p.add_argument("--prompts-file", type=Path, default=None, metavar="FILE",
                   help='Load prompts from a JSON file ([{"prompt": ...}] or {"prompts": [...]}). CLI prompts are ignored when present.')
    p.add_argument("--num-prompts", type=_int, default=None, metavar="N", help="Limit the number of prompts loaded from --prompts-file.")
    p.add_argument("--output-path", type=Path, default=None, metavar="FILE",
                   help="Save generations/statistics to JSON when using --prompts-file. Default: <prompts-file-stem>_output.json.")
    p.add_argument("--model-path", type=Path, default=None, metavar="PATH",
                   help=f"Local HF model directory. Default: ${MODEL_PATH_ENV}, else the embedded trained model.")
    p.add_argument("--cache-dir", type=Path, default=None, metavar="PATH",
                   help=f"Directory for converted TTNN weights/cache. Default: ${CACHE_DIR_ENV}, else generated/deepseek_v3.")
    p.add_argument("--max-new-tokens", type=_int, default=DEFAULTS.max_new_tokens, metavar="N",
                   help=f"Number of tokens to generate (default: {DEFAULTS.max_new_tokens}).")
    p.add_argument("--early_print_first_user", action="store_true", help="Stream tokens for the first prompt as they are produced.")
    p.add_argument("--generator", choices=GENERATOR_CHOICES, default=DEFAULTS.generator, help="Batch-parallel (bp, default) or pipeline-parallel (pp) generator.")
    p.add_argument("--enable-trace", action="store_true", help="Trace the batch-parallel decode step (unsupported with --generator pp).")
    p.add_argument("--random-weights", action="store_true",
                   help="Random weights, full DeepSeek-V3 dims, a single dense layer; needs no tokenizer or safetensors; prompts optional.")
    p.add_argument("--single-layer", choices=SINGLE_LAYER_CHOICES, default=None,
                   help="With --random-weights, request a single-layer run (mlp only).")
    p.add_argument("--token-accuracy", action="store_true", help="Teacher-forced decode against --reference-file; reports top-1/top-5 accuracy.")
    p.add_argument("--reference-file", type=Path, default=None, metavar="PATH", help="Path to a .pt/.refpt reference file.")
    p.add_argument("--tf-prompt-len", type=_int, default=None, metavar="N", help="Override the teacher-forcing prompt length of the reference file.")
    extra = p.add_argument_group("deepseek-tt additions")
    extra.add_argument("--backend", choices=BACKENDS, default=DEFAULTS.backend,
                       help="ttnn backend (default $DEEPSEEK_TT_BACKEND or auto: real ttnn when a device is present).")
    extra.add_argument("--mesh-shape", default=None, help="Mesh: N150, N300, T3K, TG, DUAL, QUAD or RxC (default $MESH_DEVICE or 1x1).")
    extra.add_argument("--runtime", choices=RUNTIMES, default=None,
                       help=f"Model runtime: the TT-NN model (tt) or the transformers reference (reference); default {DEFAULT_RUNTIME}.")
    extra.add_argument("--dtype-policy", choices=DTYPE_POLICIES, default=DEFAULTS.dtype_policy, help="Weight/KV dtype policy of the TT-NN model.")
    extra.add_argument("--temperature", type=float, default=DEFAULTS.temperature, help="0 is greedy (default); > 0 samples (finite).")
    extra.add_argument("--top-k", type=int, default=None, help="Sample only among the k most likely tokens.")
    extra.add_argument("--top-p", type=float, default=None, help="Sample only within the top-p probability mass.")
    extra.add_argument("--seed", type=int, default=DEFAULTS.seed, help="Sampling seed (per user: seed and prompt index).")
    extra.add_argument("--random-weights-preset", choices=RANDOM_WEIGHTS_PRESETS, default=DEFAULTS.random_weights_preset,
                       help="Dims of the --random-weights model (default full DeepSeek-V3 dims).")
    extra.add_argument("--recalculate-weights", action="store_true",
                       help="Convert the weights again even when the cache holds a valid entry for them.")
    extra.add_argument("--no-progress", action="store_true", help="Hide the progress bars.")
    return p


def _prompts_and_output(args: argparse.Namespace) -> tuple[list[str] | None, Path | None]:
    if args.num_prompts is not None and args.prompts_file is None:
        raise DemoInputError("--num-prompts limits --prompts-file; give --prompts-file FILE")
    if args.prompts_file is not None:
        if args.prompts:
            logging.getLogger("deepseek_tt.demo").warning("--prompts-file given: ignoring %d positional prompt(s)", len(args.prompts))
        prompts = load_prompts_file(args.prompts_file, args.num_prompts)
        return prompts, args.output_path or default_output_path(args.prompts_file)
    return (args.prompts or None), args.output_path


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the demo; returns the exit status."""
    args = create_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        prompts, output_path = _prompts_and_output(args)
        run_with_options(DemoOptions.from_args(args, prompts, output_path))
    except DemoInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


__all__ = ["create_parser", "main"]
