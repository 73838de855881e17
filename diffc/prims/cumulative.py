"""Cumulative operations along an axis: the first-order linear recurrence `linrec` (cumsum and
cumprod are written with it) and the running argmax `cumargmax` (cummax gathers with it).

linrec(a, b) along an axis of length n, a_i the coefficient linking step i to the step before:
    forward:  y_0 = b_0,          y_i = a_i * y_{i-1} + b_i
    reverse:  y_{n-1} = b_{n-1},  y_i = a_{i+1} * y_{i+1} + b_i
cumsum(x) is linrec(1, x); cumprod(x) is linrec(x, x at the first step and 0 elsewhere) (in
reverse, the coefficients are x moved one step toward the end: y_i = x_i * y_{i+1}). Its
derivatives are linrecs again (See Note [Transposing a recurrence]), with no division, so
cumprod's derivative is exact where x has zeros and its second derivative too."""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from ..errors import ShapeError
from ..lower.emit import reg_type
from ..typesys import DType
from . import ops
from .core import primitive
from .elementwise import _add, _mul
from .shape import pad_p, slice_p

# --- linrec -----------------------------------------------------------------------------------


def _linrec_shape(in_types, axis, reverse):
    a, b = in_types
    if not 0 <= axis < b.rank:
        raise ShapeError(f"axis {axis} is out of range for {b}")
    if a.dtype is not b.dtype or a.shape not in ((), b.shape):
        raise ShapeError(f"the coefficients {a} of a recurrence do not fit its terms {b}")
    if b.dtype is DType.BOOL:
        raise ShapeError(f"a recurrence needs numbers, got {b}")
    return [b]


def _linrec_lower(em, eqn, ins):
    """A loop over the axis outside and the axes after it inside: each step combines a whole
    contiguous slice with the one before it, so the inner loop vectorises; along the last axis
    the running value stays in a register."""
    a, b = ins
    t = eqn.outs[0].type
    dt = t.dtype
    axis, reverse = eqn.params["axis"], eqn.params["reverse"]
    a = em.broadcast_view(a, t.shape)
    outer, n, inner = t.shape[:axis], t.shape[axis], t.shape[axis + 1 :]
    out = em.result(eqn.outs[0])
    if n == 0:
        return [out]

    def step_index(s):
        return em.b.sub(em.i64(n - 1), s) if reverse else s

    def at(o, i, k):
        return list(o) + [i] + list(k)

    if not inner:
        acc = em.alloca(reg_type(dt))

        def line(o):
            first = em.i64(n - 1 if reverse else 0)
            em.b.store(em.read(b, at(o, first, [])), acc)
            em.store(out, at(o, first, []), em.b.load(acc))

            def step(s):
                i = step_index(em.b.add(s, em.i64(1)))
                link = em.b.add(i, em.i64(1)) if reverse else i  # the coefficient's index
                y = _add(em, dt, _mul(em, dt, em.read(a, at(o, link, [])), em.b.load(acc)), em.read(b, at(o, i, [])))
                em.b.store(y, acc)
                em.store(out, at(o, i, []), y)

            em.loop(n - 1, step, "lr")

        em.loop_nest(outer, line, "lo")
        return [out]

    def block(o):
        first = em.i64(n - 1 if reverse else 0)
        em.loop_nest(inner, lambda k: em.store(out, at(o, first, k), em.read(b, at(o, first, k))), "lf")

        def step(s):
            i = step_index(em.b.add(s, em.i64(1)))
            prev = em.b.add(i, em.i64(1)) if reverse else em.b.sub(i, em.i64(1))
            link = prev if reverse else i

            def one(k):
                y = _mul(em, dt, em.read(a, at(o, link, k)), em.load(out, at(o, prev, k)))
                em.store(out, at(o, i, k), _add(em, dt, y, em.read(b, at(o, i, k))))

            em.loop_nest(inner, one, "lk")

        em.loop(n - 1, step, "ls")

    em.loop_nest(outer, block, "lo")
    return [out]


def shift(b, v, axis, toward_end):
    """v moved one step along `axis` (toward its end, or its start), a zero entering."""
    t = v.type
    n = t.shape[axis]
    if n == 0:
        return v
    lead = [0] * axis
    lo, hi = (0, n - 1) if toward_end else (1, n)
    part = b.emit1(slice_p, [v], starts=tuple(lead + [lo]), limits=tuple(list(t.shape[:axis]) + [hi]))
    start = 1 if toward_end else 0
    return b.emit1(pad_p, [part], starts=tuple(lead + [start] + [0] * (t.rank - axis - 1)), shape=t.shape)


