"""Turn a finished ``reference_models.train`` run into the embedded model directory.

``python -m reference_models.build_embedded --train-dir /tmp/dsv3-train`` writes, into
``reference_models/checkpoints/deepseek-v3-tiny-en`` (or ``--out``):

- the official fp8 model directory (``reference_models.checkpoint.write_checkpoint_from_model``) with the
  run's tokenizer;
- ``reference_prompt.txt`` (a held-out validation document) and ``reference.refpt`` made from it by
  ``reference_models.refpt`` (greedy, fp32, from the fp8 weights as loaded);
- ``metrics.json`` (the run's metrics plus those of the written fp8 weights) and ``README.md`` (the
  model card).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
from transformers import DeepseekV3ForCausalLM

from reference_models.checkpoint import write_checkpoint_from_model
from reference_models.corpus import load_documents, split_documents
from reference_models.embedded import EMBEDDED_MODEL_PATH, EMBEDDED_PROMPT_NAME, EMBEDDED_REFPT_NAME
from reference_models.reference import load_reference_model
from reference_models.refpt import REFERENCE_TOKENS, encode_prompt, make_reference, prompt_length, teacher_forced_accuracy
from reference_models.train import evaluate, prepare_data

SAMPLE_PROMPTS = ("The", "A list is", "If the value of", "This module provides")
MAX_SHARD_BYTES = 8 * 1024**2


def pick_prompt_document(tokenizer: Any, min_tokens: int) -> str:
    """The first validation document (corpus order) with at least ``min_tokens`` tokens, bos included."""
    _, val_docs = split_documents(load_documents())
    for doc in val_docs:
        if len(encode_prompt(tokenizer, doc.text)) >= min_tokens:
            return doc.text
    raise ValueError(f"no validation document has {min_tokens} tokens")


@torch.no_grad()
def greedy_samples(model: DeepseekV3ForCausalLM, tokenizer: Any, new_tokens: int = 40) -> dict[str, str]:
    """Greedy continuations of ``SAMPLE_PROMPTS`` (for the model card)."""
    samples = {}
    for prompt in SAMPLE_PROMPTS:
        ids = torch.tensor([encode_prompt(tokenizer, prompt)])
        for _ in range(new_tokens):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        samples[prompt] = tokenizer.decode(ids[0].tolist(), skip_special_tokens=True)
    return samples


def _weights_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))


def model_card(m: dict[str, Any]) -> str:
    """The README.md of the embedded model from its metrics."""
    cfg = m["config"]
    samples = "\n".join(f"- `{p}` -> {json.dumps(t)}" for p, t in m["greedy_samples"].items())
    return f"""# deepseek-v3-tiny-en

