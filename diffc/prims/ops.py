"""Small emitting helpers for derivative rules and transforms: `mul(b, x, y)` emits one
equation into builder b. They keep rules one line each, as in JAX's `lax` wrappers.

The primitive modules import this one, so it finds their primitives in the registry (when a
rule runs, every family is declared) rather than importing them back."""

from __future__ import annotations

import numpy as np

from ..ir.prim import const_p
from ..typesys import DType, TensorType
from .core import get


def const(b, value, dtype: DType):
    return b.emit1(const_p, [], value=np.asarray(value, dtype=dtype.np))


def zeros(b, t: TensorType):
    z = const(b, 0, t.dtype)
    return z if t.rank == 0 else b.emit1(get("broadcast"), [z], shape=t.shape)


def like(b, x, value):
    """A scalar constant of x's dtype."""
    return const(b, value, x.type.dtype)


def emit(b, name, *xs, **params):
    """The primitive called `name` applied to xs (for the specialiser, which maps DFL's
    functions to primitives by name)."""
    return b.emit1(get(name), list(xs), **params)


def add(b, x, y):
    return b.emit1(get("add"), [x, y])


def add_all(b, terms):
    """The sum of the terms (a tangent's contributions, one per input with a tangent), or None
    when there are none: a tangent known to be zero."""
    if not terms:
        return None
    total = terms[0]
    for t in terms[1:]:
        total = add(b, total, t)
    return total


def sub(b, x, y):
    return b.emit1(get("sub"), [x, y])


def mul(b, x, y):
    return b.emit1(get("mul"), [x, y])


def div(b, x, y):
    return b.emit1(get("div"), [x, y])


def neg(b, x):
    return b.emit1(get("neg"), [x])


def select(b, c, x, y):
    return b.emit1(get("select"), [c, x, y])


def copy(b, x):
    """x as a new value."""
    return b.emit1(get("copy"), [x])


def reshape(b, x, shape):
    shape = tuple(shape)
    return x if x.type.shape == shape else b.emit1(get("reshape"), [x], shape=shape)


def broadcast(b, x, shape):
    shape = tuple(shape)
    return x if x.type.shape == shape else b.emit1(get("broadcast"), [x], shape=shape)


def transpose(b, x, perm):
    perm = tuple(perm)
    return x if perm == tuple(range(len(perm))) else b.emit1(get("transpose"), [x], perm=perm)


def reduce_sum(b, x, axes):
    return x if not axes else b.emit1(get("reduce_sum"), [x], axes=tuple(axes))


def unbroadcast(b, ct, shape):
    """Sum a cotangent of a broadcast result back to the operand's shape."""
    shape = tuple(shape)
    if ct.type.shape == shape:
        return ct
    extra = ct.type.rank - len(shape)
    axes = list(range(extra)) + [extra + k for k, d in enumerate(shape) if d == 1 and ct.type.shape[extra + k] != 1]
    return reshape(b, reduce_sum(b, ct, axes), shape)


def matmul(b, x, y):
    return b.emit1(get("matmul"), [x, y])


def convert(b, x, dtype):
    return x if x.type.dtype is dtype else b.emit1(get("convert"), [x], dtype=dtype)
