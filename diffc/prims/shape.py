"""Array creation and shape primitives: iota (const is in ir/prim.py), broadcast, reshape, transpose, slice,
index, concat, windows. Most lower to views (new strides over the same buffer): no copy."""

from __future__ import annotations

from math import prod

import numpy as np
from llvmlite import ir

from ..errors import BoundsError, ShapeError
from ..ir.prim import const_p  # noqa: F401 (the IR's own primitive, declared in ir/prim.py)
from ..lower.emit import ERR_BOUNDS, I1, PARALLEL_MIN, Arr, Lazy, Site, contiguous_strides, reads_across
from ..lower.loops import row
from ..typesys import DType, TensorType, broadcast_shapes
from . import ops
from .core import Kind, primitive
from .elementwise import _add

# --- iota: arange(n) ---------------------------------------------------------------------------


def _iota_lower(em, eqn, ins):
    t = eqn.outs[0].type
    out = em.result(eqn.outs[0])
    em.loop(t.shape[0], lambda i: em.store(out, [i], i))
    return [out]


iota_p = primitive(
    "iota",
    shape=lambda ts, n: [TensorType(DType.I64, (n,))],
    kind=Kind.CONSTANT,
    lower=_iota_lower,
    fold=lambda n: [np.arange(n)],
    nondiff=True,
)

# --- broadcast: NumPy broadcast_to -------------------------------------------------------------


def _broadcast_shape(in_types, shape):
    (t,) = in_types
    if broadcast_shapes(t.shape, shape) != tuple(shape):
        raise ShapeError(f"cannot broadcast {t} to shape {list(shape)}")
    return [t.with_shape(shape)]


def _splat(t, x):
    """A scalar seen as an array of type t, without memory: it is read where it is used."""
    return Lazy(t, lambda idx: x, uniform=True)


def _broadcast_lower(em, eqn, ins):
    (x,) = ins
    t = eqn.outs[0].type
    if not isinstance(x, Arr | Lazy):
        return [_splat(t, x)]
    return [em.broadcast_view(x, t.shape)]


broadcast_p = primitive(
    "broadcast",
    shape=_broadcast_shape,
    kind=Kind.SHAPE,
    lower=_broadcast_lower,
    vjp=lambda ctx, p, ins, outs, cts: [ops.unbroadcast(ctx.b, cts[0], ins[0].type.shape)],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, broadcast_p, p, ins, ts),
    fold=lambda x, shape: [np.broadcast_to(x, shape)],
    reads_lazy=True,
    keeps_zeros=True,
    keeps_all_zeros=True,
    view=True,
)

# --- reshape ------------------------------------------------------------------------------------


def _reshape_shape(in_types, shape):
    (t,) = in_types
    n = 1
    for d in shape:
        n *= d
    if n != t.size:
        raise ShapeError(f"cannot reshape {t} ({t.size} elements) to {list(shape)} ({n} elements)")
    return [t.with_shape(shape)]


def _reshape_lower(em, eqn, ins):
    t = eqn.outs[0].type
    x = ins[0]
    if t.rank == 0:
        return [em.read(x, [em.i64(0)] * eqn.inputs[0].type.rank)]
    if isinstance(x, Lazy):  # (uniform: a broadcast scalar, a gradient's seed: any shape of it is free)
        return [Lazy(t, x.at, uniform=True)]
    if not isinstance(x, Arr):
        return [_splat(t, x)]
    x = em.materialise(x)
    return [Arr(x.ptr, x.offset, contiguous_strides(t.shape), t)]


reshape_p = primitive(
    "reshape",
    shape=_reshape_shape,
    kind=Kind.SHAPE,
    lower=_reshape_lower,
    vjp=lambda ctx, p, ins, outs, cts: [ops.reshape(ctx.b, cts[0], ins[0].type.shape)],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, reshape_p, p, ins, ts),
    fold=lambda x, shape: [np.reshape(x, shape)],
    reads_uniform=True,
    keeps_zeros=True,
    keeps_all_zeros=True,
    view=True,
    copies_strided=True,
)

# --- transpose ---------------------------------------------------------------------------------


