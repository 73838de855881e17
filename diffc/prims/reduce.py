"""Reductions over axes: sum, prod, max, min, and argmax along one axis."""

from __future__ import annotations

from math import prod

import numpy as np
from llvmlite import ir

from ..errors import ShapeError
from ..lower.emit import PARALLEL_MIN, Arr, Lazy, reg_type
from ..typesys import DType, TensorType
from . import ops
from .core import Kind, primitive
from .elementwise import _add, _maximum, _minimum, _mul, eq_p
from .shape import iota_p


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


def _memory_order(x, axes):
    """`axes` in the order x's memory walks them (by decreasing stride, for a transposed view);
    as given for a value computed on the fly or a scalar."""
    if not isinstance(x, Arr):
        return list(axes)
    return sorted(axes, key=lambda k: -x.strides[k])


def _walk(em, x, t, axes, body, name):
    """Loops over the indices of `axes` of t (in x's memory order); body(dict axis -> index)."""
    order = _memory_order(x, axes)
    em.loop_nest([t.shape[a] for a in order], lambda idx: body(dict(zip(order, idx))), name)


def _element(em, x, t, kept, out_idx, at):
    """x at the kept axes' out_idx and the other axes' indices in `at` (axis -> index)."""
    full = dict(at)
    full.update(zip(kept, out_idx))
    return em.read(x, [full[k] for k in range(t.rank)])


def _merged(t, axes, x, full=(), kept=()):
    """(t, axes, x, full, kept) with each run of adjacent axes that are all kept or all reduced
    and that x, the views `full` (of t's shape) and `kept` (of the kept axes' shape) each step
    through as one stretch of memory merged into one axis: fewer, longer loops that LLVM
    vectorises (a 2x2 pool's [b, c, h, 2, w, 2] becomes [b * c * h, 2, w * 2]). A reduced
    group's row-major positions are unchanged. Nothing merges when x is computed on the fly."""
    axes = tuple(axes)
    if not isinstance(x, Arr) or t.rank < 2:
        return t, axes, x, list(full), list(kept)
    kept_axes = [k for k in range(t.rank) if k not in axes]

    def joins(v, j):  # whether view v steps through its axes j and j + 1 as one
        if isinstance(v, Arr):
            return v.strides[j] == v.type.shape[j + 1] * v.strides[j + 1]
        return not isinstance(v, Lazy) or v.uniform

    groups = [[0]]
    for k in range(1, t.rank):
        side = (k in axes) == (k - 1 in axes)
        ok = side and all(joins(v, k - 1) for v in [x, *full])
        if ok and k not in axes:
            ok = all(joins(v, kept_axes.index(k - 1)) for v in kept)
        if ok:
            groups[-1].append(k)
        else:
            groups.append([k])
    if len(groups) == t.rank:
        return t, axes, x, list(full), list(kept)
    shape = tuple(int(np.prod([t.shape[k] for k in grp])) for grp in groups)
    new_axes = tuple(i for i, grp in enumerate(groups) if grp[0] in axes)
    kept_groups = [grp for grp in groups if grp[0] not in axes]

    def view(v, grps, positions):
        if not isinstance(v, Arr | Lazy) or (isinstance(v, Lazy) and not v.uniform):  # (nothing of it merged)
            return v
        new_t = v.type.with_shape(tuple(int(np.prod([v.type.shape[positions[k]] for k in grp])) for grp in grps))
        if isinstance(v, Arr):
            return Arr(v.ptr, v.offset, tuple(v.strides[positions[grp[-1]]] for grp in grps), new_t, v.owned)
        return Lazy(new_t, v.at, uniform=True)

    same = {k: k for k in range(t.rank)}
    in_kept = {k: i for i, k in enumerate(kept_axes)}
    return (
        t.with_shape(shape),
        new_axes,
        view(x, groups, same),
        [view(v, groups, same) for v in full],
        [view(v, kept_groups, in_kept) for v in kept],
    )


