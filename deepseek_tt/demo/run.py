"""``run_demo``: the demo as a function (docs/DEMO_CONTRACT.md section 5); the CLI calls it.

A run is four steps: resolve (:func:`deepseek_tt.demo.resolve.resolve`: options checked, defaults
resolved, nothing loaded), load (the mesh and the model), run (generation or teacher forcing) and
report (the summary printed, the JSON written).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from deepseek_tt.demo.errors import DemoInputError
from deepseek_tt.demo.options import DemoOptions
from deepseek_tt.demo.output import SCHEMA_VERSION, config_block, write_json_atomic
from deepseek_tt.demo.resolve import ResolvedRun, resolve
from deepseek_tt.demo.runtime import load_model, open_mesh
from deepseek_tt.demo.text import FirstUserStreamer
from deepseek_tt.generator.statistics import GenerationStatistics

log = logging.getLogger("deepseek_tt.demo")


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


def run_demo(prompts: Sequence[str] | None = None, *, stream: TextIO | None = None, **options: Any) -> dict[str, Any]:
    """Run the demo and return the results dict of docs/DEMO_OUTPUT.md (also written to ``output_path``).

    ``options``: the fields of :class:`~deepseek_tt.demo.options.DemoOptions` as keywords (the CLI's flags).
    Bad input raises :class:`DemoInputError` before the model is loaded and before anything is written.
    """
    return run_with_options(DemoOptions(prompts=prompts, **options), stream)


def run_with_options(options: DemoOptions, stream: TextIO | None = None) -> dict[str, Any]:
    """:func:`run_demo` for options already in a :class:`DemoOptions` (the CLI's entry)."""
    run = resolve(options)
    config = config_block(run)
    log.info("model %s (%s), runtime %s, backend %s, mesh %s",
             config["model_path"] or f"random weights ({options.random_weights_preset} dims, 1 dense layer)",
             run.model.source, run.runtime, config["backend"], config["mesh_shape"])
    stream = stream or sys.stdout
    with open_mesh(run.mesh, options.enable_trace) as mesh_device:
        model = _load(run, mesh_device)
        results = _execute(run, model, config, stream)
    _report(run, results, stream)
    return results


def _load(run: ResolvedRun, mesh_device: Any) -> Any:
    """The model of ``run`` on ``mesh_device``; the errors bad input can still cause at load time as
    :class:`DemoInputError`."""
    from deepseek_tt.runtime.mesh_fit import DeviceMemoryError
    from deepseek_tt.modules.pipeline import PipelineConfigError
    from deepseek_tt.weights.cache import CacheDirError
    from deepseek_tt.weights.errors import CheckpointError

    o = run.options
    try:
        return load_model(
            run.runtime,
            run.model,
            mesh_device,
            run.cache,
            dtype_policy=o.dtype_policy,
            max_seq_len=o.max_seq_len,
            recalculate_weights=o.recalculate_weights,
            progress=o.progress,
            pipelined=run.pipelined,
        )
    except DeviceMemoryError as exc:  # checked by the load before any weight is converted
        raise DemoInputError(str(exc)) from None
    except PipelineConfigError as exc:
        raise DemoInputError(f"--generator pp: {exc}") from None
    except CacheDirError as exc:
        raise DemoInputError(f"--cache-dir: {exc}") from None
    except CheckpointError as exc:
        raise DemoInputError(f"--model-path: {exc}") from None


def _execute(run: ResolvedRun, model: Any, config: dict[str, Any], stream: TextIO) -> dict[str, Any]:
    """Generation, or teacher forcing with ``--token-accuracy``; the results dict, memory report included."""
    streamer = FirstUserStreamer(run.codec, stream) if run.options.early_print_first_user else None
    if run.reference is not None:
        results = _run_teacher_forcing(run, model, streamer, config)
    else:
        results = _run_generation(run, model, streamer, config)
    if streamer is not None:
        streamer.close()
    if run.runtime == "tt":
        from deepseek_tt.runtime.memory import memory_report

        results["memory"] = memory_report(model)
    return results


def _report(run: ResolvedRun, results: dict[str, Any], stream: TextIO) -> None:
    """The summary on ``stream`` and, with ``output_path``, the JSON file."""
    _print_summary(results, stream)
    if run.output_path is not None:
        write_json_atomic(run.output_path, results)
        log.info("wrote %s", run.output_path)


def _run_generation(run: ResolvedRun, model: Any, streamer: FirstUserStreamer | None, config: dict[str, Any]) -> dict[str, Any]:
    from deepseek_tt.generator import make_generator
    from deepseek_tt.generator.trace import TraceUnsupportedError

    o, codec = run.options, run.codec
    texts = [text for text, _ in run.token_prompts]
    token_prompts = [ids for _, ids in run.token_prompts]
    try:
        gen = make_generator(o.generator, model, enable_trace=o.enable_trace, progress=o.progress)
    except TraceUnsupportedError as exc:
        raise DemoInputError(f"{exc}; use --runtime tt") from None
    out = gen.generate(token_prompts, o.max_new_tokens, run.sampling, eos_token_id=_eos_ids(model.hf_config), on_token=streamer)
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
        "config": config,
        "generations": generations,
        "statistics": out.statistics.to_dict(),
        "token_accuracy": None,
    }


def _run_teacher_forcing(run: ResolvedRun, model: Any, streamer: FirstUserStreamer | None, config: dict[str, Any]) -> dict[str, Any]:
    from deepseek_tt.generator.teacher_forcing import teacher_force

    reference, codec = run.reference, run.codec
    max_new_tokens, tf_prompt_len, progress = run.options.max_new_tokens, run.options.tf_prompt_len, run.options.progress
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
        "config": {**config, "max_new_tokens": out.accuracy.num_tokens, "generator": "teacher_forcing"},
        "generations": generations,
        "statistics": out.statistics.to_dict(),
        "token_accuracy": out.accuracy.to_dict(),
    }


__all__ = ["run_demo", "run_with_options"]
