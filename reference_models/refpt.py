"""Generate and inspect teacher-forcing reference files (``.refpt``) with the Hugging Face reference.

``python -m reference_models.refpt --model-path DIR --prompt-file text.txt --total-length 320
--output-file out.refpt`` tokenizes the text (bos first; ``--chat-template`` formats it as one user
message with the tokenizer's ``apply_chat_template`` instead), keeps its first ``T//2 + 1`` tokens as the
prompt (``--prompt-len`` with ``--format v1``), extends it greedily to ``T`` tokens with the reference
model, and saves (``torch.save``):

- ``--format v0`` (default, the tt_transformers helper's layout): ``reference_tokens`` LongTensor
  ``[1, T]`` (prompt + greedy continuation) and ``top5_tokens`` LongTensor ``[T, 5]``; row ``i`` is the
  reference top-5 for position ``i``, i.e. of the logits after position ``i - 1`` (row 0 has no
  prediction and repeats token 0).
- ``--format v1``: the v0 keys plus ``prompt_tokens`` ``[1, P]``, ``generated_tokens`` ``[1, T - P]``,
  ``tf_prompt_len`` P and ``metadata`` (model, vocabulary, dtype, lengths, prompt source).

``python -m reference_models.refpt inspect FILE [--model-path DIR] [--tf-prompt-len N]`` prints a file's
format, shape, split and (with the tokenizer of ``--model-path``) its decoded prompt and continuation.

Everything is greedy, fp32 by default and offline: the model and tokenizer come from ``--model-path``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

REFERENCE_TOKENS = "reference_tokens"
TOP5_TOKENS = "top5_tokens"
FORMATS = ("v0", "v1")
GENERATOR_NAME = "reference_models.refpt"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def prompt_length(total_length: int) -> int:
    """The v0 split: the first ``T//2 + 1`` tokens are the prompt."""
    return total_length // 2 + 1


def load_model_and_tokenizer(model_path: str | Path, dtype: torch.dtype = torch.float32):
    """The reference ``DeepseekV3ForCausalLM`` (eval mode) and its tokenizer, both from ``model_path``."""
    from transformers import AutoTokenizer

    from reference_models.reference import load_reference_model

    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"--model-path {path}: no config.json (not a Hugging Face model directory)")
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"--model-path {path}: no tokenizer.json")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return load_reference_model(path, dtype), tokenizer


