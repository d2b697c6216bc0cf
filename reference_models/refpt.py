"""Generate a teacher-forcing reference file (``.refpt``, v0 format) with the Hugging Face reference.

``python -m reference_models.refpt --model-path DIR --prompt-file text.txt --total-length 320
--output-file out.refpt`` tokenizes the text (bos first), keeps its first ``T//2 + 1`` tokens as the
prompt, extends it greedily to ``T`` tokens with the reference model, and saves (``torch.save``):

- ``reference_tokens``: LongTensor ``[1, T]`` (prompt + greedy continuation);
- ``top5_tokens``: LongTensor ``[T, 5]``; row ``i`` is the reference top-5 for position ``i``, i.e. of
  the logits after position ``i - 1`` (row 0 has no prediction and repeats token 0).

Everything is greedy, fp32 by default and offline: the model and tokenizer come from ``--model-path``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

REFERENCE_TOKENS = "reference_tokens"
TOP5_TOKENS = "top5_tokens"
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


def make_reference(model: torch.nn.Module, prompt_ids: list[int], total_length: int) -> dict[str, torch.Tensor]:
    """A v0 reference dict from ``prompt_ids`` (at least ``T//2 + 1`` ids; only that many are used)."""
    n_prompt = prompt_length(total_length)
    if len(prompt_ids) < n_prompt:
        raise ValueError(f"prompt has {len(prompt_ids)} tokens; --total-length {total_length} needs at least "
                         f"{n_prompt} (T//2 + 1)")
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of the generator."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-path", required=True, help="Hugging Face model directory with tokenizer files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text")
    src.add_argument("--prompt-file", help="file holding the prompt text (UTF-8)")
    p.add_argument("--total-length", type=int, required=True, help="T: prompt (T//2+1 tokens) + continuation")
    p.add_argument("--output-file", required=True)
    p.add_argument("--dtype", default="float32", choices=sorted(_DTYPES))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.total_length < 3:
        p.error(f"--total-length must be >= 3, got {args.total_length}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.prompt_file is not None:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise SystemExit(f"--prompt-file {path}: no such file")
        text = path.read_text(encoding="utf-8")
    else:
        text = args.prompt
    model, tokenizer = load_model_and_tokenizer(args.model_path, _DTYPES[args.dtype])
    ref = make_reference(model, encode_prompt(tokenizer, text), args.total_length)
    out = Path(args.output_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ref, out)
    n_prompt = prompt_length(args.total_length)
    print(f"wrote {out}: {args.total_length} tokens ({n_prompt} prompt + {args.total_length - n_prompt} greedy)")
    print("continuation:", tokenizer.decode(ref[REFERENCE_TOKENS][0, n_prompt:].tolist()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