A small DeepSeek-V3-architecture causal LM (transformers' `DeepseekV3ForCausalLM`), trained from
scratch on CPU so that the project has a default model whose predictions mean something. It is not a
useful language model; it writes Python-documentation-flavoured English.

## Architecture ({m['num_parameters'] / 1e6:.1f} M parameters, {m['weights_bytes'] / 1e6:.1f} MB of safetensors)
Every DeepSeek-V3 feature: MLA with q_lora_rank {cfg['q_lora_rank']}, kv_lora_rank {cfg['kv_lora_rank']},
qk_nope/qk_rope/v head dims {cfg['qk_nope_head_dim']}/{cfg['qk_rope_head_dim']}/{cfg['v_head_dim']},
{cfg['num_attention_heads']} heads, YaRN rope scaling (official settings: factor 40, original 4096);
{cfg['num_hidden_layers']} layers, the first {cfg['first_k_dense_replace']} dense (intermediate {cfg['intermediate_size']}),
the rest MoE with {cfg['n_routed_experts']} routed experts (moe_intermediate {cfg['moe_intermediate_size']}) + {cfg['n_shared_experts']} shared,
{cfg['num_experts_per_tok']} active, grouped routing n_group {cfg['n_group']} / topk_group {cfg['topk_group']}, sigmoid scores
with `e_score_correction_bias` (noaux_tc), normalised top-k, routed_scaling_factor {cfg['routed_scaling_factor']};
hidden {cfg['hidden_size']}, vocab {cfg['vocab_size']}. Shapes shard across a 4x8 mesh (hidden, vocab and
intermediates divisible by 8 x 32, heads by 8, experts by 32). Stored in the official format: fp8 e4m3
projections with 128x128 `weight_scale_inv` blocks, bf16 embeddings / norms / router / LM head, fp32 bias.

## Corpus
{m['corpus']}, licensed under the {m['corpus_license']}: `pydoc_data.topics` and the docstrings
(>= 200 characters, doctest lines removed) of the pure-Python standard library of Python
{m['python_version']}; {m['train_docs']} training and {m['val_docs']} validation documents split by a hash of the
document name ({m['train_stream_tokens']} / {m['val_stream_tokens']} tokens); corpus sha256 `{m['corpus_sha256'][:16]}...`.

## Tokenizer
Byte-level BPE with {cfg['vocab_size']} tokens trained on the training split with `tokenizers`
(`reference_models.tokenizers.train_small_bpe`); bos `<｜begin▁of▁sentence｜>` = 0, eos = 1.

## Recipe
`python -m reference_models.train --out DIR --steps {m['steps']} --seed {m['seed']} --bias-update-speed {m['bias_update_speed']} --warmup {m['warmup']}`
then `python -m reference_models.build_embedded --train-dir DIR`. AdamW (betas 0.9/0.95, weight decay
{m['weight_decay']} on matrices), peak lr {m['lr']} with {m['warmup']} warmup steps and cosine decay to 10%, gradient clip 1.0,
batch {m['batch_size']} x {m['seq_len']} tokens ({m['train_tokens_seen']} tokens seen), fp32, {m['threads']} CPU threads,
{m['train_time_s'] / 60:.1f} minutes wall-clock (on a 2-core machine shared with other jobs). Auxiliary-loss-free balancing: after each step every router's bias moves by
{m['bias_update_speed']} x sign(mean load - expert load), no gradient through it.

## Results
| | loss (nats/token) | perplexity |
|---|---|---|
| train (mean of the last {m['log_every']} steps) | {m['train_loss']:.3f} | {m['train_perplexity']:.1f} |
| validation, fp32 weights after training | {m['val_loss']:.3f} | {m['val_perplexity']:.1f} |
| validation, the fp8 weights of this directory | {m['fp8_val_loss']:.3f} | {m['fp8_val_perplexity']:.1f} |
| validation, unigram baseline of the same tokenizer | {m['unigram_val_loss']:.3f} | {m['unigram_val_perplexity']:.1f} |

Greedy samples (fp32, from these weights):
{samples}

## Teacher-forcing reference
`{EMBEDDED_REFPT_NAME}` (v0): `{EMBEDDED_PROMPT_NAME}` (a held-out validation document) cut to
{m['refpt_prompt_tokens']} prompt tokens and extended greedily to {m['refpt_total_length']} tokens by
`python -m reference_models.refpt` in fp32. The same weights loaded in bf16 agree with it under teacher
forcing at top-1 {m['bf16_vs_fp32_top1']:.3f} / top-5 {m['bf16_vs_fp32_top5']:.3f}.
"""


def build(train_dir: Path, out: Path, total_length: int, overwrite: bool) -> dict[str, Any]:
    """Write the embedded model directory from ``train_dir``; returns its metrics."""
    import platform

    metrics = json.loads((train_dir / "metrics.json").read_text())
    trained = DeepseekV3ForCausalLM.from_pretrained(str(train_dir / "hf"), dtype=torch.float32)
    write_checkpoint_from_model(trained, out, tokenizer_dir=train_dir / "tokenizer",
                                max_shard_bytes=MAX_SHARD_BYTES, overwrite=overwrite)
    model = load_reference_model(out, torch.float32)
    data = prepare_data(train_dir, model.config.vocab_size)
    fp8_val = evaluate(model, data.val, metrics["seq_len"])
    text = pick_prompt_document(data.tokenizer, prompt_length(total_length))
    (out / EMBEDDED_PROMPT_NAME).write_text(text + "\n", encoding="utf-8")
    ref = make_reference(model, encode_prompt(data.tokenizer, text), total_length)
    torch.save(ref, out / EMBEDDED_REFPT_NAME)
    bf16 = load_reference_model(out, torch.bfloat16)
    top1, top5 = teacher_forced_accuracy(bf16, ref)
    metrics.update(
        config=model.config.to_dict(), python_version=platform.python_version(), log_every=20,
        weights_bytes=_weights_bytes(out), fp8_val_loss=fp8_val, fp8_val_perplexity=math.exp(fp8_val),
        refpt_total_length=total_length, refpt_prompt_tokens=prompt_length(total_length),
        refpt_continuation=data.tokenizer.decode(ref[REFERENCE_TOKENS][0, prompt_length(total_length):].tolist()),
        bf16_vs_fp32_top1=top1, bf16_vs_fp32_top5=top5, greedy_samples=greedy_samples(model, data.tokenizer),
    )
    (out / "README.md").write_text(model_card(metrics), encoding="utf-8")
    slim = {k: v for k, v in metrics.items() if k not in ("config",)}
    (out / "metrics.json").write_text(json.dumps(slim, indent=2, ensure_ascii=False) + "\n")
    return metrics


class BuildInputError(ValueError):
    """Bad input of the build script; one line naming the flag or file."""


def _check_inputs(train_dir: Path, out: Path, total_length: int, overwrite: bool) -> None:
    """Everything checkable before the (minutes-long) build; nothing is written."""
    for name in ("metrics.json", "hf/config.json", "tokenizer/tokenizer.json"):
        if not (train_dir / name).is_file():
            raise BuildInputError(f"--train-dir {train_dir}: missing {name} (has the training run finished?)")
    try:
        metrics = json.loads((train_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BuildInputError(f"--train-dir {train_dir}: metrics.json is not readable JSON ({exc})") from None
    if not isinstance(metrics, dict) or type(metrics.get("seq_len")) is not int or metrics["seq_len"] < 1:
        raise BuildInputError(f"--train-dir {train_dir}: metrics.json has no positive integer 'seq_len' (not this script's training run)")
    if total_length < 3:
        raise BuildInputError(f"--total-length must be >= 3, got {total_length}")
    out_abs, train_abs = out.expanduser().resolve(), train_dir.expanduser().resolve()
    if out_abs == train_abs or out_abs.is_relative_to(train_abs) or train_abs.is_relative_to(out_abs):
        raise BuildInputError(f"--out {out}: overlaps --train-dir {train_dir}; writing it would replace the training run")
    existing = next((p for p in [out_abs, *out_abs.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise BuildInputError(f"--out {out}: {existing} is a file, not a directory")
    if out_abs.is_dir() and any(out_abs.iterdir()) and not overwrite:
        raise BuildInputError(f"--out {out}: exists and is not empty; pass --overwrite to replace it")


def main(argv: list[str] | None = None) -> int:
    """Build the embedded model directory; bad input prints one ``error:`` line and returns 2."""
    import sys

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-dir", required=True, help="the --out directory of a finished training run")
    p.add_argument("--out", default=str(EMBEDDED_MODEL_PATH))
    p.add_argument("--total-length", type=int, default=320, help="tokens in reference.refpt (prompt T//2+1)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    train_dir = Path(args.train_dir)
    try:
        _check_inputs(train_dir, Path(args.out), args.total_length, args.overwrite)
    except BuildInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = build(train_dir, Path(args.out), args.total_length, args.overwrite)
    keys = ("val_loss", "fp8_val_loss", "unigram_val_loss", "weights_bytes", "bf16_vs_fp32_top1", "bf16_vs_fp32_top5")
    print(json.dumps({k: m[k] for k in keys}, indent=2))
    print(json.dumps(m["greedy_samples"], indent=2, ensure_ascii=False))
    print("refpt continuation:", m["refpt_continuation"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
