"""Train the small DeepSeek-V3-architecture model the project embeds (docs/DESIGN.md section 4).

``python -m reference_models.train --out /tmp/dsv3-train --steps 600 --seed 0`` trains transformers'
``DeepseekV3ForCausalLM`` from scratch on the offline corpus of ``reference_models.corpus`` with a BPE
tokenizer trained on the same training split. It checkpoints every ``--checkpoint-every`` steps into
``<out>/train_state.pt`` and ``--resume`` continues from there with the same batches it would have
drawn. At the end it writes ``<out>/hf`` (``save_pretrained``, fp32, with the tokenizer) and
``<out>/metrics.json`` (train / validation loss and perplexity, the unigram baseline).

The MoE routers' ``e_score_correction_bias`` is never trained by gradient: after every optimizer step
it moves by ``bias_update_speed * sign(mean_load - load_i)`` (DeepSeek-V3's auxiliary-loss-free load
balancing), where ``load_i`` counts the tokens routed to expert ``i`` during that step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

from reference_models.corpus import CORPUS_LICENSE, CORPUS_NAME, corpus_fingerprint, load_documents, split_documents
from reference_models.presets import preset_fields
from reference_models.tokenizers import train_small_bpe

TRAIN_STATE = "train_state.pt"
EXIT_BAD_INPUT = 2


class TrainInputError(ValueError):
    """Bad input of the training script (a flag, the --out directory, a resume state); one line."""

#: Model sizes this script trains. ``tiny-en`` is the embedded model: every shape shards across a
#: 4x8 mesh (hidden, vocab and intermediates divisible by 8 columns x 32, 8 heads, 32 experts) and every
#: fp8 projection dim is at most 128 or a multiple of 128. ``micro`` is for the unit test.
SIZES: dict[str, dict[str, Any]] = {
    "tiny-en": {
        "vocab_size": 4096,
        "hidden_size": 256,
        "intermediate_size": 1024,
        "moe_intermediate_size": 256,
        "num_hidden_layers": 4,
        "first_k_dense_replace": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "q_lora_rank": 128,
        "kv_lora_rank": 96,
        "qk_nope_head_dim": 32,
        "qk_rope_head_dim": 32,
        "v_head_dim": 32,
        "n_routed_experts": 32,
        "num_experts_per_tok": 4,
        "n_group": 8,
        "topk_group": 4,
    },
    "micro": {
        "vocab_size": 384,
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 2,
        "first_k_dense_replace": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "q_lora_rank": 32,
        "kv_lora_rank": 32,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 16,
        "v_head_dim": 16,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        "n_group": 4,
        "topk_group": 2,
    },
}


def model_config(size: str) -> DeepseekV3Config:
    """The ``DeepseekV3Config`` of training size ``size`` with the official routing / YaRN fields."""
    if size not in SIZES:
        raise ValueError(f"--size: unknown size {size!r}, expected one of {', '.join(SIZES)}")
    fields = {**preset_fields("tiny"), **SIZES[size]}
    config = DeepseekV3Config(**fields)
    config.topk_method = "noaux_tc"
    config.scoring_func = "sigmoid"
    config.architectures = ["DeepseekV3ForCausalLM"]
    return config


# ----------------------------------------------------------------------------------------- data


@dataclass
class TokenData:
    """The corpus as two token streams (``[bos] doc [eos]`` concatenated) and the tokenizer that made them."""

    train: torch.Tensor
    val: torch.Tensor
    tokenizer: Any
    fingerprint: str
    num_train_docs: int
    num_val_docs: int


def _train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path) -> None:
    """Train the small byte-level BPE (bos id 0, eos id 1) into ``out_dir``."""
    train_small_bpe(texts, vocab_size=vocab_size, out_dir=out_dir)


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _stream(tokenizer: Any, texts: list[str], bos: int, eos: int) -> torch.Tensor:
    ids: list[int] = []
    for text in texts:
        ids.append(bos)
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def prepare_data(out: Path, vocab_size: int, max_docs: int | None = None) -> TokenData:
    """Load the corpus, train (or reuse ``<out>/tokenizer``) the BPE and tokenize both splits."""
    docs = load_documents(limit=max_docs)
    train_docs, val_docs = split_documents(docs)
    if not val_docs:
        raise TrainInputError(f"--max-docs {max_docs}: too few documents for a validation split")
    tok_dir = out / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        _train_tokenizer([d.text for d in train_docs], vocab_size, tok_dir)
    tokenizer = _load_tokenizer(tok_dir)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if (bos, eos) != (0, 1):
        raise TrainInputError(f"{tok_dir}: expected bos id 0 and eos id 1, got {bos} and {eos} (delete it to retrain the tokenizer)")
    return TokenData(
        train=_stream(tokenizer, [d.text for d in train_docs], bos, eos),
        val=_stream(tokenizer, [d.text for d in val_docs], bos, eos),
        tokenizer=tokenizer,
        fingerprint=corpus_fingerprint(docs),
        num_train_docs=len(train_docs),
        num_val_docs=len(val_docs),
    )


def sample_batch(stream: torch.Tensor, batch: int, seq_len: int, seed: int, step: int) -> torch.Tensor:
    """``[batch, seq_len + 1]`` random windows of ``stream``; the same (seed, step) gives the same batch."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, stream.numel() - seq_len - 1, (batch,), generator=gen)
    return torch.stack([stream[s : s + seq_len + 1] for s in starts.tolist()])