def _transpose_lower(em, eqn, ins):
    """A view of x with its strides permuted. A broadcast scalar (a sum's cotangent) stays one:
    materialising it would cost a write of the whole array and a read across its rows."""
    (x,) = ins
    perm = eqn.params["perm"]
    if isinstance(x, Lazy) and x.uniform:
        return [Lazy(eqn.outs[0].type, x.at, uniform=True)]
    x = em.force(x)
    if not isinstance(x, Arr):
        return [x]
    return [Arr(x.ptr, x.offset, tuple(x.strides[p] for p in perm), eqn.outs[0].type)]


def _transpose_operand_destination(dest: Arr, x_type, perm) -> Arr:
    """The buffer dest, where the transpose of x is wanted, as x: dest's strides put back in
    x's order (the result's axis k is x's axis perm[k])."""
    strides = [0] * len(perm)
    for k, p in enumerate(perm):
        strides[p] = dest.strides[k]
    return Arr(dest.ptr, dest.offset, tuple(strides), x_type)


transpose_p = primitive(
    "transpose",
    shape=lambda ts, perm: [ts[0].with_shape(tuple(ts[0].shape[p] for p in perm))],
    kind=Kind.SHAPE,
    lower=_transpose_lower,
    operand_destination=_transpose_operand_destination,
    vjp=lambda ctx, p, ins, outs, cts: [ops.transpose(ctx.b, cts[0], _inverse(p["perm"]))],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, transpose_p, p, ins, ts),
    fold=lambda x, perm: [np.transpose(x, perm)],
    reads_lazy=True,
    keeps_zeros=True,
    view=True,
)

# --- slice: static starts and limits, step 1 ------------------------------------------------------


def _slice_shape(in_types, starts, limits):
    (t,) = in_types
    return [t.with_shape(tuple(hi - lo for lo, hi in zip(starts, limits)) + t.shape[len(starts) :])]


def _slice_lower(em, eqn, ins):
    (x,) = ins
    off = x.offset
    for lo, s in zip(eqn.params["starts"], x.strides):
        if lo:
            off = em.b.add(off, em.i64(lo * s))
    return [Arr(x.ptr, off, x.strides, eqn.outs[0].type)]


slice_p = primitive(
    "slice",
    shape=_slice_shape,
    kind=Kind.SHAPE,
    lower=_slice_lower,
    vjp=lambda ctx, p, ins, outs, cts: [ctx.b.emit1(pad_p, [cts[0]], starts=p["starts"], shape=ins[0].type.shape)],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, slice_p, p, ins, ts),
    fold=lambda x, starts, limits: [x[tuple(slice(lo, hi) for lo, hi in zip(starts, limits))]],
    keeps_zeros=True,
)

# --- strided_slice: x[a:b:s, ...] with static starts, steps (negative ones too) and counts --------


def _strided_shape(in_types, starts, steps, counts):
    (t,) = in_types
    if len(starts) > t.rank or not len(starts) == len(steps) == len(counts):
        raise ShapeError(f"a strided slice of {len(starts)} axes of {t}")
    for lo, st, c, n in zip(starts, steps, counts, t.shape):
        if st == 0 or c < 0 or (c > 0 and not (0 <= lo < n and 0 <= lo + st * (c - 1) < n)):
            raise ShapeError(f"the strided slice {lo}::{st} ({c} elements) does not fit an axis of length {n}")
    return [t.with_shape(tuple(counts) + t.shape[len(starts) :])]


def _strided_view(x: Arr, em, starts, steps, t) -> Arr:
    """Element i of axis k is element starts[k] + i * steps[k] of x's: the same buffer with
    moved offset and scaled (possibly negative) strides."""
    off = x.offset
    for lo, s in zip(starts, x.strides):
        if lo:
            off = em.b.add(off, em.i64(lo * s))
    strides = tuple(s * st for s, st in zip(x.strides, steps)) + x.strides[len(steps) :]
    return Arr(x.ptr, off, strides, t)


def _strided_fold(x, starts, steps, counts):
    for k, (lo, st, c) in enumerate(zip(starts, steps, counts)):
        x = np.take(x, lo + st * np.arange(c, dtype=np.int64), axis=k)
    return [x]