@torch.no_grad()
def greedy_extend(model: torch.nn.Module, tokens: torch.Tensor, total_length: int) -> torch.Tensor:
    """Extend ``tokens`` [1, P] greedily to [1, total_length] (full forward each step: no cache drift)."""
    out = tokens
    while out.shape[1] < total_length:
        logits = model(input_ids=out).logits[:, -1, :]
        out = torch.cat([out, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return out


@torch.no_grad()
def top5_rows(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``[T, 5]``: row ``i`` = top-5 ids of the logits after position ``i - 1``; row 0 repeats token 0."""
    logits = model(input_ids=tokens).logits[0].float()
    top5 = torch.topk(logits, k=5, dim=-1).indices
    first = tokens[0, :1].repeat(1, 5)
    return torch.cat([first, top5[:-1]], dim=0).long()


def make_reference(model: torch.nn.Module, prompt_ids: list[int], total_length: int,
                   n_prompt: int | None = None) -> dict[str, torch.Tensor]:
    """A v0 reference dict from ``prompt_ids`` (at least ``n_prompt`` ids, default ``T//2 + 1``; only that
    many are used)."""
    if n_prompt is None:
        n_prompt = prompt_length(total_length)
        if len(prompt_ids) < n_prompt:
            raise ValueError(f"prompt has {len(prompt_ids)} tokens; --total-length {total_length} needs at least "
                             f"{n_prompt} (T//2 + 1)")
    if not 1 <= n_prompt < total_length:
        raise ValueError(f"--prompt-len {n_prompt} must be in [1, {total_length - 1}] for --total-length {total_length}")
    if len(prompt_ids) < n_prompt:
        raise ValueError(f"prompt has {len(prompt_ids)} tokens; --prompt-len asks for {n_prompt}")
    prompt = torch.tensor([prompt_ids[:n_prompt]], dtype=torch.long)
    tokens = greedy_extend(model, prompt, total_length)
    return {REFERENCE_TOKENS: tokens, TOP5_TOKENS: top5_rows(model, tokens)}


@torch.no_grad()
def teacher_forced_accuracy(model: torch.nn.Module, ref: dict[str, torch.Tensor],
                            prompt_len: int | None = None) -> tuple[float, float]:
    """(top-1, top-5) of ``model`` against ``ref`` under teacher forcing over the continuation.

    One forward over ``reference_tokens``; for each position ``i >= prompt_len`` the model's argmax after
    position ``i - 1`` is compared with the reference top-1 (``top5_tokens[i, 0]``) and top-5 row ``i``.
    """
    tokens, top5 = ref[REFERENCE_TOKENS], ref[TOP5_TOKENS]
    total = tokens.shape[1]
    start = prompt_length(total) if prompt_len is None else int(prompt_len)
    if not 1 <= start < total:
        raise ValueError(f"prompt length {start} outside 1..{total - 1}")
    pred = model(input_ids=tokens).logits[0, start - 1 : total - 1].float().argmax(dim=-1)
    rows = top5[start:total]
    top1 = (pred == rows[:, 0]).float().mean().item()
    top5_hit = (pred[:, None] == rows).any(dim=-1).float().mean().item()
    return top1, top5_hit


def encode_prompt(tokenizer, text: str) -> list[int]:
    """``text`` as ids with the tokenizer's bos first (added once)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return ([bos] if bos is not None else []) + list(ids)


def encode_chat_prompt(tokenizer, text: str, source: str = "--chat-template") -> list[int]:
    """``text`` as one user message through the tokenizer's chat template (generation prompt added)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{source}: the tokenizer has no chat_template (tokenizer_config.json); use plain text")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def to_v1(ref: dict[str, torch.Tensor], n_prompt: int, metadata: dict) -> dict:
    """The v1 dict (docs/DESIGN.md section 6) of a v0 reference split at ``n_prompt``."""
    tokens = ref[REFERENCE_TOKENS]
    return {
        REFERENCE_TOKENS: tokens,
        TOP5_TOKENS: ref[TOP5_TOKENS],
        "prompt_tokens": tokens[:, :n_prompt].clone(),
        "generated_tokens": tokens[:, n_prompt:].clone(),
        "tf_prompt_len": int(n_prompt),
        "metadata": dict(metadata),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of the generator."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Inspect a file: python -m reference_models.refpt inspect FILE [--model-path DIR]")
    p.add_argument("--model-path", required=True, help="Hugging Face model directory with tokenizer files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text")
    src.add_argument("--prompt-file", help="file holding the prompt text (UTF-8)")
    p.add_argument("--chat-template", action="store_true",
                   help="format the prompt as one user message with the tokenizer's chat template")
    p.add_argument("--total-length", type=int, required=True, help="T: prompt (T//2+1 tokens) + continuation")
    p.add_argument("--prompt-len", type=int, default=None,
                   help="prompt tokens P (default T//2+1); only with --format v1, which records it as tf_prompt_len")
    p.add_argument("--format", default="v0", choices=FORMATS, help="v0: reference_tokens + top5_tokens; v1: + prompt/"
                   "generated tokens, tf_prompt_len, metadata")
    p.add_argument("--output-file", required=True)
    p.add_argument("--dtype", default="float32", choices=sorted(_DTYPES))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.total_length < 3:
        p.error(f"--total-length must be >= 3, got {args.total_length}")
    if args.prompt_len is not None and args.format != "v1":
        p.error("--prompt-len needs --format v1 (a v0 file always splits at T//2 + 1)")
    if args.prompt_len is not None and not 1 <= args.prompt_len < args.total_length:
        p.error(f"--prompt-len must be in [1, {args.total_length - 1}] for --total-length {args.total_length}, got {args.prompt_len}")
    return args


class RefptCommandError(ValueError):
    """Bad input of the generator or of ``inspect``: one line naming the flag or file; exit status 2."""


EXIT_BAD_INPUT = 2
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors.index.json")


def _read_prompt(args: argparse.Namespace) -> tuple[str, str]:
    if args.prompt_file is not None:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise RefptCommandError(f"--prompt-file {path}: no such file" if not path.exists() else f"--prompt-file {path}: not a file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RefptCommandError(f"--prompt-file {path}: cannot read as UTF-8 text ({exc})") from None
        if not text.strip():
            raise RefptCommandError(f"--prompt-file {path}: the file is empty")
        return text, str(path)
    if not args.prompt.strip():
        raise RefptCommandError("--prompt: the prompt is empty")
    return args.prompt, "--prompt"


def _check_model_dir(model_path: str | Path) -> Path:
    """The model directory, checked up front (config, tokenizer, weights against the config; headers only)."""
    from deepseek_tt.weights.checkpoint_check import validate_checkpoint
    from deepseek_tt.weights.errors import CheckpointError
    from deepseek_tt.weights.hf_config import load_hf_config

    path = Path(model_path)
    try:
        config = load_hf_config(path)
        if not (path / "tokenizer.json").is_file():
            raise CheckpointError(f"{path}: no tokenizer.json")
        validate_checkpoint(path, config)
    except CheckpointError as exc:
        raise RefptCommandError(f"--model-path {path}: {exc}") from None
    return path


def _check_output(out: Path, args: argparse.Namespace) -> None:
    """The output file must be a file path we can write, and no input of the run."""
    if out.is_dir():
        raise RefptCommandError(f"--output-file {out}: is a directory")
    existing = next((p for p in out.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RefptCommandError(f"--output-file {out}: {existing} is a file, not a directory")
    inputs = [Path(args.prompt_file)] if args.prompt_file else []
    model = Path(args.model_path)
    inputs += [model / name for name in _MODEL_FILES] + list(model.glob("*.safetensors"))
    for source in inputs:
        if source.exists() and out.exists() and out.samefile(source) or Path(os.path.abspath(out)) == Path(os.path.abspath(source)):
            raise RefptCommandError(f"--output-file {out}: is an input of this run ({source}); it would be replaced")


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, JSON errors ... for a bad tokenizer
        raise RefptCommandError(f"--model-path {path}: the tokenizer does not load ({type(exc).__name__}: {str(exc)[:200]})") from None


def _save_atomic(data: dict, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise RefptCommandError(f"--output-file {out}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        torch.save(data, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def generate(args: argparse.Namespace) -> int:
    """Write the reference file ``args`` describe (inputs checked before the model is loaded)."""
    from reference_models.reference import load_reference_model

    torch.set_num_threads(args.threads)
    text, source = _read_prompt(args)
    model_path = _check_model_dir(args.model_path)
    out = Path(args.output_file)
    _check_output(out, args)
    tokenizer = _load_tokenizer(model_path)
    try:
        ids = encode_chat_prompt(tokenizer, text, source) if args.chat_template else encode_prompt(tokenizer, text)
    except ValueError as exc:
        raise RefptCommandError(str(exc)) from None
    n_prompt = prompt_length(args.total_length) if args.prompt_len is None else args.prompt_len
    if len(ids) < n_prompt:
        flag = "--prompt-len" if args.prompt_len is not None else f"--total-length {args.total_length}"
        raise RefptCommandError(f"{source}: the prompt has {len(ids)} tokens; {flag} needs at least {n_prompt} prompt tokens")
    model = load_reference_model(model_path, _DTYPES[args.dtype])
    ref = make_reference(model, ids, args.total_length, args.prompt_len)
    if args.format == "v1":
        ref = to_v1(ref, n_prompt, {
            "generator": GENERATOR_NAME,
            "model": Path(args.model_path).resolve().name,
            "vocab_size": int(model.config.vocab_size),
            "dtype": args.dtype,
            "total_length": int(args.total_length),
            "prompt_source": "chat_template" if args.chat_template else "text",
            "decoding": "greedy",
        })
    _save_atomic(ref, out)
    print(f"wrote {out} ({args.format}): {args.total_length} tokens ({n_prompt} prompt + {args.total_length - n_prompt} greedy)")
    print("continuation:", tokenizer.decode(ref[REFERENCE_TOKENS][0, n_prompt:].tolist()))
    return 0


def inspect_reference(path: str | Path, model_path: str | Path | None = None, tf_prompt_len: int | None = None) -> str:
    """A human-readable summary of a reference file (the ``inspect`` command's output)."""
    from deepseek_tt.accuracy.refpt import load_refpt
    from deepseek_tt.weights.errors import CheckpointError

    tokenizer = None
    vocab_size = None
    if model_path is not None:
        from deepseek_tt.weights.hf_config import load_hf_config

        try:
            vocab_size = int(load_hf_config(model_path).vocab_size)
        except CheckpointError as exc:
            raise RefptCommandError(f"--model-path {model_path}: {exc}") from None
        tokenizer = _load_tokenizer(Path(model_path))
    ref = load_refpt(path, vocab_size=vocab_size)
    n_prompt = ref.prompt_len(tf_prompt_len)
    lines = [
        f"file: {ref.path}",
        f"format: v{ref.version}",
        f"reference_tokens: [1, {ref.length}]",
        f"top5_tokens: {list(ref.top5.shape) if ref.top5 is not None else 'absent (top-1 only)'}",
        f"split: prompt {n_prompt} tokens + continuation {ref.length - n_prompt} tokens"
        + (" (--tf-prompt-len)" if tf_prompt_len is not None else " (tf_prompt_len)" if ref.version == 1 and n_prompt != ref.length // 2 + 1 else " (T//2 + 1)"),
    ]
    if ref.metadata:
        lines.append("metadata: " + ", ".join(f"{k}={v}" for k, v in sorted(ref.metadata.items())))
    prompt, continuation = ref.tokens[:n_prompt].tolist(), ref.tokens[n_prompt:].tolist()
    if tokenizer is not None:
        lines.append(f"prompt: {tokenizer.decode(prompt)!r}")
        lines.append(f"continuation: {tokenizer.decode(continuation)!r}")
    else:
        lines.append(f"prompt ids: {prompt}")
        lines.append(f"continuation ids: {continuation}")
        lines.append("(pass --model-path to decode them)")
    return "\n".join(lines)


def inspect_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m reference_models.refpt inspect", description="Print a .refpt's shape, split, prompt and continuation")
    p.add_argument("file")
    p.add_argument("--model-path", default=None, help="model directory whose tokenizer decodes the tokens (and whose vocabulary they must fit)")
    p.add_argument("--tf-prompt-len", type=int, default=None, help="split at this prompt length instead of the file's")
    args = p.parse_args(argv)
    print(inspect_reference(args.file, args.model_path, args.tf_prompt_len))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The generator, or ``inspect``; bad input prints one ``error:`` line and returns 2."""
    from deepseek_tt.accuracy.refpt import RefptError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "inspect":
            return inspect_main(argv[1:])
        return generate(parse_args(argv))
    except (RefptCommandError, RefptError) as exc:
        prefix = "inspect: " if argv and argv[0] == "inspect" else ""
        print(f"error: {prefix}{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
