"""Reductions over axes: sum, prod, max, min, and argmax along one axis."""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from ..errors import ShapeError
from ..lower.emit import reg_type
from ..typesys import DType, TensorType
from .core import primitive
from .elementwise import _add, _maximum, _minimum, _mul


def _reduce_shape(in_types, axes):
    (t,) = in_types
    for a in axes:
        if not 0 <= a < t.rank:
            raise ShapeError(f"axis {a} is out of range for {t}")
    return [t.with_shape(tuple(d for k, d in enumerate(t.shape) if k not in axes))]


def _identity(dt: DType, kind: str):
    if kind == "sum":
        return 0
    if kind == "prod":
        return 1
    big = np.inf if dt.is_float else np.iinfo(np.int64).max
    return -big if kind == "max" else big


def _reduce_lower(kind, combine):
    def lower(em, eqn, ins):
        (x,) = ins
        axes = eqn.params["axes"]
        t = eqn.inputs[0].type
        out_t = eqn.outs[0].type
        dt = t.dtype
        kept = [k for k in range(t.rank) if k not in axes]
        acc = em.alloca(reg_type(dt))

        def outer(out_idx):
            em.b.store(em.const(dt, _identity(dt, kind)), acc)

            def inner(red_idx):
                full = [None] * t.rank
                for k, i in zip(kept, out_idx):
                    full[k] = i
                for k, i in zip(axes, red_idx):
                    full[k] = i
                em.b.store(combine(em, dt, em.b.load(acc), em.read(x, full)), acc)

            em.loop_nest([t.shape[a] for a in axes], inner, "red")
            return em.b.load(acc)

        if out_t.rank == 0:
            return [outer([])]
        out = em.alloc(out_t)
        em.loop_nest(out_t.shape, lambda idx: em.store(out, idx, outer(idx)), "ro")
        return [out]

    return lower


def _np_reduce(fn):
    return lambda x, axes: [fn(x, axis=tuple(axes))]


reduce_sum_p = primitive("reduce_sum", shape=_reduce_shape, lower=_reduce_lower("sum", _add), fold=_np_reduce(np.sum))
reduce_prod_p = primitive("reduce_prod", shape=_reduce_shape, lower=_reduce_lower("prod", _mul),
                          fold=_np_reduce(np.prod))
reduce_max_p = primitive("reduce_max", shape=_reduce_shape, lower=_reduce_lower("max", _maximum),
                         fold=_np_reduce(np.max))
reduce_min_p = primitive("reduce_min", shape=_reduce_shape, lower=_reduce_lower("min", _minimum),
                         fold=_np_reduce(np.min))


def _argmax_lower(em, eqn, ins):
    """The first index of the largest element along `axis` (NaN counts as largest, as in NumPy)."""
    (x,) = ins
    axis = eqn.params["axis"]
    t = eqn.inputs[0].type
    out_t = eqn.outs[0].type
    dt = t.dtype
    best_v, best_i = em.alloca(reg_type(dt)), em.alloca(ir.IntType(64))

    def outer(out_idx):
        def at(i):
            full = list(out_idx)
            full.insert(axis, i)
            return em.load(x, full)

        em.b.store(at(em.i64(0)), best_v)
        em.b.store(em.i64(0), best_i)

        def step(i):
            v, b = at(i), em.b.load(best_v)
            if dt.is_float:
                better = em.b.or_(em.b.fcmp_ordered(">", v, b),
                                  em.b.and_(em.b.fcmp_unordered("uno", v, v), em.b.fcmp_ordered("ord", b, b)))
            else:
                better = em.b.icmp_signed(">", v, b)
            em.b.store(em.b.select(better, v, b), best_v)
            em.b.store(em.b.select(better, i, em.b.load(best_i)), best_i)

        em.loop(t.shape[axis], step, "am")
        return em.b.load(best_i)

    if out_t.rank == 0:
        return [outer([])]
    out = em.alloc(out_t)
    em.loop_nest(out_t.shape, lambda idx: em.store(out, idx, outer(idx)), "ao")
    return [out]


argmax_p = primitive(
    "argmax",
    shape=lambda ts, axis: [TensorType(DType.I64, tuple(d for k, d in enumerate(ts[0].shape) if k != axis))],
    lower=_argmax_lower,
    fold=lambda x, axis: [np.argmax(x, axis=axis)],
    nondiff=True,
)
