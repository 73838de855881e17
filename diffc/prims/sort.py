"""Sorting: `argsort` along the last axis, a stable merge sort per row in native code. The
built-ins sort, top_k and permutation are written with it (specialise/builtins.py): the values
of a sort are a gather of x through the permutation, so their derivative scatters the
cotangent back through it, and argsort itself has none (nondiff)."""

from __future__ import annotations

from ..errors import ShapeError
from ..lower.emit import I64
from ..typesys import DType, TensorType
from .core import primitive

RUN = 16  # runs sorted by insertion before the merges (See _argsort_lower)


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
    """A bottom-up merge sort of each row's (key, index) pairs: runs of RUN elements sorted by
    insertion, then ceil(log2(n / RUN)) passes between two buffers, each merging neighbouring
    sorted runs of a width that doubles. The merge is branch-free (selects), as the
    comparisons of random keys are unpredictable.

        for each row:  keys0, ids0 = row, 0..n-1;  insertion-sort each run of RUN
          for width in RUN, 2 RUN, 4 RUN, ... < n (unrolled: n is known):
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
    while RUN << len(widths) < n:
        widths.append(RUN << len(widths))
    # the next element of each run from the front, and from the back
    i_slot, j_slot, i_back, j_back = (em.alloca(I64) for _ in range(4))

    def smaller(a, b):
        return B.select(B.icmp_signed("<", a, b), a, b)

    def larger(a, b):
        return B.select(B.icmp_signed(">", a, b), a, b)

    def merge_pass(src, dst, w):
        """Merge the runs [lo, mid) and [mid, hi) from both ends at once: the front takes the
        first half of the merged order, the back the rest, so that each step runs two
        independent chains of load, compare and select (one chain is the merge's bound)."""
        ks, is_, kd, id_ = keys[src], ids[src], keys[dst], ids[dst]

        def take(right, ic, jc, k):
            em.store(kd, [k], B.select(right, em.load(ks, [jc]), em.load(ks, [ic])))
            em.store(id_, [k], B.select(right, em.load(is_, [jc]), em.load(is_, [ic])))
            return B.zext(right, I64)

        def front(lo, mid, hi, s):
            i, j = B.load(i_slot), B.load(j_slot)
            ic, jc = smaller(i, em.i64(n - 1)), smaller(j, em.i64(n - 1))  # in bounds when a run is done
            right = B.and_(
                B.icmp_signed("<", j, hi),
                B.or_(B.icmp_signed(">=", i, mid), goes_first(em.load(ks, [jc]), em.load(ks, [ic]))),
            )
            step = take(right, ic, jc, B.add(lo, s))
            B.store(B.add(j, step), j_slot)
            B.store(B.add(i, B.sub(em.i64(1), step)), i_slot)

        def back(lo, mid, hi, s):
            """The last of the rest: the left run's tail only if it must go after the right's."""
            i, j = B.load(i_back), B.load(j_back)
            ic, jc = larger(i, em.i64(0)), larger(j, em.i64(0))
            left = B.and_(
                B.icmp_signed(">=", i, lo),
                B.or_(B.icmp_signed("<", j, mid), goes_first(em.load(ks, [jc]), em.load(ks, [ic]))),
            )
            step = take(B.not_(left), ic, jc, B.sub(B.sub(hi, em.i64(1)), s))
            B.store(B.sub(j, step), j_back)
            B.store(B.sub(i, B.sub(em.i64(1), step)), i_back)

        def pair(p):
            lo = B.mul(p, em.i64(2 * w))
            mid = smaller(B.add(lo, em.i64(w)), em.i64(n))
            hi = smaller(B.add(lo, em.i64(2 * w)), em.i64(n))
            B.store(lo, i_slot)
            B.store(mid, j_slot)
            B.store(B.sub(mid, em.i64(1)), i_back)
            B.store(B.sub(hi, em.i64(1)), j_back)
            length = B.sub(hi, lo)
            half = B.ashr(length, em.i64(1))

            def both(s):
                front(lo, mid, hi, s)
                back(lo, mid, hi, s)

            em.loop(half, both, "ms")
            em.loop(B.sub(length, B.add(half, half)), lambda s: back(lo, mid, hi, B.add(half, s)), "mo")

        em.loop((n + 2 * w - 1) // (2 * w), pair, "mp")

    def insertion_sort(r):
        """Sort keys[0][lo:hi], ids[0][lo:hi] in place, lo = r RUN (a short run: few moves).

        next j:  kj = keys[j];  i = j
          head:  i > lo and goes_first(kj, keys[i - 1]) ? move : put
          move:  keys[i] = keys[i - 1]; i -= 1; br head
          put:   keys[i] = kj
        """
        ks, is_ = keys[0], ids[0]
        lo = B.mul(r, em.i64(RUN))
        hi = smaller(B.add(lo, em.i64(RUN)), em.i64(n))

        def insert(s):
            j = B.add(lo, B.add(s, em.i64(1)))
            kj, ij = em.load(ks, [j]), em.load(is_, [j])
            B.store(j, i_slot)
            head, move, put = em.block("ins.head"), em.block("ins.move"), em.block("ins.put")
            B.branch(head)
            B.position_at_end(head)
            i = B.load(i_slot)
            inside = B.icmp_signed(">", i, lo)
            before = B.select(inside, B.sub(i, em.i64(1)), lo)  # in bounds when i == lo
            B.cbranch(B.and_(inside, goes_first(kj, em.load(ks, [before]))), move, put)
            B.position_at_end(move)
            em.store(ks, [i], em.load(ks, [before]))
            em.store(is_, [i], em.load(is_, [before]))
            B.store(before, i_slot)
            B.branch(head)
            B.position_at_end(put)
            em.store(ks, [i], kj)
            em.store(is_, [i], ij)

        em.loop(B.sub(B.sub(hi, lo), em.i64(1)), insert, "is")

    def row(o):
        em.loop(n, lambda j: (em.store(keys[0], [j], em.read(x, list(o) + [j])), em.store(ids[0], [j], j)), "mi")
        em.loop((n + RUN - 1) // RUN, insertion_sort, "ir")
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
