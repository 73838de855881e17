"""Matrix products: `@` on vectors and matrices, as NumPy's matmul for ranks 1 and 2."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..lower.emit import reg_type
from .core import primitive
from .elementwise import _add, _mul


def _matmul_shape(in_types):
    a, b = in_types
    if a.dtype != b.dtype or not (1 <= a.rank <= 2 and 1 <= b.rank <= 2) or a.shape[-1] != b.shape[0]:
        raise ShapeError(f"`@` of {a} and {b}")
    return [a.with_shape(a.shape[:-1] + b.shape[1:])]


def _matmul_lower(em, eqn, ins):
    """out[i, j] = sum_k a[i, k] * b[k, j], with the i and j axes present only for matrices.
    Loop order i, k, j keeps the innermost loop contiguous in b and out (vectorisable)."""
    a, b = ins
    ta, tb = eqn.inputs[0].type, eqn.inputs[1].type
    out_t = eqn.outs[0].type
    dt = out_t.dtype
    K = ta.shape[-1]
    rows = ta.shape[0] if ta.rank == 2 else None
    cols = tb.shape[1] if tb.rank == 2 else None

    def a_at(i, k):
        return em.load(a, [i, k] if rows is not None else [k])

    def b_at(k, j):
        return em.load(b, [k, j] if cols is not None else [k])

    if out_t.rank == 0:  # dot
        acc = em.alloca(reg_type(dt))
        em.b.store(em.const(dt, 0), acc)
        em.loop(K, lambda k: em.b.store(_add(em, dt, em.b.load(acc), _mul(em, dt, a_at(None, k), b_at(k, None))), acc))
        return [em.b.load(acc)]
    out = em.alloc(out_t)
    zero = em.const(dt, 0)
    em.loop_nest(out_t.shape, lambda idx: em.store(out, idx, zero), "mz")

    def out_idx(i, j):
        return [x for x in (i, j) if x is not None]

    def per_row(i):
        def per_k(k):
            aik = a_at(i, k)
            if cols is None:
                idx = out_idx(i, None)
                em.store(out, idx, _add(em, dt, em.load(out, idx), _mul(em, dt, aik, b_at(k, None))))
            else:

                def per_col(j):
                    idx = out_idx(i, j)
                    em.store(out, idx, _add(em, dt, em.load(out, idx), _mul(em, dt, aik, b_at(k, j))))

                em.loop(cols, per_col, "mj")

        em.loop(K, per_k, "mk")

    if rows is None:
        per_row(None)
    else:
        em.loop(rows, per_row, "mi")
    return [out]


matmul_p = primitive(
    "matmul", shape=lambda ts: _matmul_shape(ts), lower=_matmul_lower, fold=lambda a, b: [np.matmul(a, b)]
)


# --- derivative rules ---------------------------------------------------------------------------

from . import ops  # noqa: E402


def _outer(b, u, v):
    return ops.mul(b, ops.reshape(b, u, u.type.shape + (1,)), ops.reshape(b, v, (1,) + v.type.shape))


def _matmul_vjp(b, p, ins, outs, cts):
    x, y = ins
    g = cts[0]
    rx, ry = x.type.rank, y.type.rank
    if rx == 1 and ry == 1:
        gx, gy = ops.mul(b, g, y), ops.mul(b, g, x)
    elif rx == 2 and ry == 1:
        gx, gy = _outer(b, g, y), ops.matmul(b, g, x)
    elif rx == 1 and ry == 2:
        gx, gy = ops.matmul(b, y, g), _outer(b, x, g)
    else:
        gx, gy = ops.matmul(b, g, ops.transpose(b, y, (1, 0))), ops.matmul(b, ops.transpose(b, x, (1, 0)), g)
    fl = [t.type.dtype.is_float for t in ins]
    return [gx if fl[0] else None, gy if fl[1] else None]


def _matmul_jvp(b, p, ins, outs, ts):
    x, y = ins
    tx, ty = ts
    terms = []
    if tx is not None:
        terms.append(ops.matmul(b, tx, y))
    if ty is not None:
        terms.append(ops.matmul(b, x, ty))
    if not terms:
        return [None]
    return [terms[0] if len(terms) == 1 else ops.add(b, terms[0], terms[1])]


matmul_p.vjp, matmul_p.jvp = _matmul_vjp, _matmul_jvp
