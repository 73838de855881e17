"""Small emitting helpers for derivative rules and transforms: `mul(b, x, y)` emits one
equation into builder b. They keep rules one line each, as in JAX's `lax` wrappers.

The primitive modules import this one and it imports them: prims/__init__.py imports it first,
so that each of them is complete when a rule runs."""

from __future__ import annotations

import numpy as np

from ..ir.prim import const_p
from ..typesys import DType, TensorType
from . import elementwise as ew
from . import linalg, reduce
from . import shape as sh
from .core import get


def const(b, value, dtype: DType):
    return b.emit1(const_p, [], value=np.asarray(value, dtype=dtype.np))


def zeros(b, t: TensorType):
    z = const(b, 0, t.dtype)
    return z if t.rank == 0 else b.emit1(sh.broadcast_p, [z], shape=t.shape)


def like(b, x, value):
    """A scalar constant of x's dtype."""
    return const(b, value, x.type.dtype)


def emit(b, name, *xs, **params):
    """The primitive called `name` applied to xs (for the specialiser, which maps DFL's
    functions to primitives by name)."""
    return b.emit1(get(name), list(xs), **params)


def add(b, x, y):
    return b.emit1(ew.add_p, [x, y])


def sub(b, x, y):
    return b.emit1(ew.sub_p, [x, y])


def mul(b, x, y):
    return b.emit1(ew.mul_p, [x, y])


def div(b, x, y):
    return b.emit1(ew.div_p, [x, y])


def neg(b, x):
    return b.emit1(ew.neg_p, [x])


def select(b, c, x, y):
    return b.emit1(ew.select_p, [c, x, y])


def copy(b, x):
    """x as a new value."""
    return b.emit1(ew.copy_p, [x])


def reshape(b, x, shape):
    shape = tuple(shape)
    return x if x.type.shape == shape else b.emit1(sh.reshape_p, [x], shape=shape)


def broadcast(b, x, shape):
    shape = tuple(shape)
    return x if x.type.shape == shape else b.emit1(sh.broadcast_p, [x], shape=shape)


def transpose(b, x, perm):
    perm = tuple(perm)
    return x if perm == tuple(range(len(perm))) else b.emit1(sh.transpose_p, [x], perm=perm)


def reduce_sum(b, x, axes):
    return x if not axes else b.emit1(reduce.reduce_sum_p, [x], axes=tuple(axes))


def unbroadcast(b, ct, shape):
    """Sum a cotangent of a broadcast result back to the operand's shape."""
    shape = tuple(shape)
    if ct.type.shape == shape:
        return ct
    extra = ct.type.rank - len(shape)
    axes = list(range(extra)) + [extra + k for k, d in enumerate(shape) if d == 1 and ct.type.shape[extra + k] != 1]
    return reshape(b, reduce_sum(b, ct, axes), shape)


def matmul(b, x, y):
    return b.emit1(linalg.matmul_p, [x, y])


def convert(b, x, dtype):
    return x if x.type.dtype is dtype else b.emit1(ew.convert_p, [x], dtype=dtype)
