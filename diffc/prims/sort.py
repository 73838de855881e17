"""Sorting: `argsort` along the last axis, a stable merge sort per row in native code. The
built-ins sort, top_k and permutation are written with it (specialise/builtins.py): the values
of a sort are a gather of x through the permutation, so their derivative scatters the
cotangent back through it, and argsort itself has none (nondiff)."""

from __future__ import annotations

from ..errors import ShapeError
from ..lower.emit import I64
from ..typesys import DType, TensorType
from .core import primitive


def _argsort_shape(in_types, descending):
    (t,) = in_types
    if t.rank == 0 or t.dtype is DType.BOOL:
        raise ShapeError(f"argsort needs an array of numbers, got {t}")
    return [t.with_dtype(DType.I64)]


def _goes_first(em, dt, descending):
    """goes_first(r, l): whether r must be placed before l, which came earlier (a strict order,
    so that equal keys keep their order: the sort is stable). NaN is larger than every number:
    last in an ascending sort (as NumPy's), first in a descending one (as argmax counts it)."""
    B = em.b

    def goes_first(r, l):
        if not dt.is_float:
            return B.icmp_signed(">" if descending else "<", r, l)
        nan_r, nan_l = B.fcmp_unordered("uno", r, r), B.fcmp_unordered("uno", l, l)
        if descending:
            return B.or_(B.fcmp_ordered(">", r, l), B.and_(nan_r, B.not_(nan_l)))
        return B.or_(B.fcmp_ordered("<", r, l), B.and_(nan_l, B.not_(nan_r)))

    return goes_first


def _argsort_lower(em, eqn, ins):
    """A bottom-up merge sort of each row's (key, index) pairs, in ceil(log2 n) passes between
    two buffers; each pass merges neighbouring sorted runs of a width that doubles. The merge
    is branch-free (selects), as the comparisons of random keys are unpredictable.

        for each row:  keys0, ids0 = row, 0..n-1
          for width in 1, 2, 4, ... < n (unrolled: n is known):
            for lo in 0, 2 width, ...:  merge [lo, mid) and [mid, hi) into the other buffers
          out row = ids of the last buffer written
    """
    (x,) = ins
    t = eqn.inputs[0].type
    dt, n = t.dtype, t.shape[-1]
    descending = eqn.params["descending"]
    out = em.result(eqn.outs[0])
    keys = [em.alloc(TensorType(dt, (n,))) for _ in range(2)]
    ids = [em.alloc(TensorType(DType.I64, (n,))) for _ in range(2)]
    goes_first = _goes_first(em, dt, descending)
    B = em.b
    widths = []
    while (1 << len(widths)) < n:
        widths.append(1 << len(widths))
    i_slot, j_slot = em.alloca(I64), em.alloca(I64)  # the next unmerged element of each run

    def smaller(a, b):
        return B.select(B.icmp_signed("<", a, b), a, b)

    def merge_pass(src, dst, w):
        ks, is_, kd, id_ = keys[src], ids[src], keys[dst], ids[dst]

        def pair(p):
            lo = B.mul(p, em.i64(2 * w))
            mid = smaller(B.add(lo, em.i64(w)), em.i64(n))
            hi = smaller(B.add(lo, em.i64(2 * w)), em.i64(n))
            B.store(lo, i_slot)
            B.store(mid, j_slot)

            def one(s):
                k = B.add(lo, s)
                i, j = B.load(i_slot), B.load(j_slot)
                ic, jc = smaller(i, em.i64(n - 1)), smaller(j, em.i64(n - 1))  # in bounds when a run is done
                ki, kj = em.load(ks, [ic]), em.load(ks, [jc])
                left_done = B.icmp_signed(">=", i, mid)
                take_right = B.and_(B.icmp_signed("<", j, hi), B.or_(left_done, goes_first(kj, ki)))
                em.store(kd, [k], B.select(take_right, kj, ki))
                em.store(id_, [k], B.select(take_right, em.load(is_, [jc]), em.load(is_, [ic])))
                step = B.zext(take_right, I64)
                B.store(B.add(j, step), j_slot)
                B.store(B.add(i, B.sub(em.i64(1), step)), i_slot)

            em.loop(B.sub(hi, lo), one, "ms")

        em.loop((n + 2 * w - 1) // (2 * w), pair, "mp")

    def row(o):
        em.loop(n, lambda j: (em.store(keys[0], [j], em.read(x, list(o) + [j])), em.store(ids[0], [j], j)), "mi")
        for p, w in enumerate(widths):
            merge_pass(p % 2, (p + 1) % 2, w)
        last = ids[len(widths) % 2]
        em.loop(n, lambda j: em.store(out, list(o) + [j], em.load(last, [j])), "mo")

    em.loop_nest(t.shape[:-1], row, "so")
    return [out]


argsort_p = primitive(
    "argsort",
    shape=_argsort_shape,
    lower=_argsort_lower,
    nondiff=True,
    reads_lazy=True,
    hoistable=True,
)
