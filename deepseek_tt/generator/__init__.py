"""Generators over the runtime facade: batch-parallel (``bp``) and pipeline-parallel (``pp``), sampling,
traced decode, teacher forcing and the statistics of docs/DESIGN.md section 7."""

from __future__ import annotations

from deepseek_tt.generator.base import GenerationOutput, GenerationResult
from deepseek_tt.generator.bp import BatchParallelGenerator
from deepseek_tt.generator.pp import PipelineParallelGenerator
from deepseek_tt.generator.sampling import SamplingParams
from deepseek_tt.generator.statistics import GenerationStatistics

GENERATORS = {"bp": BatchParallelGenerator, "pp": PipelineParallelGenerator}


def make_generator(name: str, model, *, enable_trace: bool = False, progress: bool = False):
    """``"bp"`` or ``"pp"`` generator over ``model``."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}: expected one of {', '.join(GENERATORS)}")
    return GENERATORS[name](model, enable_trace=enable_trace, progress=progress)


__all__ = [
    "BatchParallelGenerator",
    "GENERATORS",
    "GenerationOutput",
    "GenerationResult",
    "GenerationStatistics",
    "PipelineParallelGenerator",
    "SamplingParams",
    "make_generator",
]
