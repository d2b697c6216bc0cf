"""DeepSeek-V3 / R1 on TT-NN: the model library, its backends, and the validation helpers."""

__version__ = "0.1.0"