def _linrec_jvp(ctx, p, ins, outs, ts):
    b = ctx.b
    a, _ = ins
    (y,) = outs
    da, db = ts
    axis = p["axis"]
    terms = [] if db is None else [db]
    if da is not None:  # forward: da_i * y_{i-1}; reverse: da_{i+1} * y_{i+1}
        da = ops.broadcast(b, da, y.type.shape)
        if p["reverse"]:
            terms.append(shift(b, ops.mul(b, da, y), axis, toward_end=False))
        else:
            terms.append(ops.mul(b, da, shift(b, y, axis, toward_end=True)))
    dy = ops.add_all(b, terms)
    return [None if dy is None else b.emit1(linrec_p, [a, dy], **p)]


def _linrec_vjp(ctx, p, ins, outs, cts):
    """See Note [Transposing a recurrence]."""
    b = ctx.b
    a, _ = ins
    (y,) = outs
    axis = p["axis"]
    g = b.emit1(linrec_p, [a, cts[0]], axis=axis, reverse=not p["reverse"])
    if p["reverse"]:  # a_i multiplied y_i in y_{i-1}
        ct_a = ops.mul(b, y, shift(b, g, axis, toward_end=True))
    else:  # a_i multiplied y_{i-1} in y_i
        ct_a = ops.mul(b, g, shift(b, y, axis, toward_end=True))
    return [ops.unbroadcast(b, ct_a, a.type.shape), g]


linrec_p = primitive(
    "linrec",
    shape=_linrec_shape,
    lower=_linrec_lower,
    jvp=_linrec_jvp,
    vjp=_linrec_vjp,
    reads_lazy=True,
    hoistable=True,
)

# --- cumargmax --------------------------------------------------------------------------------


def _cumargmax_shape(in_types):
    (t,) = in_types
    if t.rank == 0 or t.dtype is DType.BOOL:
        raise ShapeError(f"a running argmax needs an array of numbers, got {t}")
    return [t.with_dtype(DType.I64)]


def _cumargmax_lower(em, eqn, ins):
    """Along the last axis: the index of the largest element so far, the first of ties, and
    the first NaN once there is one (NaN counts as largest, as in argmax)."""
    (x,) = ins
    t = eqn.inputs[0].type
    dt = t.dtype
    n = t.shape[-1]
    out = em.result(eqn.outs[0])
    best, where = em.alloca(reg_type(dt)), em.alloca(ir.IntType(64))

    def line(o):
        if n == 0:
            return
        em.b.store(em.read(x, list(o) + [em.i64(0)]), best)
        em.b.store(em.i64(0), where)
        em.store(out, list(o) + [em.i64(0)], em.i64(0))

        def step(s):
            i = em.b.add(s, em.i64(1))
            v, m = em.read(x, list(o) + [i]), em.b.load(best)
            if dt.is_float:  # larger, or the first NaN
                nan_v, nan_m = em.b.fcmp_unordered("uno", v, v), em.b.fcmp_unordered("uno", m, m)
                better = em.b.or_(em.b.fcmp_ordered(">", v, m), em.b.and_(nan_v, em.b.not_(nan_m)))
            else:
                better = em.b.icmp_signed(">", v, m)
            em.b.store(em.b.select(better, v, m), best)
            w = em.b.select(better, i, em.b.load(where))
            em.b.store(w, where)
            em.store(out, list(o) + [i], w)

        em.loop(n - 1, step, "cm")

    em.loop_nest(t.shape[:-1], line, "co")
    return [out]


def _cumargmax_fold(x):
    """The running argmax of known values (first of ties, first NaN), for compile-time inputs."""
    out = np.zeros(x.shape, np.int64)
    for o in np.ndindex(x.shape[:-1]):
        best = 0
        for i in range(1, x.shape[-1]):
            v, m = x[o + (i,)], x[o + (best,)]
            if v > m or (np.isnan(v) and not np.isnan(m)):
                best = i
            out[o + (i,)] = best
    return [out]


cumargmax_p = primitive(
    "cumargmax",
    shape=_cumargmax_shape,
    lower=_cumargmax_lower,
    fold=_cumargmax_fold,
    nondiff=True,
    reads_lazy=True,
    hoistable=True,
)

# Note [Transposing a recurrence]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The forward linrec is y = L b with L lower triangular, L_ij = a_{j+1} * ... * a_i (j <= i).
# Its transpose L^T sums over i >= j: g_j = ct_j + a_{j+1} * g_{j+1}, which is the reverse
# linrec of ct with the same coefficients a (a_{j+1} links step j+1 back to step j, as a_i links
# i to i-1 going forward). So the cotangent of b is linrec(a, ct) in the other direction, and
# the cotangent of a_i is the cotangent g_i of y_i times the y it multiplied: forward
# g_i * y_{i-1}; reverse (where a_i multiplies y_i in y_{i-1}) g_{i-1} * y_i. Both directions
# are one primitive with a flag, so differentiating again needs nothing new.