strided_slice_p = primitive(
    "strided_slice",
    shape=_strided_shape,
    kind=Kind.SHAPE,
    lower=lambda em, eqn, ins: [_strided_view(ins[0], em, eqn.params["starts"], eqn.params["steps"], eqn.outs[0].type)],
    vjp=lambda ctx, p, ins, outs, cts: [ctx.b.emit1(strided_pad_p, [cts[0]], shape=ins[0].type.shape, **p)],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, strided_slice_p, p, ins, ts),
    fold=_strided_fold,
    keeps_zeros=True,
)

# --- index: x[i0, i1, ...] with dynamic integer indices on the leading axes --------------------


def _index_shape(in_types, safe=False):
    t, *idx = in_types
    if len(idx) > t.rank:
        raise ShapeError(f"too many indices ({len(idx)}) for {t}")
    for i in idx:
        if i.dtype is not DType.I64 or i.rank != 0:
            raise ShapeError(f"an index must be an i64 scalar, got {i}")
    return [t.with_shape(t.shape[len(idx) :])]


def _index_lower(em, eqn, ins):
    """x[i, ...]; `safe` says every index is known to be in 0..n-1 (no check needed)."""
    x, *idx = ins
    site = Site(eqn.span, ERR_BOUNDS, "index")
    off = x.offset
    for k, i in enumerate(idx):
        j = i if eqn.params.get("safe") else em.checked_index(i, x.type.shape[k], site)
        off = em.b.add(off, em.b.mul(j, em.i64(x.strides[k])))
    t = eqn.outs[0].type
    view = Arr(x.ptr, off, x.strides[len(idx) :], t)
    return [em.load(view, []) if t.rank == 0 else view]


def _index_fold(x, *idx, safe=False):
    for k, i in enumerate(idx):
        if not -x.shape[k] <= int(i) < x.shape[k]:
            raise BoundsError(f"index {int(i)} is out of bounds for an axis of length {x.shape[k]}")
    return [x[tuple(int(i) for i in idx)]]


index_p = primitive(
    "index",
    shape=lambda ts, safe=False: _index_shape(ts),
    kind=Kind.SHAPE,
    lower=_index_lower,
    vjp=lambda ctx, p, ins, outs, cts: (
        [ctx.b.emit1(index_scatter_p, [cts[0]] + list(ins[1:]), shape=ins[0].type.shape, safe=p.get("safe", False))]
        + [None] * (len(ins) - 1)
    ),
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, index_p, p, ins, ts),
    fold=_index_fold,
    fallible=True,
    cheap=True,
    remat=True,
    keeps_zeros=True,
)


# --- windows: the sliding windows of length k along the leading axis, as a view -----------------


def _windows_shape(in_types, k):
    (t,) = in_types
    if t.rank == 0 or not 1 <= k <= t.shape[0]:
        raise ShapeError(f"windows of length {k} do not fit in {t}")
    return [t.with_shape((t.shape[0] - k + 1, k) + t.shape[1:])]


def _windows_lower(em, eqn, ins):
    (x,) = ins
    return [Arr(x.ptr, x.offset, (x.strides[0],) + x.strides, eqn.outs[0].type)]


windows_p = primitive(
    "windows",
    shape=_windows_shape,
    kind=Kind.SHAPE,
    lower=_windows_lower,
    vjp=lambda ctx, p, ins, outs, cts: [ctx.b.emit1(unwindows_p, [cts[0]], n=ins[0].type.shape[0])],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, windows_p, p, ins, ts),
    fold=lambda x, k: [np.stack([x[i : i + k] for i in range(x.shape[0] - k + 1)])],
)

# --- concat ----------------------------------------------------------------------------------


def _concat_shape(in_types, axis):
    t0 = in_types[0]
    for t in in_types:
        if t.rank != t0.rank or t.dtype != t0.dtype or t.rank == 0:
            raise ShapeError("concat needs arrays of one rank and dtype, got " + ", ".join(map(str, in_types)))
        if any(a != b for k, (a, b) in enumerate(zip(t.shape, t0.shape)) if k != axis):
            raise ShapeError(
                f"concat along axis {axis}: shapes " + ", ".join(map(str, in_types)) + " differ off that axis"
            )
    shape = list(t0.shape)
    shape[axis] = sum(t.shape[axis] for t in in_types)
    return [t0.with_shape(shape)]


