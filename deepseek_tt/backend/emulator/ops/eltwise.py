"""Element-wise ops (binary with broadcasting and scalars, unary SFPU functions, softmax).

Inputs are the stored (already rounded) values; math runs in fp32 and the output is rounded to the
output dtype by ``Tensor.from_stacked``. ``fast_and_approximate_mode`` of ``exp`` follows the SFPU's
approximate exponential (see NUMERICS.md); other approximate modes are computed exactly.
"""

from __future__ import annotations

import enum
import inspect
import math
from typing import Any, Callable

import torch

from . import _activations as activations
from .. import numerics
from ._common import broadcast_shapes, compute_dtype, data, is_tensor, make, make_deferred, norm_dim, same_mesh, stack_broadcast
from .deferred import DeferredRows
from .trace import device_op


def _align(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast-align two stacked tensors: per-device dims from the right, device dim first."""
    rank = max(a.dim(), b.dim())
    a = a.reshape(a.shape[0], *([1] * (rank - a.dim())), *a.shape[1:])
    b = b.reshape(b.shape[0], *([1] * (rank - b.dim())), *b.shape[1:])
    a, b = stack_broadcast(a, b)
    try:
        broadcast_shapes(a.shape, b.shape)
    except RuntimeError as exc:
        raise RuntimeError(
            f"ttnn binary op: shapes {tuple(a.shape[1:])} and {tuple(b.shape[1:])} are not broadcastable"
        ) from exc
    return a, b


def _binary(
    name: str,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    input_tensor_a: Any,
    input_tensor_b: Any,
    dtype: Any,
    memory_config: Any,
    output_tensor: Any,
    activations_after: Any,
    a_activations: Any,
    b_activations: Any,
) -> Any:
    tensors = [t for t in (input_tensor_a, input_tensor_b) if is_tensor(t)]
    if not tensors:
        raise TypeError(f"ttnn.{name}: at least one input must be a ttnn.Tensor")
    same_mesh(f"ttnn.{name}", *tensors)
    like = tensors[0]
    if len(tensors) == 2 and output_tensor is None:
        deferred = _deferred_binary(fn, input_tensor_a, input_tensor_b, dtype, memory_config, activations_after,
                                    a_activations, b_activations)
        if deferred is not None:
            return deferred
    a = compute_dtype(data(input_tensor_a)) if is_tensor(input_tensor_a) else float(input_tensor_a)
    b = compute_dtype(data(input_tensor_b)) if is_tensor(input_tensor_b) else float(input_tensor_b)
    if isinstance(a, torch.Tensor):
        a = activations.apply_all(a, a_activations)
    if isinstance(b, torch.Tensor):
        b = activations.apply_all(b, b_activations)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        a, b = _align(a, b)
    out = activations.apply_all(fn(a, b), activations_after)
    if isinstance(out, float):
        raise TypeError(f"ttnn.{name}: at least one input must be a ttnn.Tensor")
    result = make(out, like, dtype=dtype, memory_config=memory_config)
    return _into(result, output_tensor)


def _deferred_binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], input_tensor_a: Any, input_tensor_b: Any,
                     dtype: Any, memory_config: Any, activations_after: Any, a_activations: Any,
                     b_activations: Any) -> Any:
    """Two deferred operands of the same rows and shape (deferred.py): the result deferred too, else None."""
    a_store, b_store = input_tensor_a._storage, input_tensor_b._storage
    if type(a_store) is not DeferredRows or type(b_store) is not DeferredRows or a_store.shape != b_store.shape:
        return None
    if not a_store.same_rows(b_store):
        return None
    out_dtype = dtype if dtype is not None else input_tensor_a.dtype

    def apply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = activations.apply_all(compute_dtype(a), a_activations)
        b = activations.apply_all(compute_dtype(b), b_activations)
        return numerics.round_to_dtype(activations.apply_all(fn(a, b), activations_after), out_dtype)

    values = DeferredRows.create(
        a_store.shape, numerics.storage_torch_dtype(out_dtype), a_store.groups, a_store.group_rows,
        lambda: apply(a_store.full(), b_store.full()),
        lambda groups_idx, sel: apply(a_store.rows(groups_idx, sel), b_store.rows(groups_idx, sel)), a_store.device,
    )
    return make_deferred(values, input_tensor_a, dtype=out_dtype, memory_config=memory_config)


def _into(result: Any, output_tensor: Any) -> Any:
    """Write into a preallocated ``output_tensor`` (same object returned), as ttnn does."""
    if output_tensor is None:
        return result
    if tuple(output_tensor.shape) != tuple(result.shape):
        raise RuntimeError(f"ttnn: output_tensor has shape {output_tensor.shape}, the result {result.shape}")
    output_tensor._data = make(data(result), output_tensor, dtype=output_tensor.dtype)._data
    return output_tensor


_BINARY_KWARGS = ("dtype", "memory_config", "output_tensor", "activations", "input_tensor_a_activations",
                  "input_tensor_b_activations")


def _binary_op(name: str, fn: Callable[[Any, Any], Any], approx_default: bool | None, *, core_args: bool = True,
               second: str = "input_tensor_b") -> Callable:
    """A binary op with ttnn's keyword set: ``fast_and_approximate_mode`` only when ``approx_default``
    is not None, ``sub_core_grids``/``sub_device_id`` when ``core_args``; ``second`` names operand b."""

    def op(input_tensor_a: Any, input_tensor_b: Any, **kwargs: Any) -> Any:
        unknown = set(kwargs) - set(params)
        if unknown:
            raise TypeError(f"ttnn.{name}: unexpected keyword arguments {sorted(unknown)}")
        return _binary(
            name, fn, input_tensor_a, input_tensor_b,
            kwargs.get("dtype"), kwargs.get("memory_config"), kwargs.get("output_tensor"), kwargs.get("activations", ()),
            kwargs.get("input_tensor_a_activations", ()), kwargs.get("input_tensor_b_activations", ()),
        )

    P = inspect.Parameter
    params: dict[str, Any] = {}
    if approx_default is not None:
        params["fast_and_approximate_mode"] = approx_default
    params.update({"dtype": None, "memory_config": None, "output_tensor": None, "activations": (),
                   "input_tensor_a_activations": (), "input_tensor_b_activations": ()})
    if core_args:
        params.update({"sub_core_grids": None, "sub_device_id": None})
    op.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [P("input_tensor_a", P.POSITIONAL_OR_KEYWORD), P(second, P.POSITIONAL_OR_KEYWORD)]
        + [P(k, P.KEYWORD_ONLY, default=v) for k, v in params.items()]
    )
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``ttnn.{name}``: element-wise with broadcasting; tensor or scalar operands."
    return device_op(op)



add = _binary_op("add", lambda a, b: a + b, True)
sub = _binary_op("sub", lambda a, b: a - b, True)
mul = _binary_op("mul", lambda a, b: a * b, False)
subtract = sub
multiply = mul
eq = _binary_op("eq", lambda a, b: (torch.as_tensor(a) == b).float(), None)
ne = _binary_op("ne", lambda a, b: (torch.as_tensor(a) != b).float(), None)
gt = _binary_op("gt", lambda a, b: (torch.as_tensor(a) > b).float(), None)
ge = _binary_op("ge", lambda a, b: (torch.as_tensor(a) >= b).float(), None)
lt = _binary_op("lt", lambda a, b: (torch.as_tensor(a) < b).float(), None)
le = _binary_op("le", lambda a, b: (torch.as_tensor(a) <= b).float(), None)
logical_and = _binary_op("logical_and", lambda a, b: ((torch.as_tensor(a) != 0) & (torch.as_tensor(b) != 0)).float(), None)
logical_or = _binary_op("logical_or", lambda a, b: ((torch.as_tensor(a) != 0) | (torch.as_tensor(b) != 0)).float(), None)
maximum = _binary_op("maximum", lambda a, b: torch.maximum(torch.as_tensor(a), torch.as_tensor(b)), None, core_args=False)
minimum = _binary_op("minimum", lambda a, b: torch.minimum(torch.as_tensor(a), torch.as_tensor(b)), None, core_args=False)


@device_op
def div(
    input_tensor_a: Any,
    input_tensor_b: Any,
    *,
    fast_and_approximate_mode: bool = False,
    rounding_mode: str | None = None,
    dtype: Any = None,
    memory_config: Any = None,
    output_tensor: Any = None,
    activations: Any = (),
    input_tensor_a_activations: Any = (),
    input_tensor_b_activations: Any = (),
    sub_core_grids: Any = None,
    sub_device_id: Any = None,
) -> Any:
    """``ttnn.div``: element-wise division (``rounding_mode`` None, "trunc" or "floor")."""
    fn = lambda a, b: torch.div(torch.as_tensor(a), b, rounding_mode=rounding_mode)  # noqa: E731
    return _binary(
        "div", fn, input_tensor_a, input_tensor_b, dtype, memory_config, output_tensor,
        activations, input_tensor_a_activations, input_tensor_b_activations,
    )


#: ``ttnn.divide`` is the very same operation object as ``ttnn.div`` in ttnn 0.81.
divide = div


@device_op
def rdiv(input_tensor: Any, value: float, *, rounding_mode: str | None = None, memory_config: Any = None,
         output_tensor: Any = None, sub_core_grids: Any = None) -> Any:
    """``ttnn.rdiv(t, value)``: ``value / t`` element-wise (``rounding_mode`` None, "trunc" or "floor"),
    what ``value / t`` (``Tensor.__rtruediv__``) runs."""
    if not is_tensor(input_tensor):
        raise TypeError(f"ttnn.rdiv: input_tensor must be a ttnn.Tensor, got {type(input_tensor).__name__}")
    if is_tensor(value) or not isinstance(value, (int, float)):
        raise TypeError(f"ttnn.rdiv: value must be a number, got {type(value).__name__}")
    if rounding_mode not in (None, "trunc", "floor"):
        raise RuntimeError(f"ttnn.rdiv: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    x = compute_dtype(data(input_tensor))
    out = torch.div(torch.full_like(x, float(value)), x, rounding_mode=rounding_mode)
    return _into(make(out, input_tensor, memory_config=memory_config), output_tensor)


# --- unary -----------------------------------------------------------------------------------------


def approx_exp(x: torch.Tensor) -> torch.Tensor:
    """The SFPU's fast approximate exp: 2**(x/ln2) with the fraction's 2**f replaced by 1 + f."""
    y = x * (1.0 / math.log(2.0))
    floor = torch.floor(y)
    return torch.ldexp(1.0 + (y - floor), floor.to(torch.int32)).to(torch.float32)


def _unary(fn: Callable[[torch.Tensor], torch.Tensor], t: Any, memory_config: Any, output_tensor: Any) -> Any:
    return _into(make(fn(compute_dtype(data(t))), t, memory_config=memory_config), output_tensor)


def _unary_op(name: str, fn: Callable[[torch.Tensor], torch.Tensor], doc: str) -> Callable:
    @device_op
    def op(input_tensor: Any, *, memory_config: Any = None, output_tensor: Any = None, sub_core_grids: Any = None) -> Any:
        return _unary(fn, input_tensor, memory_config, output_tensor)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


silu = _unary_op("silu", torch.nn.functional.silu, "``ttnn.silu``: x * sigmoid(x).")
neg = _unary_op("neg", torch.neg, "``ttnn.neg``.")
reciprocal = _unary_op("reciprocal", torch.reciprocal, "``ttnn.reciprocal``: 1 / x.")
relu = _unary_op("relu", torch.relu, "``ttnn.relu``.")
square = _unary_op("square", torch.square, "``ttnn.square``.")
abs = _unary_op("abs", torch.abs, "``ttnn.abs``.")  # noqa: A001
logical_not = _unary_op("logical_not", lambda x: (x == 0).float(), "``ttnn.logical_not``: 1 where x == 0.")


class SigmoidMode(enum.Enum):
    """``ttnn.SigmoidMode`` (every mode is computed exactly here)."""

    Accurate = 0
    AccurateWithFastExp = 1
    FastApproximate = 2


@device_op
def sigmoid(
    input_tensor: Any, *, vector_mode: int = 4, mode: Any = SigmoidMode.Accurate, memory_config: Any = None,
    output_tensor: Any = None, sub_core_grids: Any = None,
) -> Any:
    """``ttnn.sigmoid``: 1 / (1 + exp(-x))."""
    return _unary(torch.sigmoid, input_tensor, memory_config, output_tensor)


@device_op
def exp(
    input_tensor: Any, *, fast_and_approximate_mode: bool = False, memory_config: Any = None,
    output_tensor: Any = None, sub_core_grids: Any = None,
) -> Any:
    """``ttnn.exp`` (``fast_and_approximate_mode`` uses the SFPU's approximate exponential)."""
    return _unary(approx_exp if fast_and_approximate_mode else torch.exp, input_tensor, memory_config, output_tensor)


def _fast_unary(name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    @device_op
    def op(
        input_tensor: Any, *, fast_and_approximate_mode: bool = False, memory_config: Any = None,
        output_tensor: Any = None, sub_core_grids: Any = None,
    ) -> Any:
        return _unary(fn, input_tensor, memory_config, output_tensor)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``ttnn.{name}``."
    return op


rsqrt = _fast_unary("rsqrt", torch.rsqrt)


@device_op
def tanh(input_tensor: Any, *, memory_config: Any = None, output_tensor: Any = None,
         fast_and_approximate_mode: bool = False, sub_core_grids: Any = None) -> Any:
    """``ttnn.tanh``."""
    return _unary(torch.tanh, input_tensor, memory_config, output_tensor)
sqrt = _fast_unary("sqrt", torch.sqrt)
log = _fast_unary("log", torch.log)


@device_op
def gelu(
    input_tensor: Any, *, fast_and_approximate_mode: bool = False, memory_config: Any = None,
    output_tensor: Any = None, sub_core_grids: Any = None,
) -> Any:
    """``ttnn.gelu`` (the approximate mode uses the tanh form)."""
    approximate = "tanh" if fast_and_approximate_mode else "none"
    fn = lambda x: torch.nn.functional.gelu(x, approximate=approximate)  # noqa: E731
    return _unary(fn, input_tensor, memory_config, output_tensor)


@device_op
def softmax(
    input_tensor: Any,
    dim: int = -1,
    *,
    memory_config: Any = None,
    compute_kernel_config: Any = None,
    numeric_stable: bool = True,
) -> Any:
    """``ttnn.softmax`` along ``dim`` (fp32 math, output in the input dtype)."""
    x = compute_dtype(data(input_tensor))
    d = norm_dim(dim, x.dim() - 1, "ttnn.softmax") + 1
    if numeric_stable:
        out = torch.softmax(x, dim=d)
    else:
        e = torch.exp(x)
        out = e / e.sum(dim=d, keepdim=True)
    return make(out, input_tensor, memory_config=memory_config)


@device_op
def where(
    predicate: Any, true_value: Any, false_value: Any, *, memory_config: Any = None,
    output_tensor: Any = None, sub_core_grids: Any = None,
) -> Any:
    """``ttnn.where``: ``true_value`` where ``predicate`` != 0, else ``false_value``."""
    p = data(predicate)
    t = compute_dtype(data(true_value)) if is_tensor(true_value) else torch.tensor(float(true_value))
    f = compute_dtype(data(false_value)) if is_tensor(false_value) else torch.tensor(float(false_value))
    like = true_value if is_tensor(true_value) else false_value if is_tensor(false_value) else predicate
    if t.dim():
        p, t = _align(p, t)
    if f.dim():
        p, f = _align(p, f)
    out = torch.where(p != 0, t.to(p.device), f.to(p.device))
    return _into(make(out.to(torch.float32), like, memory_config=memory_config), output_tensor)

__all__ = [
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "rdiv", "maximum", "minimum",
    "eq", "ne", "gt", "ge", "lt", "le", "logical_and", "logical_or", "logical_not",
    "silu", "sigmoid", "exp", "neg", "reciprocal", "rsqrt", "sqrt", "square", "relu", "gelu", "tanh", "abs", "log",
    "softmax", "where", "SigmoidMode",
]