def _reduce_lower(kind, combine):
    def lower(em, eqn, ins):
        (x,) = ins
        out_t = eqn.outs[0].type
        result = em.result(eqn.outs[0]) if out_t.rank else None
        t, axes, x, _, views = _merged(eqn.inputs[0].type, eqn.params["axes"], x, kept=[result] if result else [])
        dt = t.dtype
        kept = [k for k in range(t.rank) if k not in axes]

        def outer(out_idx):
            add, result = _accumulator(em, kind, combine, dt)  # (own slots: the rows may run on several threads)
            _walk(em, x, t, axes, lambda at: add(_element(em, x, t, kept, out_idx, at)), "red")
            return result()

        if out_t.rank == 0:
            work = t.size * (x.work if isinstance(x, Lazy) else 1)
            if t.rank and work >= PARALLEL_MIN and max(t.shape) >= 2:
                return [_in_blocks(em, kind, combine, x, t)]
            return [outer([])]
        (out,) = views
        if t.rank - 1 in kept:  # the contiguous axis is kept: walk x in memory order (See below)
            em.loop_nest(out.type.shape, lambda idx: em.store(out, idx, em.const(dt, _identity(dt, kind))), "ri")
            per_element = _ELEMENTWISE[kind]

            def one(at):
                o = [at[k] for k in kept]
                em.store(out, o, per_element(em, dt, em.load(out, o), _element(em, x, t, kept, o, at)))

            _walk(em, x, t, range(t.rank), one, "rw")
            return [result]
        em.nest(out.type.shape, lambda idx: em.store(out, idx, outer(idx)), "ro", work=t.size // max(out.type.size, 1))
        return [result]

    return lower


def _accumulator(em, kind, combine, dt):
    """(add(v), result()) over slots of their own: combine from the identity, with max/min of
    floats NaN once they saw one."""
    b = em.b
    acc = em.alloca(reg_type(dt))
    nan_seen = em.alloca(ir.IntType(1)) if kind in ("max", "min") and dt.is_float else None
    b.store(em.const(dt, _identity(dt, kind)), acc)
    if nan_seen is not None:
        b.store(ir.Constant(ir.IntType(1), 0), nan_seen)

    def add(v):
        if nan_seen is not None:
            b.store(b.or_(b.load(nan_seen), b.fcmp_unordered("uno", v, v)), nan_seen)
        b.store(combine(em, dt, b.load(acc), v), acc)

    def result():
        if nan_seen is None:
            return b.load(acc)
        return b.select(b.load(nan_seen), em.const(dt, np.nan), b.load(acc))

    return add, result


BLOCKS = 64  # the pieces a large reduction to one number is cut into (See _in_blocks)


def _in_blocks(em, kind, combine, x, t):
    """A reduction of all of x (of type t) to one number, in BLOCKS pieces along the axis that
    is outermost in memory, which threads may compute at once, then over the pieces' results
    in order. The pieces are the same on any number of threads, and so is the result."""
    dt, b = t.dtype, em.b
    axis = _memory_order(x, range(t.rank))[0]
    rows = t.shape[axis]
    per = -(-rows // min(rows, BLOCKS))
    blocks = -(-rows // per)
    partial = em.alloc(TensorType(dt, (blocks,)))
    others = [k for k in range(t.rank) if k != axis]

    def block(k):
        start, count = em.block_of(k, per, rows)
        add, result = _accumulator(em, kind, combine, dt)

        def row(i):
            at = {axis: b.add(start, i)}
            _walk(em, x, t, others, lambda rest: add(_element(em, x, t, [], [], {**at, **rest})), "rw")

        em.loop(count, row, "rr")
        em.store(partial, [k], result())

    em.parallel_loop(blocks, block, "rb")
    add, result = _accumulator(em, kind, combine, dt)
    em.loop(blocks, lambda k: add(em.load(partial, [k])), "rp")
    return result()


# A reduction that keeps the last (contiguous) axis, such as a column sum sum(x, axis=0) or a
# max over a middle axis, walks all of x in memory order, combining each element into its
# result element: the inner loop is contiguous and vectorises, where one accumulator per
# result element would read x with a stride (gathers, and a long loop-carried chain), and a
# loop over the reduced axes outside the kept ones would sweep the result once per reduced
# index. Each result element still combines its group in the same order as before (for a
# transposed view: in memory order); max and min propagate NaN per element.


def _np_reduce(fn):
    return lambda x, axes: [fn(x, axis=tuple(axes))]


_COMBINES = {}  # each reduction primitive -> (its kind, its combine)


def _reduction(kind, combine, npfn, vjp, jvp, threads_cotangents=False):
    p = primitive(
        f"reduce_{kind}",
        shape=_reduce_shape,
        kind=Kind.REDUCTION,
        lower=_reduce_lower(kind, combine),
        vjp=vjp,
        jvp=jvp,
        fold=_np_reduce(npfn),
        reads_lazy=True,
        keeps_zeros=True,
        threads_cotangents=threads_cotangents,
        lower_together=_reduce_together,
    )
    _COMBINES[p] = (kind, combine)
    return p


def _reduce_together(em, eqns, ins):
    """Reductions of one value over the same axes that leave the last axis (the max and the sum
    of each row), in one walk of it: each element is read once, into an accumulator of each
    (a sum may round differently in the last bits than alone: LLVM reorders it as it
    vectorises the loop, which now does more than that sum). None for a reduction to one number or one that
    keeps the last axis: those walk the value in their own ways (_in_blocks, the memory-order
    walk), one at a time."""
    (x,) = ins[0]
    t0, axes = eqns[0].inputs[0].type, eqns[0].params["axes"]
    if len(axes) == t0.rank or t0.rank - 1 not in axes:
        return None
    results = [em.result(e.outs[0]) for e in eqns]
    t, axes, x, _, views = _merged(t0, axes, x, kept=results)
    kept = [k for k in range(t.rank) if k not in axes]
    how = [_COMBINES[e.prim] for e in eqns]

    def rows(out_idx):
        accs = [_accumulator(em, kind, combine, t.dtype) for kind, combine in how]

        def one(at):
            v = _element(em, x, t, kept, out_idx, at)
            for add, _ in accs:
                add(v)

        _walk(em, x, t, axes, one, "red")
        for out, (_, result) in zip(views, accs):
            em.store(out, out_idx, result())

    em.nest(views[0].type.shape, rows, "ro", work=len(eqns) * t.size // max(views[0].type.size, 1))
    return [[r] for r in results]


def _reassociable(op):
    """A float sum or product that LLVM may reorder, so that it vectorises the reduction (the
    result may differ from a left-to-right sum in the last bits, as NumPy's pairwise sum does)."""

    def combine(em, dt, a, b):
        if dt.is_float:
            return getattr(em.b, op)(a, b, flags=("reassoc", "nsz"))
        return (_add if op == "fadd" else _mul)(em, dt, a, b)

    return combine


def _extreme(cmpop, int_combine):
    """Float max/min as a compare and select that may ignore NaN (one vmaxpd per vector, and
    LLVM vectorises it as a reduction) while a separate flag records whether a NaN was seen, so
    that the result still propagates NaN as NumPy's does (llvm.maximum costs five instructions
    in the loop-carried chain). Integers compare and select."""

    def combine(em, dt, acc, v):
        if dt.is_float:
            flags = ("nnan", "nsz")
            return em.b.select(em.b.fcmp_ordered(cmpop, v, acc, flags=flags), v, acc, flags=flags)
        return int_combine(em, dt, acc, v)

    return combine


_ELEMENTWISE = {"sum": _add, "prod": _mul, "max": _maximum, "min": _minimum}


def _argmax_lower(em, eqn, ins):
    """The first index of the largest element along `axis` (NaN counts as largest, as in
    NumPy), in two passes that LLVM vectorises: the largest value (with a NaN flag), then the
    smallest index that holds it (or a NaN), as a min-reduction of `i if x[i] is it else n`. One
    pass carrying the best value and its index is a chain of selects that does not vectorise
    (30x slower on long rows)."""
    (x,) = ins
    axis = eqn.params["axis"]
    t = eqn.inputs[0].type
    out_t = eqn.outs[0].type
    dt = t.dtype
    n = t.shape[axis]
    best, nan_seen, first = em.alloca(reg_type(dt)), em.alloca(ir.IntType(1)), em.alloca(ir.IntType(64))
    take_max = _extreme(">", _maximum)

    def element(out_idx, i):
        """x at the kept axes' out_idx and index i along `axis`."""
        full = list(out_idx)
        full.insert(axis, i)
        return em.read(x, full)

    def outer(out_idx):
        def at(i):
            return element(out_idx, i)

        em.b.store(em.const(dt, _identity(dt, "max")), best)
        em.b.store(ir.Constant(ir.IntType(1), 0), nan_seen)

        def largest(i):
            v = at(i)
            if dt.is_float:
                em.b.store(em.b.or_(em.b.load(nan_seen), em.b.fcmp_unordered("uno", v, v)), nan_seen)
            em.b.store(take_max(em, dt, em.b.load(best), v), best)

        em.loop(n, largest, "am")
        m, any_nan = em.b.load(best), em.b.load(nan_seen)
        em.b.store(em.i64(n), first)

        def earliest(i):
            v = at(i)
            if dt.is_float:
                hit = em.b.select(any_nan, em.b.fcmp_unordered("uno", v, v), em.b.fcmp_ordered("==", v, m))
            else:
                hit = em.b.icmp_signed("==", v, m)
            candidate, cur = em.b.select(hit, i, em.i64(n)), em.b.load(first)
            em.b.store(em.b.select(em.b.icmp_signed("<", candidate, cur), candidate, cur), first)

        em.loop(n, earliest, "ai")
        return em.b.load(first)

    if out_t.rank == 0:
        return [outer([])]
    out = em.result(eqn.outs[0])
    if axis != t.rank - 1:  # the contiguous axis is kept: compare whole rows (as in _reduce_lower)
        values = em.alloc(out_t.with_dtype(dt))

        def start(out_idx):
            em.store(values, out_idx, element(out_idx, em.i64(0)))
            em.store(out, out_idx, em.i64(0))

        em.loop_nest(out_t.shape, start, "as")

        def row(i):
            def one(out_idx):
                v, b = element(out_idx, i), em.load(values, out_idx)
                if dt.is_float:  # larger, or the first NaN
                    nan_v, nan_b = em.b.fcmp_unordered("uno", v, v), em.b.fcmp_unordered("uno", b, b)
                    better = em.b.or_(em.b.fcmp_ordered(">", v, b), em.b.and_(nan_v, em.b.not_(nan_b)))
                else:
                    better = em.b.icmp_signed(">", v, b)
                em.store(values, out_idx, em.b.select(better, v, b))
                em.store(out, out_idx, em.b.select(better, i, em.load(out, out_idx)))

            em.loop_nest(out_t.shape, one, "ak")

        em.loop(n, row, "ar")
        return [out]
    em.loop_nest(out_t.shape, lambda idx: em.store(out, idx, outer(idx)), "ao")
    return [out]


argmax_p = primitive(
    "argmax",
    shape=lambda ts, axis: [TensorType(DType.I64, tuple(d for k, d in enumerate(ts[0].shape) if k != axis))],
    lower=_argmax_lower,
    fold=lambda x, axis: [np.argmax(x, axis=axis)],
    nondiff=True,
    reads_lazy=True,
    hoistable=True,
)


# --- derivative rules ---------------------------------------------------------------------------


def _keepdims(t, axes):
    return tuple(1 if k in axes else d for k, d in enumerate(t.shape))


def _spread(b, g, x, axes):
    """g (the reduced shape) broadcast back over the reduced axes of x."""
    return ops.broadcast(b, ops.reshape(b, g, _keepdims(x.type, axes)), x.type.shape)


def _sum_vjp(ctx, p, ins, outs, cts):
    b = ctx.b
    return [_spread(b, cts[0], ins[0], p["axes"])]


def _sum_jvp(ctx, p, ins, outs, ts):
    b = ctx.b
    return [None if ts[0] is None else ops.reduce_sum(b, ts[0], p["axes"])]


def _prod_partial(b, x, axes):
    """d prod(x) / d x_i = the product of the other elements, exact where x has zeros (out / x
    would be 0 / 0). With p the product of a group's non-zero elements, n its number of zeros
    and s the sum of its zero elements (0, but its derivative picks them):
        x_i != 0:  p / x_i if n == 0,  p / x_i * s if n == 1,  else 0
        x_i == 0:  p if n == 1,  p * (s - x_i) if n == 2,  else 0
    The factors s and s - x_i are 0 and make the second derivative exact at zeros too."""
    axes = tuple(axes)
    zero, one = ops.like(b, x, 0.0), ops.like(b, x, 1.0)
    is_zero = b.emit1(eq_p, [x, zero])
    nonzero = ops.select(b, is_zero, one, x)
    p = _spread(b, b.emit1(reduce_prod_p, [nonzero], axes=axes), x, axes)
    n = _spread(b, ops.reduce_sum(b, ops.convert(b, is_zero, x.type.dtype), axes), x, axes)
    s = _spread(b, ops.reduce_sum(b, ops.select(b, is_zero, x, zero), axes), x, axes)

    def by_count(*cases):  # cases[k]: the partial when n == k; 0 beyond
        out = zero
        for k in reversed(range(len(cases))):
            out = ops.select(b, b.emit1(eq_p, [n, ops.like(b, x, float(k))]), cases[k], out)
        return out

    others = ops.div(b, p, nonzero)
    at_nonzero = by_count(others, ops.mul(b, others, s))
    at_zero = by_count(zero, p, ops.mul(b, p, ops.sub(b, s, x)))
    return ops.select(b, is_zero, at_zero, at_nonzero)


def _prod_vjp(ctx, p, ins, outs, cts):
    b = ctx.b
    x = ins[0]
    return [ops.mul(b, _spread(b, cts[0], x, p["axes"]), _prod_partial(b, x, p["axes"]))]


def _prod_jvp(ctx, p, ins, outs, ts):
    b = ctx.b
    if ts[0] is None:
        return [None]
    return [ops.reduce_sum(b, ops.mul(b, ts[0], _prod_partial(b, ins[0], p["axes"])), p["axes"])]


def _first_extreme_mask(b, x, axes, kind):
    """A bool mask of x with True at the first maximum (or minimum) of each reduced group,
    the element argmax picks: the whole cotangent goes there at a tie."""
    t = x.type
    if len(axes) == 1:  # argmax along the axis itself: no transposes (a strided argmax is slow)
        (a,) = axes
        idx = b.emit1(argmax_p, [ops.neg(b, x) if kind == "min" else x], axis=a)
        idx = ops.reshape(b, idx, tuple(1 if k == a else d for k, d in enumerate(t.shape)))
        column = tuple(t.shape[a] if k == a else 1 for k in range(t.rank))
        pos = ops.reshape(b, b.emit1(iota_p, [], n=t.shape[a]), column)
        return b.emit1(eq_p, [idx, pos])
    kept = [k for k in range(t.rank) if k not in axes]
    perm = kept + list(axes)
    xt = ops.transpose(b, x, perm)
    group = 1
    for a in axes:
        group *= t.shape[a]
    flat = ops.reshape(b, xt, tuple(t.shape[k] for k in kept) + (group,))
    if kind == "min":
        flat = ops.neg(b, flat)
    idx = b.emit1(argmax_p, [flat], axis=len(kept))
    idx = ops.reshape(b, idx, idx.type.shape + (1,))
    mask = b.emit1(eq_p, [idx, b.emit1(iota_p, [], n=group)])
    mask = ops.reshape(b, mask, xt.type.shape)
    inv = [0] * len(perm)
    for k, q in enumerate(perm):
        inv[q] = k
    return ops.transpose(b, mask, inv)


def _extreme_vjp(kind):
    """g at each group's first extreme, added to the cotangent of x accumulated so far when
    there is one (threads_cotangents): the sum is written once, the extremes then updated in
    place, instead of a scatter array of x's shape and a pass adding it (a logsumexp's max,
    whose cotangent is zero when it is finite, then costs a pass over g)."""

    def vjp(ctx, p, ins, outs, cts, current):
        x, so_far = ins[0], current[0]
        if so_far is None or so_far.type != x.type.with_dtype(cts[0].type.dtype):
            return [ctx.b.emit1(extreme_scatter_p, [x, cts[0]], axes=tuple(p["axes"]), kind=kind)], ()
        return [ctx.b.emit1(extreme_scatter_p, [x, cts[0], so_far], axes=tuple(p["axes"]), kind=kind)], (0,)

    return vjp


def _extreme_jvp(kind):
    def jvp(ctx, p, ins, outs, ts):
        b = ctx.b
        if ts[0] is None:
            return [None]
        m = _first_extreme_mask(b, ins[0], p["axes"], kind)
        return [ops.reduce_sum(b, ops.select(b, m, ts[0], ops.like(b, ts[0], 0.0)), p["axes"])]

    return jvp


# --- extreme_scatter: max and min's cotangent in one op -----------------------------------------


def _better(em, dt, kind, v, b):
    """Whether v displaces b as a group's first extreme so far: larger (smaller for min), or
    the first NaN (NaN counts as the extreme, as in argmax and argmin)."""
    op = ">" if kind == "max" else "<"
    if not dt.is_float:
        return em.b.icmp_signed(op, v, b)
    nan_v, nan_b = em.b.fcmp_unordered("uno", v, v), em.b.fcmp_unordered("uno", b, b)
    return em.b.or_(em.b.fcmp_ordered(op, v, b), em.b.and_(nan_v, em.b.not_(nan_b)))


def _flat(em, t, axes, at):
    """The row-major position of the reduced indices `at` in their group."""
    flat = em.i64(0)
    for a in axes:
        flat = em.b.add(em.b.mul(flat, em.i64(t.shape[a])), at[a])
    return flat


SMALL_GROUP = 16  # groups up to this size find their extreme in straight-line code


def _extreme_scatter_lower(em, eqn, ins):
    """x's shape with g at the first extreme of each group and 0 elsewhere (argmax's pick), the
    cotangent of max and min, in place of argmax + a mask + a select over x (5-9x the forward
    on 2x2 max-pooling); with a third input (max's rule threads the cotangent so far), that
    input written once and g added at the extremes. When the reduced axes include the last one,
    each group finds its extreme in registers in passes LLVM vectorises (the extreme with a NaN
    flag, then the first position holding it), then writes its cotangent row; otherwise x is
    walked in memory order twice, keeping the best value and its position per group in buffers
    of g's shape."""
    x, g = ins[:2]
    kind, out_t = eqn.params["kind"], eqn.outs[0].type
    if em.fuse_next and len(ins) == 2 and out_t.size and out_t.rank - 1 in eqn.params["axes"]:
        return [_lazy_picks(em, kind, x, g, out_t, eqn.params["axes"])]
    result = em.result(eqn.outs[0])
    if out_t.size == 0:
        return [result]
    if len(ins) == 3:
        em.copy_into(result, ins[2])
        _add_at_extremes(em, kind, x, g, result, eqn.inputs[0].type, eqn.params["axes"])
        return [result]
    t, axes, x, (out,), (g,) = _merged(eqn.inputs[0].type, eqn.params["axes"], x, full=[result], kept=[g])
    kept = [k for k in range(t.rank) if k not in axes]
    group = 1
    for a in axes:
        group *= t.shape[a]
    zero = em.const(out_t.dtype, 0)

    def write(o, first):
        def put(at):
            full = dict(at)
            full.update(zip(kept, o))
            hit = em.b.icmp_signed("==", _flat(em, t, axes, at), first)
            em.store(out, [full[k] for k in range(t.rank)], em.b.select(hit, em.read(g, o), zero))

        return put

    if t.rank - 1 in kept:
        g_t = t.with_shape(tuple(t.shape[k] for k in kept))
        best, where = em.alloc(g_t), em.alloc(g_t.with_dtype(DType.I64))
        _track_extremes(em, kind, x, t, axes, kept, best, where)

        def put(at):
            o = [at[k] for k in kept]
            write(o, em.load(where, o))(at)

        _walk(em, x, t, range(t.rank), put, "xw")
        return [result]

    if group <= SMALL_GROUP:  # (a pool's window): straight-line code per group, no inner loops
        positions = _positions(em, t, axes)

        def pick(o):
            first = _small_group_first(em, kind, x, t, kept, o, positions)
            for at in positions:
                write(o, first)(at)

        em.loop_nest([t.shape[k] for k in kept], pick, "xs")
        return [result]

    first = em.alloca(ir.IntType(64))

    def per_group(o):
        em.b.store(em.i64(group), first)  # (none: a group whose g is +0.0 is all +0.0)
        with em.b.if_then(em.b.not_(_zero_bits(em, em.read(g, o)))):
            _first_extreme(em, kind, x, t, axes, kept, o, group, first)
        _walk(em, x, t, axes, write(o, em.b.load(first)), "xw")

    em.loop_nest([t.shape[k] for k in kept], per_group, "xo")
    return [result]


def _first_extreme(em, kind, x, t, axes, kept, o, group, first):
    """Stores in the slot `first` the row-major position of group o's first extreme (NaN
    first), in two passes LLVM vectorises: the extreme with a NaN flag, then the first
    position holding it."""
    dt = t.dtype
    extreme, nan_seen = em.alloca(reg_type(dt)), em.alloca(ir.IntType(1))
    take = _extreme(">" if kind == "max" else "<", _maximum if kind == "max" else _minimum)
    em.b.store(em.const(dt, _identity(dt, kind)), extreme)
    em.b.store(ir.Constant(ir.IntType(1), 0), nan_seen)

    def find(at):
        v = _element(em, x, t, kept, o, at)
        if dt.is_float:
            em.b.store(em.b.or_(em.b.load(nan_seen), em.b.fcmp_unordered("uno", v, v)), nan_seen)
        em.b.store(take(em, dt, em.b.load(extreme), v), extreme)

    _walk(em, x, t, axes, find, "xe")
    m, any_nan = em.b.load(extreme), em.b.load(nan_seen)
    em.b.store(em.i64(group), first)

    def earliest(at):
        v = _element(em, x, t, kept, o, at)
        if dt.is_float:
            hit = em.b.select(any_nan, em.b.fcmp_unordered("uno", v, v), em.b.fcmp_ordered("==", v, m))
        else:
            hit = em.b.icmp_signed("==", v, m)
        candidate, cur = em.b.select(hit, _flat(em, t, axes, at), em.i64(group)), em.b.load(first)
        em.b.store(em.b.select(em.b.icmp_signed("<", candidate, cur), candidate, cur), first)

    _walk(em, x, t, axes, earliest, "xf")


def _zero_bits(em, v):
    """Whether the float v is +0.0 exactly: a group given it is +0.0 everywhere wherever its
    extreme is, so it is not searched (a -0.0 or a NaN is put at the extreme)."""
    width = 32 if isinstance(v.type, ir.FloatType) else 64
    return em.b.icmp_unsigned("==", em.b.bitcast(v, ir.IntType(width)), ir.Constant(ir.IntType(width), 0))


def _add_at_extremes(em, kind, x, g, out, xt, axes):
    """out at each group's first extreme += g, for the groups whose g is not +0.0 (adding +0.0
    changes nothing but the sign of a -0.0). When the reduced axes leave the last one, x is
    walked once in memory order, keeping the best value and its position per group."""
    t, axes, x, (out,), (g,) = _merged(xt, axes, x, full=[out], kept=[g])
    kept = [k for k in range(t.rank) if k not in axes]
    group = 1
    for a in axes:
        group *= t.shape[a]

    def add_at(o, flat):  # out[o, the reduced indices at row-major position flat] += g[o]
        full = dict(zip(kept, o))
        for a in reversed(axes):
            n = em.i64(t.shape[a])
            full[a], flat = em.b.srem(flat, n), em.b.sdiv(flat, n)
        idx = [full[k] for k in range(t.rank)]
        em.store(out, idx, em.b.fadd(em.load(out, idx), em.read(g, o)))

    def nonzero(o):
        return em.b.not_(_zero_bits(em, em.read(g, o)))

    g_shape = tuple(t.shape[k] for k in kept)
    if t.rank - 1 in kept:
        best, where = em.alloc(t.with_shape(g_shape)), em.alloc(t.with_shape(g_shape).with_dtype(DType.I64))
        _track_extremes(em, kind, x, t, axes, kept, best, where)

        def update(o):
            with em.b.if_then(nonzero(o)):
                add_at(o, em.load(where, o))

        em.loop_nest(g_shape, update, "xu")
        return

    first = em.alloca(ir.IntType(64))

    def per_group(o):
        with em.b.if_then(nonzero(o)):
            _first_extreme(em, kind, x, t, axes, kept, o, group, first)
            add_at(o, em.b.load(first))

    em.loop_nest(g_shape, per_group, "xo")


def _track_extremes(em, kind, x, t, axes, kept, best, where):
    """best[o], where[o] = each group's first extreme and its row-major position, x walked once
    in memory order (for reduced axes that leave the last one)."""
    dt = t.dtype
    em.loop_nest(
        best.type.shape,
        lambda o: (em.store(best, o, em.const(dt, _identity(dt, kind))), em.store(where, o, em.i64(0))),
        "xi",
    )
    # a transposed view is walked in memory order: a tie then goes to the earlier position
    reordered = _memory_order(x, range(t.rank)) != list(range(t.rank))

    def track(at):
        o = [at[k] for k in kept]
        v, b, flat, w = _element(em, x, t, kept, o, at), em.load(best, o), _flat(em, t, axes, at), em.load(where, o)
        better = _better(em, dt, kind, v, b)
        if reordered:
            same = em.b.not_(em.b.or_(better, _better(em, dt, kind, b, v)))
            better = em.b.or_(better, em.b.and_(same, em.b.icmp_signed("<", flat, w)))
        em.store(best, o, em.b.select(better, v, b))
        em.store(where, o, em.b.select(better, flat, w))

    _walk(em, x, t, range(t.rank), track, "xt")


def _positions(em, t, axes) -> list[dict]:
    """The indices of the reduced axes of one group, in row-major order (axis -> i64 constant)."""
    return [dict(zip(axes, map(em.i64, red))) for red in np.ndindex(*[t.shape[a] for a in axes])]


def _small_group_first(em, kind, x, t, kept, o, positions):
    """The row-major position of group o's first extreme, in straight-line code."""
    best, first = _element(em, x, t, kept, o, positions[0]), em.i64(0)
    for i, at in enumerate(positions[1:], 1):
        v = _element(em, x, t, kept, o, at)
        better = _better(em, t.dtype, kind, v, best)
        best, first = em.b.select(better, v, best), em.b.select(better, em.i64(i), first)
    return first


def _lazy_picks(em, kind, x, g, t, axes):
    """extreme_scatter(x, g) read where it is used: each group's first extreme found once (in
    straight-line code for a small group, as a pool's), its position kept in a buffer of g's
    shape; element idx is g's where idx is that position, else 0. For one reader that reads
    each element once (lazy_result): unwindows then adds g at each window's pick with no
    [n, k] array between (Note [Batched maps] in ad/batch.py). Groups along the last axis."""
    kept = [k for k in range(t.rank) if k not in axes]
    where = em.alloc(TensorType(DType.I64, tuple(t.shape[k] for k in kept)))
    group = prod(t.shape[a] for a in axes)
    if group <= SMALL_GROUP:
        positions = _positions(em, t, axes)

        def pick(o):
            em.store(where, o, _small_group_first(em, kind, x, t, kept, o, positions))

    else:

        def pick(o):
            slot = em.alloca(ir.IntType(64))  # (made in the loop: each thread's piece has its own)
            _first_extreme(em, kind, x, t, axes, kept, o, group, slot)
            em.store(where, o, em.b.load(slot))

    em.nest(list(where.type.shape), pick, "xp", work=group)
    zero = em.const(t.dtype, 0)

    def at(idx):
        o = [idx[k] for k in kept]
        hit = em.b.icmp_signed("==", _flat(em, t, axes, dict(enumerate(idx))), em.load(where, o))
        return em.b.select(hit, em.read(g, o), zero)

    return Lazy(t, at, work=2)


def _extreme_scatter_shape(in_types, axes, kind):
    """(x, g) or (x, g, base): base, when given, is what g is added to, of the result's type."""
    x, g, *base = in_types
    want = _reduce_shape([x], axes)[0].shape
    if g.shape != want or not g.dtype.is_float:
        raise ShapeError(f"the cotangent of a {kind} over axes {axes} of {x} must be a float {want}, got {g}")
    out = x.with_dtype(g.dtype)
    if base and base[0] != out:
        raise ShapeError(f"the cotangent added to a {kind}'s must be a {out}, got {base[0]}")
    return [out]


def _extreme_scatter_vjp(ctx, p, ins, outs, cts):
    """Linear in g and base (x only picks where g goes): g's cotangent is ct at each group's
    pick, base's is ct."""
    b = ctx.b
    x, ct = ins[0], cts[0]
    m = _first_extreme_mask(b, x, p["axes"], p["kind"])
    return [None, ops.reduce_sum(b, ops.select(b, m, ct, ops.like(b, ct, 0.0)), p["axes"])] + [ct] * (len(ins) - 2)


def _extreme_scatter_jvp(ctx, p, ins, outs, ts):
    base = ts[2] if len(ts) > 2 else None
    if ts[1] is None:
        return [base]
    extra = [base] if base is not None else []
    return [ctx.b.emit1(extreme_scatter_p, [ins[0], ts[1], *extra], axes=tuple(p["axes"]), kind=p["kind"])]


def _extreme_scatter_fold(x, g, *base, axes, kind):
    """g at the first extreme of each group of known values (NaN first, as argmax), plus base."""
    kept = [k for k in range(x.ndim) if k not in axes]
    xt = np.transpose(x, kept + list(axes)).reshape(tuple(x.shape[k] for k in kept) + (-1,))
    pick = np.argmax(xt, axis=-1) if kind == "max" else np.argmin(xt, axis=-1)
    onehot = np.arange(xt.shape[-1]) == pick[..., None]
    out = np.where(onehot, np.asarray(g)[..., None], 0).astype(np.asarray(g).dtype)
    back = out.reshape(tuple(x.shape[k] for k in kept) + tuple(x.shape[a] for a in axes))
    inv = np.argsort(kept + list(axes))
    return [np.transpose(back, inv) + base[0] if base else np.transpose(back, inv)]


extreme_scatter_p = primitive(
    "extreme_scatter",
    shape=_extreme_scatter_shape,
    lower=_extreme_scatter_lower,
    vjp=_extreme_scatter_vjp,
    jvp=_extreme_scatter_jvp,
    fold=_extreme_scatter_fold,
    reads_lazy=True,
    lazy_result=True,
    reads_all=True,
    hoistable=True,
)


# --- declarations -----------------------------------------------------------------------------

reduce_sum_p = _reduction("sum", _reassociable("fadd"), np.sum, _sum_vjp, _sum_jvp)
reduce_prod_p = _reduction("prod", _reassociable("fmul"), np.prod, _prod_vjp, _prod_jvp)
reduce_max_p = _reduction("max", _extreme(">", _maximum), np.max, _extreme_vjp("max"), _extreme_jvp("max"), True)
reduce_min_p = _reduction("min", _extreme("<", _minimum), np.min, _extreme_vjp("min"), _extreme_jvp("min"), True)