def _concat_lower(em, eqn, ins):
    axis = eqn.params["axis"]
    out = em.result(eqn.outs[0])
    start = 0
    for x in ins:
        n = x.type.shape[axis]
        part = Arr(out.ptr, em.b.add(out.offset, em.i64(start * out.strides[axis])), out.strides, x.type)
        em.copy_into(part, x)
        start += n
    return [out]


def _concat_vjp(ctx, p, ins, outs, cts):
    b = ctx.b
    axis, start, res = p["axis"], 0, []
    for x in ins:
        n = x.type.shape[axis]
        starts = tuple(start if k == axis else 0 for k in range(x.type.rank))
        limits = tuple(start + n if k == axis else d for k, d in enumerate(outs[0].type.shape))
        res.append(b.emit1(slice_p, [cts[0]], starts=starts, limits=limits))
        start += n
    return res


def _concat_jvp(ctx, p, ins, outs, ts):
    b = ctx.b
    if all(t is None for t in ts):
        return [None]
    parts = [t if t is not None else ops.zeros(b, x.type) for x, t in zip(ins, ts)]
    return [b.emit1(concat_p, parts, **p)]


concat_p = primitive(
    "concat",
    shape=_concat_shape,
    kind=Kind.SHAPE,
    lower=_concat_lower,
    vjp=_concat_vjp,
    jvp=_concat_jvp,
    fold=lambda *xs, axis: [np.concatenate(xs, axis=axis)],
    keeps_zeros=True,
)

# --- gather: x[ids] for an integer array ids, along the leading axis ------------------------------

WIDE_ROW = 64  # elements of a row from which a scatter-add may run on the threads
ROW_GROUPS = 8  # the pieces of out's rows a scatter-add on the threads is cut into (See Note [Gathers in parallel])


def _gather_shape(in_types):
    x, ids = in_types
    if x.rank == 0:
        raise ShapeError(f"cannot index a scalar {x}")
    if ids.dtype is not DType.I64:
        raise ShapeError(f"indices must be integers, got {ids}")
    return [x.with_shape(ids.shape + x.shape[1:])]


def _gather_lower(em, eqn, ins):
    """x[ids], on the threads for pieces of ids' first axis when the work is large (See Note
    [Gathers in parallel])."""
    x, ids = em.force(ins[0]), ins[1]
    b, n = em.b, x.type.shape[0]
    site = Site(eqn.span, ERR_BOUNDS, "index")
    out = em.result(eqn.outs[0])
    id_shape = eqn.inputs[1].type.shape
    r = len(id_shape)

    def copy(idx, j):  # out[idx] = x[j]
        src = row(em, x, j)
        dst = Arr(
            out.ptr,
            b.add(out.offset, _dot(em, idx, out.strides[:r])),
            out.strides[r:],
            x.type.with_shape(x.type.shape[1:]),
        )
        if isinstance(src, Arr) and src.contiguous and dst.contiguous and src.type.size:
            em.memcpy(dst, src)  # (a short row too: in a piece, LLVM cannot tell x and out apart)
        elif isinstance(src, Arr):
            em.copy_into(dst, src)
        else:
            em.store(dst, [], src)

    if n == 0 or not id_shape or id_shape[0] < 2 or prod(id_shape) * prod(x.type.shape[1:]) < PARALLEL_MIN:
        em.loop_nest(id_shape, lambda idx: copy(idx, em.checked_index(em.read(ids, idx), n, site)), "g")
        return [out]
    bad = em.alloc(TensorType(DType.BOOL, (id_shape[0],)))

    def part(i):  # the positions [i, ...], a bad index noted and row 0 read in its place
        seen = em.alloca(I1)
        b.store(ir.Constant(I1, 0), seen)

        def each(idx):
            j, out_of_range = em.wrapped_index(em.read(ids, [i] + idx), n)
            b.store(b.or_(b.load(seen), out_of_range), seen)
            copy([i] + idx, b.select(out_of_range, em.i64(0), j))

        em.loop_nest(id_shape[1:], each, "g")
        em.store(bad, [i], b.load(seen))

    em.parallel_loop(id_shape[0], part, "g")
    _fail_on_noted(em, bad, id_shape[0], lambda: _check_ids(em, ids, id_shape, n, site))
    return [out]


