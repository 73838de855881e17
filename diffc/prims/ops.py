"""Small emitting helpers for derivative rules and transforms: `mul(b, x, y)` emits one
equation into builder b. They keep rules one line each, as in JAX's `lax` wrappers."""

from __future__ import annotations

import numpy as np

from ..typesys import DType, TensorType


def _p(name):
    from .core import get

    return get(name)


def const(b, value, dtype: DType):
    return b.emit1(_p("const"), [], value=np.asarray(value, dtype=dtype.np))


def zeros(b, t: TensorType):
    z = const(b, 0, t.dtype)
    return z if t.rank == 0 else b.emit1(_p("broadcast"), [z], shape=t.shape)


def like(b, x, value):
    """A scalar constant of x's dtype."""
    return const(b, value, x.type.dtype)


def emit(b, name, *xs, **params):
    return b.emit1(_p(name), list(xs), **params)


def add(b, x, y):
    return emit(b, "add", x, y)


def sub(b, x, y):
    return emit(b, "sub", x, y)


def mul(b, x, y):
    return emit(b, "mul", x, y)


def div(b, x, y):
    return emit(b, "div", x, y)


def neg(b, x):
    return emit(b, "neg", x)


def select(b, c, x, y):
    return emit(b, "select", c, x, y)


def reshape(b, x, shape):
    shape = tuple(shape)
    return x if x.type.shape == shape else emit(b, "reshape", x, shape=shape)


def broadcast(b, x, shape):
    shape = tuple(shape)
    return x if x.type.shape == shape else emit(b, "broadcast", x, shape=shape)


def transpose(b, x, perm):
    perm = tuple(perm)
    return x if perm == tuple(range(len(perm))) else emit(b, "transpose", x, perm=perm)


def reduce_sum(b, x, axes):
    return x if not axes else emit(b, "reduce_sum", x, axes=tuple(axes))


def unbroadcast(b, ct, shape):
    """Sum a cotangent of a broadcast result back to the operand's shape."""
    shape = tuple(shape)
    if ct.type.shape == shape:
        return ct
    extra = ct.type.rank - len(shape)
    axes = list(range(extra)) + [extra + k for k, d in enumerate(shape) if d == 1 and ct.type.shape[extra + k] != 1]
    return reshape(b, reduce_sum(b, ct, axes), shape)


def matmul(b, x, y):
    return emit(b, "matmul", x, y)


def convert(b, x, dtype):
    return x if x.type.dtype is dtype else emit(b, "convert", x, dtype=dtype)
