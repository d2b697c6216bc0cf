"""Unary activations by ttnn name, for fused activations (``activation=``, ``input_tensor_a_activations``,
program-config ``fused_activation``) and the standalone unary ops. All work on fp32 torch tensors."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .. import types as T


def _gelu(x: torch.Tensor, p: list[float]) -> torch.Tensor:
    approximate = "tanh" if (p and p[0]) else "none"
    return torch.nn.functional.gelu(x, approximate=approximate)


_UNARY: dict[str, Callable[[torch.Tensor, list[float]], torch.Tensor]] = {
    "IDENTITY": lambda x, p: x,
    "SILU": lambda x, p: torch.nn.functional.silu(x),
    "RELU": lambda x, p: torch.relu(x),
    "RELU6": lambda x, p: torch.clamp(x, 0.0, 6.0),
    "RELU_MAX": lambda x, p: torch.clamp(x, 0.0, p[0]),
    "RELU_MIN": lambda x, p: torch.clamp(x, min=p[0]),
    "GELU": _gelu,
    "GELU_TANH": lambda x, p: torch.nn.functional.gelu(x, approximate="tanh"),
    "SIGMOID": lambda x, p: torch.sigmoid(x),
    "TANH": lambda x, p: torch.tanh(x),
    "EXP": lambda x, p: torch.exp(x),
    "NEG": lambda x, p: -x,
    "SQUARE": lambda x, p: x * x,
    "SQRT": lambda x, p: torch.sqrt(x),
    "RSQRT": lambda x, p: torch.rsqrt(x),
    "RECIP": lambda x, p: torch.reciprocal(x),
    "ABS": lambda x, p: torch.abs(x),
    "LOG": lambda x, p: torch.log(x),
    "SOFTPLUS": lambda x, p: torch.nn.functional.softplus(x, beta=p[0] if p else 1.0, threshold=p[1] if len(p) > 1 else 20.0),
    "MUL_UNARY_SFPU": lambda x, p: x * p[0],
    "ADD_UNARY_SFPU": lambda x, p: x + p[0],
    "SUB_UNARY_SFPU": lambda x, p: x - p[0],
    "DIV_UNARY_SFPU": lambda x, p: x / p[0],
    "LEAKY_RELU": lambda x, p: torch.nn.functional.leaky_relu(x, p[0] if p else 0.01),
}


def resolve(spec: Any) -> tuple[str, list[float]]:
    """(op name, params) of an activation given as a string, UnaryOpType or UnaryWithParam."""
    if isinstance(spec, str):
        name, params = spec.strip().upper(), []
    elif isinstance(spec, T.UnaryWithParam):
        name, params = spec.op_type.name, list(spec.params)
    elif isinstance(spec, T.UnaryOpType):
        name, params = spec.name, []
    else:
        raise TypeError(f"ttnn: unsupported activation {spec!r}; expected a str, ttnn.UnaryOpType or ttnn.UnaryWithParam")
    if name not in _UNARY:
        raise NotImplementedError(f"ttnn emulator: activation {name!r} is not implemented")
    return name, params


def apply(x: torch.Tensor, spec: Any) -> torch.Tensor:
    """Apply one activation (or none when ``spec`` is None) to an fp32 tensor."""
    if spec is None:
        return x
    name, params = resolve(spec)
    return _UNARY[name](x, params)


def apply_all(x: torch.Tensor, specs: Any) -> torch.Tensor:
    """Apply a sequence of activations in order (``input_tensor_a_activations`` style)."""
    if specs is None:
        return x
    if not isinstance(specs, (list, tuple)):
        specs = [specs]
    for spec in specs:
        x = apply(x, spec)
    return x