def _check_ids(em, ids, id_shape, n, site):
    """A serial pass that fails, located at `site`, at the first index out of range for n rows."""
    em.loop_nest(id_shape, lambda idx: em.checked_index(em.read(ids, idx), n, site), "gc")


def _fail_on_noted(em, noted, count, check):
    """check() (a pass that fails at the first bad index) when one of noted[0..count] is set."""
    b = em.b
    seen = em.alloca(I1)
    b.store(ir.Constant(I1, 0), seen)
    em.loop(count, lambda k: b.store(b.or_(b.load(seen), em.load(noted, [k])), seen), "gb")
    with b.if_then(b.load(seen), likely=False):
        check()


def _dot(em, idx, strides):
    acc = em.i64(0)
    for i, s in zip(idx, strides):
        acc = em.b.add(acc, em.b.mul(i, em.i64(s)))
    return acc


gather_p = primitive(
    "gather",
    shape=lambda ts: _gather_shape(ts),
    kind=Kind.SHAPE,
    lower=_gather_lower,
    vjp=lambda ctx, p, ins, outs, cts: [ctx.b.emit1(gather_add_p, [cts[0], ins[1]], shape=ins[0].type.shape), None],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, gather_p, p, ins, ts),
    fold=lambda x, ids: [x[ids]],
    fallible=True,
    reads_lazy=True,  # ids computed where they are read (im2col's positions: See Note [Gathers in parallel])
)


# --- the transposes of slicing, indexing, gather and windows (for derivatives) -------------------


def _zero_fill(em, t):
    out = em.alloc(t)
    em.copy_into(out, em.const(t.dtype, 0))
    return out


def _pad_lower(em, eqn, ins):
    """zeros(shape) with g at `starts`: Lazy when its reader reads it so (a slice's cotangent
    added to another's: See Note [Pads])."""
    (g,) = ins
    t = eqn.outs[0].type
    if em.fuse_next:
        return [_padded(em, g, eqn.inputs[0].type.shape, t, eqn.params["starts"])]
    out = _zero_fill(em, t)
    off = sum(lo * s for lo, s in zip(eqn.params["starts"], out.strides))
    em.copy_into(Arr(out.ptr, em.i64(off), out.strides, g.type if isinstance(g, Arr) else eqn.inputs[0].type), g)
    return [out]


def _padded(em, g, g_shape, t, starts) -> Lazy:
    """pad(g) as a Lazy value: element idx is g's at idx - starts where that is inside g, else
    0. g is read in a branch, which LLVM's vectoriser makes a masked load of consecutive
    elements (a select of a read at a clamped index was a gather)."""
    b = em.b
    cut = [k for k, (lo, d, n) in enumerate(zip(starts, g_shape, t.shape)) if (lo, d) != (0, n)]

    if isinstance(g, Arr):  # read at idx itself, from `starts` before g (See Note [Pads])
        shift = sum(lo * s for lo, s in zip(starts, g.strides))
        g = Arr(g.ptr, b.sub(g.offset, em.i64(shift)), g.strides, t)

    def at(idx):
        src, inside = list(idx), None
        for k in cut:
            src[k] = b.sub(idx[k], em.i64(starts[k]))
            ok = b.icmp_unsigned("<", src[k], em.i64(g_shape[k]))  # (0 <= j < d, j taken unsigned)
            inside = ok if inside is None else b.and_(inside, ok)
        if inside is None:
            return em.read(g, src)
        before, read, done = b.block, em.block("pad.in"), em.block("pad.end")
        b.cbranch(inside, read, done)
        b.position_at_end(read)
        v = em.read(g, idx if isinstance(g, Arr) else src)
        after = b.block
        b.branch(done)
        b.position_at_end(done)
        out = b.phi(v.type)
        out.add_incoming(v, after)
        out.add_incoming(em.const(t.dtype, 0), before)
        return out

    flat = (lambda i: at([i])) if t.rank == 1 else None
    return Lazy(t, at, reads_across([g]), work=1 + 2 * len(cut) + (g.work if isinstance(g, Lazy) else 0), flat=flat)


