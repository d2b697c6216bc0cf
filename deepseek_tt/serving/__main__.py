"""``python -m deepseek_tt.serving``: the OpenAI-compatible server on the TT-NN model (emulated here).

    python -m deepseek_tt.serving --port 8000                     # embedded model, MESH_DEVICE or 1x1
    MESH_DEVICE="(4,8)" python -m deepseek_tt.serving --model-path $DEEPSEEK_V3_HF_MODEL

The served model id is ``$HF_MODEL`` (the original demo's variable, docs/DEMO_CONTRACT.md section 7) or ``deepseek-ai/DeepSeek-R1-0528``,
plus the model directory's name; requests naming either are accepted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from deepseek_tt.config.environment import CACHE_DIR_ENV, MODEL_PATH_ENV

DEFAULT_SERVED_NAME = "deepseek-ai/DeepSeek-R1-0528"
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # = deepseek_tt.serving.server.DEFAULT_MAX_REQUEST_BYTES (kept import-light)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deepseek_tt.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=None, help=f"HF model dir (default ${MODEL_PATH_ENV}, else the embedded model)")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"converted-weight cache (default ${CACHE_DIR_ENV})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--mesh-shape", default=None, help="mesh name or RxC (default $MESH_DEVICE, else 1x1)")
    parser.add_argument("--backend", default=None, choices=("auto", "ttnn", "emulator"))
    parser.add_argument("--runtime", default="tt", choices=("tt", "reference"), help="tt: the TT-NN model (default); reference: transformers")
    parser.add_argument("--max-seq-len", type=int, default=1024, help="context per request (prompt + max_tokens)")
    parser.add_argument("--max-request-bytes", type=_positive_int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help=f"largest request body accepted; larger is a 413 (default {DEFAULT_MAX_REQUEST_BYTES})")
    parser.add_argument("--served-model-name", action="append", default=None, help="model id(s) clients may send")
    parser.add_argument("--recalculate-weights", action="store_true", help="convert the weights again even when the cache holds them")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import uvicorn

    from deepseek_tt.serving.launch import load_serving_stack

    try:
        stack = load_serving_stack(
            model_path=args.model_path, cache_dir=args.cache_dir, mesh_shape=args.mesh_shape, backend=args.backend,
            runtime=args.runtime, max_seq_len=args.max_seq_len, recalculate_weights=args.recalculate_weights,
            served_names=args.served_model_name or [os.environ.get("HF_MODEL", DEFAULT_SERVED_NAME)],
            max_request_bytes=args.max_request_bytes,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        uvicorn.run(stack.app, host=args.host, port=args.port, log_level="info")
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