def unigram_cross_entropy(train: torch.Tensor, val: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats/token) on ``val[1:]`` of the add-one-smoothed unigram model of ``train``."""
    counts = torch.bincount(train, minlength=vocab_size).double() + 1.0
    logp = torch.log(counts / counts.sum())
    return float(-logp[val[1:]].mean())


# ------------------------------------------------------------------------------------ balancing


class LoadBalancer:
    """Auxiliary-loss-free balancing: counts each router's expert loads and nudges its correction bias."""

    def __init__(self, model: torch.nn.Module, speed: float) -> None:
        self.speed = speed
        self.routers = [m for m in model.modules() if isinstance(m, DeepseekV3TopkRouter)]
        self.loads = [torch.zeros(r.num_experts, dtype=torch.float64) for r in self.routers]
        for i, router in enumerate(self.routers):
            router.register_forward_hook(self._hook(i))

    def _hook(self, index: int):
        def record(module: torch.nn.Module, inputs: Any, outputs: Any) -> None:
            if module.training:
                topk_indices = outputs[2]
                self.loads[index] += torch.bincount(topk_indices.reshape(-1), minlength=module.num_experts).double()

        return record

    @torch.no_grad()
    def update(self) -> float:
        """Apply ``bias += speed * sign(mean_load - load)`` to every router; returns the max/mean load ratio."""
        worst = 0.0
        for router, load in zip(self.routers, self.loads):
            if load.sum() > 0:
                mean = load.mean()
                worst = max(worst, float(load.max() / mean))
                router.e_score_correction_bias += (self.speed * torch.sign(mean - load)).to(
                    router.e_score_correction_bias.dtype)
            load.zero_()
        return worst


# ------------------------------------------------------------------------------------- training


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup to ``peak``, then cosine decay to a tenth of it at ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model: torch.nn.Module, stream: torch.Tensor, seq_len: int, max_windows: int = 256) -> float:
    """Mean next-token cross-entropy (nats) over non-overlapping ``seq_len`` windows of ``stream``."""
    was_training = model.training
    model.eval()
    n = min(max_windows, (stream.numel() - 1) // seq_len)
    total, count = 0.0, 0
    for start in range(0, n, 8):
        rows = [stream[w * seq_len : w * seq_len + seq_len + 1] for w in range(start, min(n, start + 8))]
        x = torch.stack(rows)
        logits = model(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1), reduction="sum")
        total += float(loss)
        count += x[:, 1:].numel()
    model.train(was_training)
    return total / count