pad_p = primitive(
    "pad",
    shape=lambda ts, starts, shape: [ts[0].with_shape(shape)],
    kind=Kind.SHAPE,
    lower=_pad_lower,
    fusable=True,
    reads_lazy=True,
    cost=4,
    vjp=lambda ctx, p, ins, outs, cts: [
        ctx.b.emit1(
            slice_p, [cts[0]], starts=p["starts"], limits=tuple(lo + d for lo, d in zip(p["starts"], ins[0].type.shape))
        )
    ],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, pad_p, p, ins, ts),
)


def _strided_pad_lower(em, eqn, ins):
    """zeros(shape) with g written at the places strided_slice reads (each at most once)."""
    (g,) = ins
    p, t = eqn.params, eqn.outs[0].type
    out = _zero_fill(em, t)
    em.copy_into(_strided_view(out, em, p["starts"], p["steps"], eqn.inputs[0].type), g)
    return [out]


strided_pad_p = primitive(
    "strided_pad",
    shape=lambda ts, starts, steps, counts, shape: [ts[0].with_shape(tuple(shape))],
    kind=Kind.SHAPE,
    lower=_strided_pad_lower,
    vjp=lambda ctx, p, ins, outs, cts: [
        ctx.b.emit1(strided_slice_p, [cts[0]], starts=p["starts"], steps=p["steps"], counts=p["counts"])
    ],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, strided_pad_p, p, ins, ts),
)


# The transposes check their indices as the forward op does (at its span): the forward's check
# is gone when its value is unused, and an unchecked index would write anywhere.


def _index_scatter_lower(em, eqn, ins):
    """zeros(shape) with g at x[i, ...] (the transpose of index; `safe` as for index)."""
    g, *idx = ins
    t = eqn.outs[0].type
    out = _zero_fill(em, t)
    site = Site(eqn.span, ERR_BOUNDS, "index")
    off = em.i64(0)
    for k, i in enumerate(idx):
        j = i if eqn.params.get("safe") else em.checked_index(i, t.shape[k], site)
        off = em.b.add(off, em.b.mul(j, em.i64(out.strides[k])))
    view = Arr(out.ptr, off, out.strides[len(idx) :], eqn.inputs[0].type)
    if view.type.rank == 0:
        em.store(view, [], g)
    else:
        em.copy_into(view, g)
    return [out]


index_scatter_p = primitive(
    "index_scatter",
    shape=lambda ts, shape, safe=False: [ts[0].with_shape(shape)],
    kind=Kind.SHAPE,
    lower=_index_scatter_lower,
    vjp=lambda ctx, p, ins, outs, cts: (
        [ctx.b.emit1(index_p, [cts[0]] + list(ins[1:]), safe=p["safe"])] + [None] * (len(ins) - 1)
    ),
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, index_scatter_p, p, ins, ts),
    fallible=True,
    accumulate_as="index",
)


