"""Checkpoint access: a lazy mmap-backed state dict, fp8 block (de)quantization, model-directory checks."""

from deepseek_tt.weights.errors import CheckpointError, MissingCheckpointFileError
from deepseek_tt.weights.fp8 import dequantize_fp8_blocks, quantize_fp8_blocks, scale_grid_shape
from deepseek_tt.weights.hf_config import load_hf_config
from deepseek_tt.weights.lazy_state_dict import LazyStateDict

__all__ = [
    "CheckpointError",
    "LazyStateDict",
    "MissingCheckpointFileError",
    "dequantize_fp8_blocks",
    "load_hf_config",
    "quantize_fp8_blocks",
    "scale_grid_shape",
]