def _save_state(path: Path, **state: Any) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _prepare_out(out: Path) -> Path:
    """The --out directory, created; :class:`TrainInputError` when it is a file or cannot be written."""
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise TrainInputError(f"--out {out}: {existing} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".probe-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise TrainInputError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return out


def _load_resume_state(state_path: Path) -> dict[str, Any]:
    """The checkpoint ``--resume`` continues from, checked for the keys it needs."""
    if not state_path.is_file():
        raise TrainInputError(f"--resume: no checkpoint at {state_path}")
    try:
        state = torch.load(state_path, weights_only=False)
    except Exception as exc:  # a damaged pickle raises many types
        raise TrainInputError(f"--resume: {state_path} is not a readable checkpoint ({type(exc).__name__})") from None
    needed = ("model", "optimizer", "step", "history", "elapsed_s", "args")
    if not isinstance(state, dict) or any(k not in state for k in needed) or not isinstance(state["args"], dict) \
            or not {"size", "seed"} <= set(state["args"]) or type(state["step"]) is not int:
        raise TrainInputError(f"--resume: {state_path} is not a checkpoint of this script (expected keys {', '.join(needed)})")
    return state


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) training as configured by the parsed command line; returns the final metrics."""
    torch.set_num_threads(args.threads)
    out = _prepare_out(Path(args.out))
    config = model_config(args.size)
    config._attn_implementation = "sdpa"
    data = prepare_data(out, config.vocab_size, args.max_docs)
    if len(data.tokenizer) > config.vocab_size:
        raise TrainInputError(f"{out / 'tokenizer'}: {len(data.tokenizer)} tokens, more than vocab_size {config.vocab_size} of --size {args.size}")
    shortest = min(data.train.numel(), data.val.numel()) - 1
    if args.seq_len > shortest or args.seq_len > config.max_position_embeddings:
        raise TrainInputError(
            f"--seq-len {args.seq_len}: longer than the data (train {data.train.numel()}, validation {data.val.numel()} tokens) "
            f"or the model's {config.max_position_embeddings} positions"
        )

    torch.manual_seed(args.seed)
    model = DeepseekV3ForCausalLM(config)
    model.train()
    optimizer = torch.optim.AdamW(_param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    balancer = LoadBalancer(model, args.bias_update_speed)
    history: list[dict[str, float]] = []
    start_step, elapsed_before = 0, 0.0
    state_path = out / TRAIN_STATE
    if args.resume:
        state = _load_resume_state(state_path)
        if state["args"]["size"] != args.size or state["args"]["seed"] != args.seed:
            raise TrainInputError(f"--resume: {state_path} was made with --size {state['args']['size']} "
                                  f"--seed {state['args']['seed']}, not --size {args.size} --seed {args.seed}")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise TrainInputError(f"--resume: {state_path} does not fit this model ({str(exc).splitlines()[0][:200]})") from None
        start_step, history, elapsed_before = state["step"], state["history"], state["elapsed_s"]
        if not 0 <= start_step <= args.steps:
            raise TrainInputError(f"--resume: {state_path} is at step {start_step}, beyond --steps {args.steps}")

    def checkpoint(step: int) -> None:
        _save_state(state_path, model=model.state_dict(), optimizer=optimizer.state_dict(), step=step,
                    history=history, elapsed_s=elapsed_before + time.time() - t0, args=vars(args))

    t0 = time.time()
    recent: list[float] = []
    bar = tqdm(range(start_step, args.steps), initial=start_step, total=args.steps, desc="train", mininterval=5)
    for step in bar:
        lr = lr_at(step, args.steps, args.lr, args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = sample_batch(data.train, args.batch_size, args.seq_len, args.seed, step)
        logits = model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        imbalance = balancer.update()
        loss_value = loss.item()
        recent = (recent + [loss_value])[-args.log_every:]
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", maxload=f"{imbalance:.2f}")
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            record = {"step": done, "train_loss": sum(recent) / len(recent), "lr": lr, "max_load_ratio": imbalance,
                      "elapsed_s": elapsed_before + time.time() - t0}
            if done % args.eval_every == 0 or done == args.steps:
                record["val_loss"] = evaluate(model, data.val, args.seq_len)
            history.append(record)
            tqdm.write(json.dumps(record))
        if args.stop_after is not None and done >= args.stop_after and done != args.steps:
            checkpoint(done)
            tqdm.write(f"stopped after step {done} (--stop-after); continue with --resume")
            return {"stopped_at": done, "history": history}
        if done % args.checkpoint_every == 0 and done != args.steps:
            checkpoint(done)
    checkpoint(args.steps)

    train_loss = history[-1]["train_loss"] if history else float("nan")
    val_loss = evaluate(model, data.val, args.seq_len)
    unigram = unigram_cross_entropy(data.train, data.val, config.vocab_size)
    metrics = {
        "size": args.size, "steps": args.steps, "seed": args.seed, "batch_size": args.batch_size,
        "seq_len": args.seq_len, "lr": args.lr, "warmup": args.warmup, "weight_decay": args.weight_decay,
        "bias_update_speed": args.bias_update_speed, "threads": args.threads,
        "train_tokens_seen": args.steps * args.batch_size * args.seq_len,
        "train_loss": train_loss, "train_perplexity": math.exp(train_loss),
        "val_loss": val_loss, "val_perplexity": math.exp(val_loss),
        "unigram_val_loss": unigram, "unigram_val_perplexity": math.exp(unigram),
        "corpus": CORPUS_NAME, "corpus_license": CORPUS_LICENSE, "corpus_sha256": data.fingerprint,
        "train_docs": data.num_train_docs, "val_docs": data.num_val_docs,
        "train_stream_tokens": int(data.train.numel()), "val_stream_tokens": int(data.val.numel()),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_time_s": history[-1]["elapsed_s"] if history else 0.0,
        "history": history,
    }
    model.save_pretrained(str(out / "hf"))
    data.tokenizer.save_pretrained(str(out / "hf"))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of the training script."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="working directory (tokenizer, train_state.pt, hf/, metrics.json)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="tiny-en", choices=sorted(SIZES))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--bias-update-speed", type=float, default=1e-3,
                   help="gamma of the auxiliary-loss-free balancing (DeepSeek-V3 used 0.001)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--max-docs", type=int, default=None, help="use only the first N documents (tests)")
    p.add_argument("--resume", action="store_true", help=f"continue from <out>/{TRAIN_STATE}")
    p.add_argument("--stop-after", type=int, default=None,
                   help="interrupt on purpose: checkpoint and exit after this many steps (no final export)")
    args = p.parse_args(argv)
    positive = ("steps", "batch_size", "threads", "log_every", "eval_every", "checkpoint_every")
    for name in positive:
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("max_docs", "stop_after"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.seq_len < 2:
        p.error(f"--seq-len must be >= 2, got {args.seq_len}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    for name in ("lr", "grad_clip"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            p.error(f"--{name.replace('_', '-')} must be a finite number > 0, got {getattr(args, name)}")
    for name in ("weight_decay", "bias_update_speed"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            p.error(f"--{name.replace('_', '-')} must be a finite number >= 0, got {getattr(args, name)}")
    if args.eval_every % args.log_every:
        p.error("--eval-every must be a multiple of --log-every")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train; bad input prints one ``error:`` line and returns 2 (argparse errors exit 2 as well)."""
    import sys

    try:
        metrics = train(parse_args(argv))
    except TrainInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if "stopped_at" in metrics:
        return 0
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