def _gather_add_lower(em, eqn, ins):
    """out = zeros(shape); out[ids[p]] += g[p] for every position p of ids (repeats add up), on
    the threads for pieces of out's rows when the rows are wide and the work large (See Note
    [Gathers in parallel])."""
    g, ids = ins
    b, t = em.b, eqn.outs[0].type
    out = _zero_fill(em, t)
    id_shape = eqn.inputs[1].type.shape
    r, n = len(id_shape), t.shape[0]
    site = Site(eqn.span, ERR_BOUNDS, "index")

    def add(idx, j):  # out[j] += g[idx]
        src = Arr(g.ptr, b.add(g.offset, _dot(em, idx, g.strides[:r])), g.strides[r:], t.with_shape(t.shape[1:]))
        if t.rank == 1:
            cell = Arr(out.ptr, j, (), t.with_shape(()))
            em.store(cell, [], _add(em, t.dtype, em.load(cell, []), em.load(src, [])))
        else:
            dst = row(em, out, j)
            em.loop_nest(
                t.shape[1:], lambda k: em.store(dst, k, _add(em, t.dtype, em.load(dst, k), em.load(src, k))), "ga"
            )

    if n < 2 or prod(t.shape[1:]) < WIDE_ROW or prod(id_shape) * prod(t.shape[1:]) < PARALLEL_MIN:
        em.loop_nest(id_shape, lambda idx: add(idx, em.checked_index(em.read(ids, idx), n, site)), "gi")
        return [out]
    groups = min(n, ROW_GROUPS)
    per_group = -(-n // groups)
    bad = em.alloc(TensorType(DType.BOOL, (groups,)))
    em.copy_into(bad, ir.Constant(I1, 0))

    def rows(lo, hi):  # every position in order, adding those whose row is in groups lo..hi
        first = b.mul(lo, em.i64(per_group))
        last = b.select(b.icmp_signed("<", hi, em.i64(groups)), b.mul(hi, em.i64(per_group)), em.i64(n))
        seen = em.alloca(I1)
        b.store(ir.Constant(I1, 0), seen)

        def each(idx):
            j, out_of_range = em.wrapped_index(em.read(ids, idx), n)
            b.store(b.or_(b.load(seen), out_of_range), seen)
            with b.if_then(b.and_(b.icmp_signed(">=", j, first), b.icmp_signed("<", j, last))):
                add(idx, j)

        em.loop_nest(id_shape, each, "gi")
        em.store(bad, [lo], b.load(seen))

    em.parallel_range(groups, rows, "gar")
    _fail_on_noted(em, bad, groups, lambda: _check_ids(em, ids, id_shape, n, site))
    return [out]


gather_add_p = primitive(
    "gather_add",
    shape=lambda ts, shape: [ts[0].with_shape(tuple(shape))],
    kind=Kind.SHAPE,
    lower=_gather_add_lower,
    vjp=lambda ctx, p, ins, outs, cts: [ctx.b.emit1(gather_p, [cts[0], ins[1]]), None],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, gather_add_p, p, ins, ts),
    fallible=True,
    accumulate_as="gather",
)


# Note [Pads]
# ~~~~~~~~~~~~
# A slice's cotangent is a pad: zeros with the cotangent at the slice's place. The cotangents
# of slices of one array are added (`x[1:] - x[:-1]`), so a pad read by an elementwise op stays
# Lazy (`fusable`): element idx is g's at idx - starts where that is inside g, else 0, read in
# a branch that LLVM's vectoriser makes a masked load. A g in memory is read at idx itself,
# from a view that starts `starts` elements before it: an index {-1,+,1} read that way became
# a masked gather, {0,+,1} from a shifted base a masked load of consecutive elements. Written
# whole (its reader is no elementwise op), a pad is zeros then g copied in. The gradient of
# `sum((x[1:] - x[:-1]) ** 2)` was a zero fill and a copy per slice and an add (9-27 times the
# forward at 1024-262144 elements), and is one loop after the forward (4-5 times).
#
# Note [Gathers in parallel]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~
# A loop that can fail stays on one thread (Note [Parallel loops] in lower/emit.py), and a
# gather and its transpose, the scatter-add gather_add, check each index. When the work is
# large (PARALLEL_MIN elements), they run on the threads without failing: each piece wraps
# its indices (negative from the end) and notes, in a flag of its own, whether one was out of
# range, reading row 0 in its place (gather) or adding nothing (gather_add). After the loop,
# if a flag is set, a serial pass over the indices fails at the first bad one, with the same
# located error as before; the result is not used. When every index is in range, which is the
# rule, the indices are read once, as on one thread.
# - gather: each position's row of the result is its own: the pieces split ids' first axis.
# - gather_add: repeated indices add into one row, so the pieces are groups of out's rows
#   (ROW_GROUPS of them). Each piece walks every position in order and adds those whose row
#   is its own: every element receives its additions in the order of one thread, and the
#   result is the same bits on any count of threads. The walk costs a compare per position
#   and piece, which is small beside rows of WIDE_ROW elements or more; narrower rows stay
#   on one thread.
# Measured and not taken: pieces of each row's columns, each walking every position for its
# own columns (each piece reads every position's index and address again, and the pieces
# write neighbouring lines of the same rows: 2x slower on 2 threads than on 1 for rows of 96
# and 512 elements), and listing the positions by group in two serial passes (a counting
# sort) so that no piece walks another's (the group order reads g's rows out of order: 1.4x
# slower on one thread).
# A gather reads its indices lazily (reads_lazy): an index computed by elementwise ops, such as
# nn.columns' positions `first + r * s[3] + c` (a broadcast sum of aranges), is computed where
# the gather reads it rather than stored first. For the 64 x 8 x 32 x 32 convolution that
# stored 4.7 MB of i64 and read them back: its f32 forward 8.4 -> 7.4 ms at one thread.


UNWINDOWS_BLOCK_BYTES = 1 << 14  # the elements of out unwindows sums a block at a time (in L1)


def _unwindows_lower(em, eqn, ins):
    """out[p] = the sum of g[p - j, j] over the windows p - j that hold p, added in the
    windows' order (j from k - 1 down) as np.add.at adds them: the same bits. A block of out
    that fits the L1 cache (UNWINDOWS_BLOCK_BYTES) at a time, a pass over it for each place j:
    the first stores, the others add, to the elements the first wrote. No element of out is
    written by two blocks, so out needs no zero-fill and the blocks run on the threads, with
    the same bits on any number. g is read where it is used (reads_lazy): the cotangent of a
    sum or max over each window (Note [Batched maps] in ad/batch.py) is never stored whole.
    (Adding each window's cotangent into out in turn, each window's adds waited for the last
    one's stores: a max over windows of 4 had a gradient 23 times its forward.)"""
    (g,) = ins
    b, t = em.b, eqn.outs[0].type
    out = em.result(eqn.outs[0])
    rows, k, *rest = eqn.inputs[0].type.shape
    n = t.shape[0]
    if t.size == 0:
        return [out]
    per = max(1, UNWINDOWS_BLOCK_BYTES // (prod(rest) * t.dtype.itemsize))
    zero = em.const(t.dtype, 0)

    def larger(x, y):
        return b.select(b.icmp_signed(">", x, y), x, y)

    def smaller(x, y):
        return b.select(b.icmp_signed("<", x, y), x, y)

    def block(bi):
        start, length = em.block_of(bi, per, n)
        end = b.add(start, length)

        def place(j, first):  # the positions of the block that window p - j holds: j <= p < j + rows
            lo, hi = larger(start, j), smaller(end, b.add(j, em.i64(rows)))

            def each(r, more):
                p = b.add(lo, r)
                v = em.read(g, [b.sub(p, j), j] + more)
                em.store(out, [p] + more, _add(em, t.dtype, zero if first else em.load(out, [p] + more), v))

            count = larger(b.sub(hi, lo), em.i64(0))
            em.loop(count, lambda r: em.loop_nest(rest, lambda more: each(r, more), "uwr"), "uw")

        def clear(r):
            em.loop_nest(rest, lambda more: em.store(out, [b.add(start, r)] + more, zero), "uwz")

        # the first k - 1 elements are held by fewer windows: zero where the first pass does not write
        em.loop(larger(b.sub(smaller(end, em.i64(k - 1)), start), em.i64(0)), clear, "uwz")
        place(em.i64(k - 1), True)
        em.loop(k - 1, lambda jj: place(b.sub(em.i64(k - 2), jj), False), "uwj")

    blocks = -(-n // per)
    if blocks > 1 and n * prod(rest) * k >= PARALLEL_MIN:
        em.parallel_loop(blocks, block, "uwb")
    else:
        em.loop(blocks, block, "uwb")
    return [out]


unwindows_p = primitive(
    "unwindows",
    shape=lambda ts, n: [ts[0].with_shape((n,) + ts[0].shape[2:])],
    kind=Kind.SHAPE,
    lower=_unwindows_lower,
    reads_lazy=True,
    vjp=lambda ctx, p, ins, outs, cts: [ctx.b.emit1(windows_p, [cts[0]], k=ins[0].type.shape[1])],
    jvp=lambda ctx, p, ins, outs, ts: _apply_to_tangent(ctx.b, unwindows_p, p, ins, ts),
)

# --- derivative rules ---------------------------------------------------------------------------


def _apply_to_tangent(b, prim, params, ins, ts):
    """The jvp of an op linear in its first input (the others are indices): the op itself,
    applied to that input's tangent."""
    t = ts[0]
    if t is None:
        return [None]
    return [b.emit1(prim, [t] + list(ins[1:]), **params)]


def _inverse(perm):
    inv = [0] * len(perm)
    for k, p in enumerate(perm):
        inv[p] = k
    return tuple(inv)
