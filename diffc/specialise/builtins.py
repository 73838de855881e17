"""The built-in functions and operators of DFL, as the specialiser traces them into IR.

Each built-in checks its arguments (arity, types, static shapes) and reports mistakes at the
call, then emits primitives. Promotion rules live here (`binary`), so primitives can demand
operands of one dtype."""

from __future__ import annotations

import numpy as np

from ..errors import BoundsError, ShapeError, TypeError_
from ..ir.core import Var
from ..prims import cumulative as cum
from ..prims import elementwise as ew
from ..prims import io, linalg
from ..prims import random as rnd
from ..prims import reduce as red
from ..prims import shape as sh
from ..prims import sort as srt
from ..pytree import Record, flatten
from ..typesys import DType, TensorType, broadcast_shapes, promote
from .ad_builtins import AD_BUILTINS
from .args import allowed_kwargs, arity, axes_arg, axis_arg, count_arg, keepdims_arg, static_shape, tensor_arg
from .einsum import einsum
from .higher_order import _fold, _iterate, _map, _scan, _treefold, _treemap, _unfold, _while, _windows
from .values import Builtin, Partial, describe

F64, I64, BOOL = DType.F64, DType.I64, DType.BOOL

# --- promotion and operators ------------------------------------------------------------------


def _weak(x: Var) -> bool:
    """A number literal: it adapts to the other operand's float width (f32 stays f32)."""
    return x.known is not None and x.type.rank == 0


def promote_pair(tr, a: Var, b: Var, floats=False):
    da, db = a.type.dtype, b.type.dtype
    if da is DType.F32 and db is F64 and _weak(b):
        dt = DType.F32
    elif db is DType.F32 and da is F64 and _weak(a):
        dt = DType.F32
    else:
        dt = promote(da, db)
    if dt is BOOL:
        dt = I64
    if floats and not dt.is_float:
        dt = F64
    return tr.convert(a, dt), tr.convert(b, dt)


def check_broadcast(a: Var, b: Var, what: str):
    if broadcast_shapes(a.type.shape, b.type.shape) is None:
        raise ShapeError(f"shapes do not broadcast in `{what}`: {a.type} and {b.type}")


def binary(prim, what, floats=False, compare=False):
    def f(tr, a, b):
        check_broadcast(a, b, what)
        if compare and a.type.dtype is BOOL and b.type.dtype is BOOL:
            return tr.emit(prim, [a, b])
        a, b = promote_pair(tr, a, b, floats)
        return tr.emit(prim, [a, b])

    return f


def power(tr, a, b):
    check_broadcast(a, b, "**")
    a, b = promote_pair(tr, a, b)
    return tr.emit(ew.pow_p, [a, b])


BINOPS = {
    "+": binary(ew.add_p, "+"),
    "-": binary(ew.sub_p, "-"),
    "*": binary(ew.mul_p, "*"),
    "/": binary(ew.div_p, "/", floats=True),
    "//": binary(ew.floordiv_p, "//"),
    "%": binary(ew.mod_p, "%"),
    "**": power,
    "==": binary(ew.eq_p, "==", compare=True),
    "!=": binary(ew.ne_p, "!=", compare=True),
    "<": binary(ew.lt_p, "<"),
    "<=": binary(ew.le_p, "<="),
    ">": binary(ew.gt_p, ">"),
    ">=": binary(ew.ge_p, ">="),
}


def arith_unary(tr, prim, x: Var, floats=False):
    if x.type.dtype is BOOL or (floats and not x.type.dtype.is_float):
        x = tr.convert(x, F64 if floats else I64)
    return tr.emit(prim, [x])


def _need_bool(x, what):
    if not (isinstance(x, Var) and x.type.dtype is BOOL):
        raise TypeError_(f"`{what}` needs bool operands, got {describe(x)}")


def logical_not(tr, x):
    _need_bool(x, "not")
    return tr.emit(ew.not_p, [x])


def short_circuit(tr, e, env):
    """`a and b`, `a or b`: b is evaluated only when it matters, for scalars."""
    a = tr.eval(e.left, env)
    _need_bool(a, e.op)
    if a.type.rank == 0:
        if a.known is not None:
            if bool(a.known) == (e.op == "or"):
                return a
            b = tr.eval(e.right, env)
            _need_bool(b, e.op)
            return b

        def right():
            b = tr.eval(e.right, env)
            _need_bool(b, e.op)
            if b.type.rank != 0:
                raise TypeError_(f"`{e.op}` of a bool and {describe(b)}: use a bool scalar or arrays on both sides")
            return b

        def const():
            return tr.const(e.op == "or", BOOL)

        return tr.cond(a, const, right, e.span) if e.op == "or" else tr.cond(a, right, const, e.span)
    b = tr.eval(e.right, env)
    _need_bool(b, e.op)
    check_broadcast(a, b, e.op)
    return tr.emit(ew.and_p if e.op == "and" else ew.or_p, [a, b])


def matmul(tr, a: Var, b: Var):
    if a.type.rank == 0 or b.type.rank == 0:
        raise ShapeError(f"`@` needs vectors, matrices or batches of matrices, got {a.type} @ {b.type}")
    ka = a.type.shape[-1]
    kb = b.type.shape[0] if b.type.rank == 1 else b.type.shape[-2]
    if ka != kb:
        raise ShapeError(f"inner dimensions of `@` disagree: {a.type} @ {b.type} ({ka} vs {kb})")
    if broadcast_shapes(a.type.shape[:-2], b.type.shape[:-2]) is None:
        raise ShapeError(f"the batch axes of `@` do not broadcast: {a.type} @ {b.type}")
    a, b = promote_pair(tr, a, b)
    if a.type.dtype is BOOL:
        a, b = tr.convert(a, I64), tr.convert(b, I64)
    return tr.emit(linalg.matmul_p, [a, b])


# --- indexing ---------------------------------------------------------------------------------


def index(tr, x: Var, items):
    """x[items]: items are Python slices (static bounds) or (value, span) pairs."""
    t = x.type
    if len(items) > t.rank:
        raise BoundsError(f"too many indices ({len(items)}) for {t}")
    # a single integer array: gather rows
    if (
        len(items) == 1
        and not isinstance(items[0], slice)
        and isinstance(items[0][0], Var)
        and items[0][0].type.rank > 0
    ):
        ids, span = items[0]
        if ids.type.dtype is not I64:
            raise TypeError_(f"indices must be integers, got {ids.type}", span)
        if ids.known is not None:
            _static_bounds(ids.known, t.shape[0], span, 0)
        return tr.emit(sh.gather_p, [x, ids])
    if any(isinstance(it, slice) and it.step not in (None, 1) for it in items):
        x = _strided(tr, x, items)
        items = [slice(None) if isinstance(it, slice) else it for it in items]
        t = x.type
    starts, limits, scalar_axes, scalar_idx = [], [], [], []
    for k, it in enumerate(items):
        n = t.shape[k]
        if isinstance(it, slice):
            lo, hi, _ = it.indices(n)
            starts.append(lo)
            limits.append(max(hi, lo))
        else:
            v, span = it
            if isinstance(v, Var) and v.type.rank > 0 and v.type.dtype is I64:
                raise TypeError_("indexing with an integer array works only alone, as `x[ids]` (it gathers rows)", span)
            if not (isinstance(v, Var) and v.type.rank == 0 and v.type.dtype is I64):
                raise TypeError_(f"an index must be an integer or an integer array, got {describe(v)}", span)
            if v.known is not None:
                _static_bounds(v.known, n, span, k)
                if int(v.known) < 0:  # (counted from the end: the index in 0..n-1, known in range)
                    v = tr.const(int(v.known) + n, I64)
            starts.append(0)
            limits.append(n)
            scalar_axes.append(k)
            scalar_idx.append(v)
    if x.known is not None and len(scalar_axes) == len(items) and all(v.known is not None for v in scalar_idx):
        # (a shape's dimension, s[2]: its value, checked above; no equation left to keep)
        return tr.const(np.asarray(x.known)[tuple(int(v.known) for v in scalar_idx)], t.dtype)
    if any(lo != 0 or hi != n for lo, hi, n in zip(starts, limits, t.shape)):
        x = tr.emit(sh.slice_p, [x], starts=tuple(starts), limits=tuple(limits))
    if not scalar_axes:
        return x
    if scalar_axes != list(range(len(scalar_axes))):
        rest = [k for k in range(x.type.rank) if k not in scalar_axes]
        x = tr.emit(sh.transpose_p, [x], perm=tuple(scalar_axes + rest))
    # indices known, or loop indices (and small offsets of them), in range need no run-time
    # check: none is then left to fail, and an unused one is dropped (optimise/dce.py)
    safe = all(
        v.known is not None or (v.range is not None and 0 <= v.range[0] and v.range[1] <= x.type.shape[k])
        for k, v in enumerate(scalar_idx)
    )
    return tr.emit(sh.index_p, [x] + scalar_idx, safe=True) if safe else tr.emit(sh.index_p, [x] + scalar_idx)


def _strided(tr, x: Var, items) -> Var:
    """The slices of `items` with steps, NumPy's semantics (a negative step walks back from the
    end), as one strided view; the axes of integer indices are kept whole for index()."""
    starts, steps, counts = [], [], []
    for it, n in zip(items, x.type.shape):
        lo, hi, st = it.indices(n) if isinstance(it, slice) else (0, n, 1)
        count = len(range(lo, hi, st))
        starts.append(lo)
        steps.append(st if count > 1 else 1)  # unused then: a step of 2**63 makes no stride
        counts.append(count)
    return tr.emit(sh.strided_slice_p, [x], starts=tuple(starts), steps=tuple(steps), counts=tuple(counts))


def _static_bounds(known, n, span, axis):
    for i in np.atleast_1d(known).reshape(-1):
        if not -n <= int(i) < n:
            raise BoundsError(f"index {int(i)} is out of bounds for axis {axis} with length {n}", span)


# --- elementwise --------------------------------------------------------------------------------


def _unary_float(prim):
    def f(tr, args, kwargs):
        arity(prim.name, args, 1)
        allowed_kwargs(prim.name, kwargs, ())
        return arith_unary(tr, prim, tensor_arg(args[0], prim.name), floats=True)

    return f


def _abs(tr, args, kwargs):
    arity("abs", args, 1)
    return arith_unary(tr, ew.abs_p, tensor_arg(args[0], "abs"))


def _relu(tr, args, kwargs):
    arity("relu", args, 1)
    x = tensor_arg(args[0], "relu")
    zero = tr.const(0, x.type.dtype if x.type.dtype is not BOOL else I64)
    return binary(ew.max_p, "relu")(tr, zero, x)  # zero first: at a tie (x == 0) the derivative is 0


def _rounding(prim):
    """floor, ceil, round: integers are whole already and stay i64 (as in NumPy 2)."""

    def f(tr, args, kwargs):
        arity(prim.name, args, 1)
        allowed_kwargs(prim.name, kwargs, ())
        x = tensor_arg(args[0], prim.name)
        if x.type.dtype is BOOL:
            x = tr.convert(x, I64)
        return tr.emit(prim, [x]) if x.type.dtype.is_float else x

    return f


def _sign(tr, args, kwargs):
    arity("sign", args, 1)
    allowed_kwargs("sign", kwargs, ())
    return arith_unary(tr, ew.sign_p, tensor_arg(args[0], "sign"))


def _float_test(prim, for_integers):
    """isnan, isfinite: of integers and bools, known (no integer is NaN, every one finite)."""

    def f(tr, args, kwargs):
        arity(prim.name, args, 1)
        allowed_kwargs(prim.name, kwargs, ())
        x = tensor_arg(args[0], prim.name)
        if x.type.dtype.is_float:
            return tr.emit(prim, [x])
        return tr.emit(sh.broadcast_p, [tr.const(for_integers, BOOL)], shape=x.type.shape)

    return f


def _clip(tr, args, kwargs):
    """minimum(maximum(x, lo), hi), as NumPy: hi where lo > hi. max and min pick their first
    operand at a tie, so x's derivative is 1 on the closed interval [lo, hi], as JAX's."""
    arity("clip", args, 3)
    allowed_kwargs("clip", kwargs, ())
    x, lo, hi = (tensor_arg(a, "clip") for a in args)
    if broadcast_shapes(x.type.shape, lo.type.shape, hi.type.shape) is None:
        raise ShapeError(f"shapes do not broadcast in `clip`: {x.type}, {lo.type}, {hi.type}")
    return binary(ew.min_p, "clip")(tr, binary(ew.max_p, "clip")(tr, x, lo), hi)


def _binary_builtin(name, fn):
    def f(tr, args, kwargs):
        arity(name, args, 2)
        allowed_kwargs(name, kwargs, ())
        return fn(tr, tensor_arg(args[0], name), tensor_arg(args[1], name))

    return f


def _where(tr, args, kwargs):
    arity("where", args, 3)
    c, a, b = (tensor_arg(x, "where") for x in args)
    if c.type.dtype is not BOOL:
        raise TypeError_(f"the condition of `where` must be bool, got {c.type}")
    if broadcast_shapes(c.type.shape, a.type.shape, b.type.shape) is None:
        raise ShapeError(f"shapes do not broadcast in `where`: {c.type}, {a.type}, {b.type}")
    a, b = promote_pair(tr, a, b)
    return tr.emit(ew.select_p, [c, a, b])


def _convert(dtype):
    def f(tr, args, kwargs):
        arity(dtype.value, args, 1)
        return tr.convert(tensor_arg(args[0], dtype.value), dtype)

    return f


# --- reductions ---------------------------------------------------------------------------------


def _reduce_args(tr, name, args, kwargs, extra=()):
    """x, the axes it reduces (all when no `axis=`) and `keepdims=`, checked."""
    arity(name, args, 1)
    allowed_kwargs(name, kwargs, ("axis", "keepdims") + extra)
    x = tensor_arg(args[0], name)
    axes = axes_arg(tr, kwargs, name, x.type.rank)
    axes = tuple(range(x.type.rank)) if axes is None else axes
    return x, axes, keepdims_arg(tr, kwargs, name)


def _keep(tr, y, x, axes, keepdims):
    """y, reduced over `axes` of x, with those axes kept as 1s when keepdims."""
    if not keepdims:
        return y
    shape = tuple(1 if k in axes else d for k, d in enumerate(x.type.shape))
    return tr.emit(sh.reshape_p, [y], shape=shape)


def _as_float(tr, x):
    return x if x.type.dtype.is_float else tr.convert(x, F64)


def _count(x, axes):
    n = 1
    for a in axes:
        n *= x.type.shape[a]
    return n


def _reduction(name, prim, pair=None):
    """sum, prod, max, min; max(a, b) and min(a, b), with two positional arguments, are the
    elementwise `pair` (maximum, minimum)."""

    def f(tr, args, kwargs):
        if pair is not None and len(args) == 2:
            return _binary_builtin(name, binary(pair, name))(tr, args, kwargs)
        x, axes, keepdims = _reduce_args(tr, name, args, kwargs)
        if x.type.dtype is BOOL:
            x = tr.convert(x, I64)
        if pair is not None and any(x.type.shape[a] == 0 for a in axes):
            raise ShapeError(f"`{name}` of an empty array")
        if prim is red.reduce_sum_p and any(x.type.shape[a] == 0 for a in axes):
            # 0 whatever x holds: a constant, which reads none of x (nn.zero_of(x), the zero of
            # x's dtype, is such a sum; as a read of x it kept x from fusing into its readers)
            shape = tuple(d for k, d in enumerate(x.type.shape) if k not in axes)
            zero = tr.const(0, x.type.dtype)
            y = tr.emit(sh.broadcast_p, [zero], shape=shape) if shape else zero
            return _keep(tr, y, x, axes, keepdims)
        return _keep(tr, tr.emit(prim, [x], axes=axes), x, axes, keepdims)

    return f


def _mean_of(tr, x, axes):
    return tr.emit(ew.div_p, [tr.emit(red.reduce_sum_p, [x], axes=axes), tr.const(_count(x, axes), x.type.dtype)])


def _mean(tr, args, kwargs):
    x, axes, keepdims = _reduce_args(tr, "mean", args, kwargs)
    x = _as_float(tr, x)
    return _keep(tr, _mean_of(tr, x, axes), x, axes, keepdims)


def _variance(tr, name, args, kwargs):
    """The variance over `axes`, divided by n - ddof (0 when that is negative, as NumPy)."""
    x, axes, keepdims = _reduce_args(tr, name, args, kwargs, ("ddof",))
    x = _as_float(tr, x)
    ddof = tr.static_int(kwargs["ddof"], tr.span, f"the `ddof` of `{name}`") if "ddof" in kwargs else 0
    if ddof < 0:
        raise ShapeError(f"the `ddof` of `{name}` must be at least 0, got {ddof}")
    m = _keep(tr, _mean_of(tr, x, axes), x, axes, True)
    d = tr.emit(ew.sub_p, [x, m])
    ss = tr.emit(red.reduce_sum_p, [tr.emit(ew.mul_p, [d, d])], axes=axes)
    return tr.emit(ew.div_p, [ss, tr.const(max(_count(x, axes) - ddof, 0), x.type.dtype)]), x, axes, keepdims


def _var(tr, args, kwargs):
    v, x, axes, keepdims = _variance(tr, "var", args, kwargs)
    return _keep(tr, v, x, axes, keepdims)


def _std(tr, args, kwargs):
    """sqrt(var), whose derivative at a zero variance (a constant input) is 0 rather than the
    NaN of sqrt's infinite slope times a zero deviation: sqrt reads 1 there, and the select
    sends it no cotangent."""
    v, x, axes, keepdims = _variance(tr, "std", args, kwargs)
    zero, one = tr.const(0, v.type.dtype), tr.const(1, v.type.dtype)
    flat = tr.emit(ew.eq_p, [v, zero])
    root = tr.emit(ew.sqrt_p, [tr.emit(ew.select_p, [flat, one, v])])
    return _keep(tr, tr.emit(ew.select_p, [flat, zero, root]), x, axes, keepdims)


def _logsumexp(tr, args, kwargs):
    """log(sum(exp(x))) shifted by the largest element (stop_gradient: the shift cancels), so
    that it neither overflows nor underflows; the gradient is softmax. A group whose largest
    element is not finite is not shifted: all -inf (or empty) gives -inf, a +inf +inf (its
    exponentials are replaced by 1s), a NaN NaN; the first two with a derivative of 0, not the
    NaN of log's infinite slope at 0 or of exp's at +inf (the selects send those no tangent)."""
    x, axes, keepdims = _reduce_args(tr, "logsumexp", args, kwargs)
    x = _as_float(tr, x)
    dt = x.type.dtype
    zero, one, inf = tr.const(0, dt), tr.const(1, dt), tr.const(np.inf, dt)
    m = tr.emit(ew.stop_gradient_p, [tr.emit(red.reduce_max_p, [x], axes=axes)])  # -inf when empty
    hot = tr.emit(ew.eq_p, [m, inf])
    shift = tr.emit(ew.select_p, [tr.emit(ew.isfinite_p, [m]), m, zero])
    z = tr.emit(ew.sub_p, [x, _keep(tr, shift, x, axes, True)])
    z = tr.emit(ew.select_p, [_keep(tr, hot, x, axes, True), zero, z])
    s = tr.emit(red.reduce_sum_p, [tr.emit(ew.exp_p, [z])], axes=axes)
    none = tr.emit(ew.eq_p, [s, zero])
    lse = tr.emit(ew.add_p, [tr.emit(ew.log_p, [tr.emit(ew.select_p, [none, one, s])]), shift])
    out = tr.emit(ew.select_p, [none, tr.const(-np.inf, dt), tr.emit(ew.select_p, [hot, inf, lse])])
    return _keep(tr, out, x, axes, keepdims)


def _any_all(name, prim):
    """any: the largest of 0/1 is 1; all: the smallest is. An empty group leaves the
    reduction's identity (the smallest or largest i64), below or above 0: any false, all true."""

    def f(tr, args, kwargs):
        x, axes, keepdims = _reduce_args(tr, name, args, kwargs)
        if x.type.dtype is not BOOL:  # nonzero, as NumPy (NaN counts as true)
            x = tr.emit(ew.ne_p, [x, tr.const(0, x.type.dtype)])
        y = tr.emit(prim, [tr.convert(x, I64)], axes=axes)
        return _keep(tr, tr.emit(ew.gt_p, [y, tr.const(0, I64)]), x, axes, keepdims)

    return f


def _arg_extreme(name, smallest):
    """argmax, and argmin as the argmax of a decreasing map of x (-x for floats, where NaN
    stays NaN and so the first NaN is found, as NumPy does; -1 - x for integers, which does
    not overflow at INT64_MIN), so both share argmax's lowering and fuse the map into it."""

    def f(tr, args, kwargs):
        arity(name, args, 1)
        allowed_kwargs(name, kwargs, ("axis", "keepdims"))
        x = tensor_arg(args[0], name)
        if x.type.dtype is BOOL:
            x = tr.convert(x, I64)
        if x.type.rank == 0:
            raise ShapeError(f"`{name}` needs an array, got {x.type}")
        axes = axes_arg(tr, kwargs, name, x.type.rank, several=False)
        keepdims = keepdims_arg(tr, kwargs, name)
        shape = x.type.shape
        if x.type.size == 0 and (axes is None or shape[axes[0]] == 0):  # the other axes may be empty
            raise ShapeError(f"`{name}` of an empty axis, in {x.type}")
        if smallest:
            dt = x.type.dtype
            x = tr.emit(ew.neg_p, [x]) if dt.is_float else tr.emit(ew.sub_p, [tr.const(-1, dt), x])
        if axes is None:
            if x.type.rank > 1:
                x = tr.emit(sh.reshape_p, [x], shape=(x.type.size,))
            y = tr.emit(red.argmax_p, [x], axis=0)
            return tr.emit(sh.reshape_p, [y], shape=(1,) * len(shape)) if keepdims else y
        (axis,) = axes
        y = tr.emit(red.argmax_p, [x], axis=axis)
        return tr.emit(sh.reshape_p, [y], shape=shape[:axis] + (1,) + shape[axis + 1 :]) if keepdims else y

    return f


# --- cumulative and sorting: along one axis, -1 unless `axis=` says ------------------------------


def _numbers_arg(tr, args, name):
    """The array argument of a cumulative or sorting built-in (bool counts as i64)."""
    x = tensor_arg(args[0], name)
    if x.type.rank == 0:
        raise ShapeError(f"`{name}` needs an array, got {x.type}")
    return tr.convert(x, I64) if x.type.dtype is BOOL else x


def _on_last_axis(tr, x, axis, fn):
    """fn(x with `axis` moved last), its result's last axis moved back to `axis`."""
    last = x.type.rank - 1
    if axis == last:
        return fn(x)
    perm = tuple(k for k in range(x.type.rank) if k != axis) + (axis,)
    back = tuple(perm.index(k) for k in range(x.type.rank))
    return tr.emit(sh.transpose_p, [fn(tr.emit(sh.transpose_p, [x], perm=perm))], perm=back)


def take_along_last(tr, x: Var, ids: Var) -> Var:
    """x[..., ids[..., j]] for each j: one gather from x flattened (so its derivative is the
    gather's, which adds each cotangent at the index it was read from)."""
    lead, n = x.type.shape[:-1], x.type.shape[-1]
    flat = tr.emit(sh.reshape_p, [x], shape=(x.type.size,))
    if lead:
        rows = int(np.prod(lead))
        starts = tr.emit(ew.mul_p, [tr.emit(sh.iota_p, [], n=rows), tr.const(n, I64)])
        ids = tr.emit(ew.add_p, [ids, tr.emit(sh.reshape_p, [starts], shape=lead + (1,))])
    return tr.emit(sh.gather_p, [flat, ids])


def _static_flag(tr, kwargs, word, name):
    """A true/false keyword written in the program (it decides the code, not a value)."""
    if word not in kwargs:
        return False
    v = kwargs[word]
    if not (isinstance(v, Var) and v.type == TensorType(BOOL, ()) and v.known is not None):
        raise TypeError_(f"`{word}` of `{name}` must be true or false, known at compile time, got {describe(v)}")
    return bool(v.known)


def _axis_call(tr, name, args, kwargs, words):
    """The array and the axis (-1 unless `axis=` says) of a call f(x, axis=k, ...)."""
    arity(name, args, 1)
    allowed_kwargs(name, kwargs, words)
    x = _numbers_arg(tr, args, name)
    return x, axis_arg(tr, kwargs, name, x.type.rank, -1) % x.type.rank


def _along_last(name, fn):
    """The built-in f(x, axis=k) computed as fn(tr, y) on x with that axis moved last."""

    def f(tr, args, kwargs):
        x, axis = _axis_call(tr, name, args, kwargs, ("axis",))
        return _on_last_axis(tr, x, axis, lambda y: fn(tr, y))

    return f


def _recurrence(name, fn):
    """The built-in f(x, axis=k, reverse=b) computed as fn(tr, x, axis, reverse)."""

    def f(tr, args, kwargs):
        x, axis = _axis_call(tr, name, args, kwargs, ("axis", "reverse"))
        return fn(tr, x, axis, _static_flag(tr, kwargs, "reverse", name))

    return f


def _cumsum(tr, x, axis, reverse):
    return tr.emit(cum.linrec_p, [tr.const(1, x.type.dtype), x], axis=axis, reverse=reverse)


def _cumprod(tr, x, axis, reverse):
    """y_i = x_i * y_{i-1} (y_{i+1} in reverse), from x alone at the first step."""
    n = x.type.shape[axis]
    coefficients = cum.shift(tr.b, x, axis, toward_end=True) if reverse else x
    column = tuple(n if k == axis else 1 for k in range(x.type.rank))
    steps = tr.emit(sh.reshape_p, [tr.emit(sh.iota_p, [], n=n)], shape=column)
    first = tr.emit(ew.eq_p, [steps, tr.const(n - 1 if reverse else 0, I64)])
    start = tr.emit(ew.select_p, [first, x, tr.const(0, x.type.dtype)])
    return tr.emit(cum.linrec_p, [coefficients, start], axis=axis, reverse=reverse)


def _argsort_last(tr, y, descending=False):
    return tr.emit(srt.argsort_p, [y], descending=descending)


def _cummax_last(tr, y):
    return take_along_last(tr, y, tr.emit(cum.cumargmax_p, [y]))


def _sort_last(tr, y):
    return take_along_last(tr, y, _argsort_last(tr, y))


def _top_k(tr, args, kwargs):
    arity("top_k", args, 2)
    allowed_kwargs("top_k", kwargs, ())
    x = _numbers_arg(tr, args, "top_k")
    n = x.type.shape[-1]
    k = count_arg(tr, args, 1, "the k of `top_k`", least=0, most=n)
    order = _argsort_last(tr, x, descending=True)
    lead = x.type.shape[:-1]
    ids = tr.emit(sh.slice_p, [order], starts=(0,) * x.type.rank, limits=lead + (k,))
    return (take_along_last(tr, x, ids), ids)


# --- shapes -------------------------------------------------------------------------------------


def _fill(name, value):
    def f(tr, args, kwargs):
        arity(name, args, 1)
        shape = static_shape(tr, args[0], name)
        return tr.emit(sh.broadcast_p, [tr.const(value, F64)], shape=shape)

    return f


def _full(tr, args, kwargs):
    arity("full", args, 2)
    shape = static_shape(tr, args[0], "full")
    v = tensor_arg(args[1], "full", "fill value")
    if v.type.rank != 0:
        v = v  # an array fill broadcasts like NumPy's full
    return tr.emit(sh.broadcast_p, [v], shape=shape)


def _shape(tr, args, kwargs):
    arity("shape", args, 1)
    x = tensor_arg(args[0], "shape")
    return tr.const(np.array(x.type.shape, dtype=np.int64), I64)


def _len(tr, args, kwargs):
    arity("len", args, 1)
    x = args[0]
    if isinstance(x, tuple):
        return tr.const(len(x), I64)
    x = tensor_arg(x, "len")
    if x.type.rank == 0:
        raise TypeError_(f"`len` of a scalar ({x.type})")
    return tr.const(x.type.shape[0], I64)


def _reshape(tr, args, kwargs):
    arity("reshape", args, 2)
    x = tensor_arg(args[0], "reshape")
    v = args[1]
    if isinstance(v, Var) and v.type.dtype is I64 and v.type.rank <= 1 and v.known is not None:
        dims = [int(d) for d in np.atleast_1d(v.known)]  # one -1 may stand for the dimension that fits
    else:
        dims = list(static_shape(tr, v, "reshape"))
    return tr.emit(sh.reshape_p, [x], shape=_infer_dim(x.type, dims))


def _infer_dim(t: TensorType, dims: list[int]) -> tuple[int, ...]:
    """The shape `dims` with its one -1 replaced by the size that keeps t's element count."""
    holes = [k for k, d in enumerate(dims) if d == -1]
    if any(d < -1 for d in dims):
        raise ShapeError(f"negative dimension in the shape {dims} of `reshape`")
    if len(holes) > 1:
        raise ShapeError(f"`reshape` can infer one dimension, but {dims} has {len(holes)} -1s")
    if holes:
        known = int(np.prod([d for d in dims if d != -1]))
        if known == 0 or t.size % known:
            raise ShapeError(f"cannot reshape {t} ({t.size} elements) to {dims}: no size for the -1 fits")
        dims[holes[0]] = t.size // known
    return tuple(dims)


def _segment_sum(tr, args, kwargs):
    """out[s] = the sum of data's rows whose id is s: the transpose of the gather data[ids]."""
    arity("segment_sum", args, 3)
    data = tensor_arg(args[0], "segment_sum", "data")
    ids = tensor_arg(args[1], "segment_sum", "segment ids")
    n = count_arg(tr, args, 2, "the number of segments of `segment_sum`")
    if ids.type.dtype is not I64 or ids.type.rank == 0:
        raise TypeError_(f"`segment_sum` needs an array of integer segment ids, got {ids.type}", tr.arg_span(1))
    if data.type.shape[: ids.type.rank] != ids.type.shape:
        raise ShapeError(f"`segment_sum`: ids {ids.type} must have the shape of the leading axes of {data.type}")
    if ids.known is not None:
        _static_bounds(ids.known, n, tr.arg_span(1), 0)
    if data.type.dtype is BOOL:
        data = tr.convert(data, I64)
    return tr.emit(sh.gather_add_p, [data, ids], shape=(n,) + data.type.shape[ids.type.rank :])


def _transpose(tr, args, kwargs):
    arity("transpose", args, 1, 2)
    x = tensor_arg(args[0], "transpose")
    if len(args) == 2:
        perm = static_shape(tr, args[1], "transpose")
        if sorted(perm) != list(range(x.type.rank)):
            raise ShapeError(f"{list(perm)} is not a permutation of the axes of {x.type}")
    else:
        perm = tuple(reversed(range(x.type.rank)))
    return tr.emit(sh.transpose_p, [x], perm=tuple(perm))


def _arange(tr, args, kwargs):
    arity("arange", args, 1)
    n = count_arg(tr, args, 0, "the length of `arange`")
    return tr.emit(sh.iota_p, [], n=n)


def _one_hot(tr, args, kwargs):
    arity("one_hot", args, 2)
    ids = tensor_arg(args[0], "one_hot")
    if ids.type.dtype is not I64:
        raise TypeError_(f"`one_hot` needs integer ids, got {ids.type}")
    n = count_arg(tr, args, 1, "the depth of `one_hot`")
    col = tr.emit(sh.reshape_p, [ids], shape=ids.type.shape + (1,))
    hit = tr.emit(ew.eq_p, [col, tr.emit(sh.iota_p, [], n=n)])
    return tr.convert(hit, F64)


def _parts(tr, name, args, kwargs):
    allowed_kwargs(name, kwargs, ("axis",))
    if not args:
        raise TypeError_(f"`{name}` needs at least one array")
    xs = [tensor_arg(a, name) for a in args]
    dt = xs[0].type.dtype
    for x in xs[1:]:
        dt = promote(dt, x.type.dtype)
    return [tr.convert(x, dt) for x in xs]


def _concat(tr, args, kwargs):
    xs = _parts(tr, "concat", args, kwargs)
    axis = axis_arg(tr, kwargs, "concat", max(xs[0].type.rank, 1), 0)
    if len(xs) == 1:
        return xs[0]
    return tr.emit(sh.concat_p, xs, axis=axis)


def _stack(tr, args, kwargs):
    xs = _parts(tr, "stack", args, kwargs)
    axis = axis_arg(tr, kwargs, "stack", xs[0].type.rank + 1, 0)
    return tr.stack(xs, axis)


# --- randomness -------------------------------------------------------------------------------


def _key(tr, args, kwargs):
    arity("key", args, 1)
    seed = tensor_arg(args[0], "key")
    if seed.type != TensorType(I64, ()):
        raise TypeError_(f"`key` needs an integer seed, got {seed.type}")
    return tr.emit(sh.concat_p, [tr.const(np.zeros(1, np.int64)), tr.emit(sh.reshape_p, [seed], shape=(1,))], axis=0)


def _key_arg(x, name):
    if not (isinstance(x, Var) and x.type == TensorType(I64, (2,))):
        raise TypeError_(f"`{name}` needs a key made by `key` or `split`, got {describe(x)}")
    return x


MAX_SPLIT = 4096  # keys of one split: a tuple, unrolled at compile time (many keys: normal(k, [n, ...]))


def _split(tr, args, kwargs):
    arity("split", args, 1, 2)
    k = _key_arg(args[0], "split")
    count = count_arg(tr, args, 1, "the count of `split`", least=1, most=MAX_SPLIT) if len(args) == 2 else 2
    bits = tr.emit(rnd.random_bits_p, [k], shape=(count, 2))
    return tuple(tr.emit(sh.index_p, [bits, tr.const(i, I64)]) for i in range(count))


def _uniform(tr, args, kwargs):
    arity("uniform", args, 2)
    k = _key_arg(args[0], "uniform")
    return tr.emit(rnd.random_uniform_p, [k], shape=static_shape(tr, args[1], "uniform"))


def _normal(tr, args, kwargs):
    arity("normal", args, 2)
    k = _key_arg(args[0], "normal")
    return tr.emit(rnd.random_normal_p, [k], shape=static_shape(tr, args[1], "normal"))


def _randint(tr, args, kwargs):
    arity("randint", args, 4)
    k = _key_arg(args[0], "randint")
    shape = static_shape(tr, args[1], "randint")
    lo = tr.static_int(args[2], tr.arg_span(2), "the low end of `randint`")
    hi = tr.static_int(args[3], tr.arg_span(3), "the high end of `randint`")
    if lo >= hi:
        raise ShapeError(f"`randint` needs low < high, got [{lo}, {hi})", tr.arg_span(2))
    return tr.emit(rnd.random_int_p, [k], shape=shape, lo=lo, hi=hi)


def _probabilities(tr, x, name, what):
    x = tensor_arg(x, name, what)
    if not x.type.dtype.is_float:
        raise TypeError_(f"the {what} of `{name}` must be floats, got {x.type}")
    return tr.convert(x, F64)


def _bernoulli(tr, args, kwargs):
    """True with probability p: a uniform draw below p (never for p <= 0, always for p >= 1)."""
    arity("bernoulli", args, 2, 3)
    k = _key_arg(args[0], "bernoulli")
    p = _probabilities(tr, args[1], "bernoulli", "probability")
    shape = static_shape(tr, args[2], "bernoulli") if len(args) == 3 else p.type.shape
    if broadcast_shapes(p.type.shape, shape) != tuple(shape):
        raise ShapeError(f"the probabilities {p.type} of `bernoulli` do not broadcast to the shape {list(shape)}")
    return tr.emit(ew.lt_p, [tr.emit(rnd.random_uniform_p, [k], shape=shape), p])


def _categorical(tr, args, kwargs):
    """Gumbel-max: the argmax of logits + g, g = -log(-log(u)) for u uniform in [0, 1) (u = 0
    gives g = -inf, never chosen), is a draw with probabilities softmax(logits)."""
    arity("categorical", args, 2)
    allowed_kwargs("categorical", kwargs, ("axis",))
    k = _key_arg(args[0], "categorical")
    logits = _probabilities(tr, args[1], "categorical", "logits")
    if logits.type.rank == 0:
        raise ShapeError(f"`categorical` needs an array of logits, got {logits.type}")
    axis = axis_arg(tr, kwargs, "categorical", logits.type.rank, -1) % logits.type.rank
    if logits.type.shape[axis] == 0:
        raise ShapeError(f"`categorical` of an empty axis, in {logits.type}")
    u = tr.emit(rnd.random_uniform_p, [k], shape=logits.type.shape)
    gumbel = tr.emit(ew.neg_p, [tr.emit(ew.log_p, [tr.emit(ew.neg_p, [tr.emit(ew.log_p, [u])])])])
    noisy = tr.emit(ew.add_p, [logits, gumbel])
    return tr.emit(red.argmax_p, [noisy], axis=axis)


def _permutation_of(tr, k, n):
    """A random permutation of 0..n-1: the order of n random 64-bit numbers (ties, of
    probability below n**2 / 2**65, keep index order)."""
    return tr.emit(srt.argsort_p, [tr.emit(rnd.random_bits_p, [k], shape=(n,))], descending=False)


def _permutation(tr, args, kwargs):
    arity("permutation", args, 2)
    k = _key_arg(args[0], "permutation")
    return _permutation_of(tr, k, count_arg(tr, args, 1, "the length of `permutation`"))


def _shuffle(tr, args, kwargs):
    arity("shuffle", args, 2)
    k = _key_arg(args[0], "shuffle")
    x = tensor_arg(args[1], "shuffle")
    if x.type.rank == 0:
        raise ShapeError(f"`shuffle` permutes the rows of an array, got {x.type}")
    return tr.emit(sh.gather_p, [x, _permutation_of(tr, k, x.type.shape[0])])


# --- effects ----------------------------------------------------------------------------------


def _print(tr, args, kwargs):
    label = ""
    if args and isinstance(args[0], str):
        label, args = args[0], args[1:]
    leaves, tree = flatten(tuple(args))
    for x in leaves:
        if not isinstance(x, Var):
            raise TypeError_(f"`print` can print arrays, numbers, tuples and records, not {describe(x)}")
    tr.emit_n(io.print_p, leaves, label=label, tree=tree)
    return ()


def _assert(tr, args, kwargs):
    """A check of what is known while compiling (shapes, sizes, static arguments), so that a
    library function can refuse a wrong use with its own words, located at the user's call."""
    arity("assert", args, 2)
    cond, message = args
    if not isinstance(message, str):
        raise TypeError_(f"the second argument of `assert` must be a message in quotes, got {describe(message)}")
    if not (isinstance(cond, Var) and cond.type == TensorType(BOOL, ())):
        raise TypeError_(f"`assert` needs a bool condition, got {describe(cond)}")
    if cond.known is None:
        raise TypeError_(
            "`assert` checks a condition known at compile time (shapes, sizes, literals, static "
            "arguments); this one depends on run-time values"
        )
    if not cond.known:
        raise ShapeError(message)
    return ()


BUILTINS = {
    "abs": _abs,
    "exp": _unary_float(ew.exp_p),
    "log": _unary_float(ew.log_p),
    "log1p": _unary_float(ew.log1p_p),
    "sqrt": _unary_float(ew.sqrt_p),
    "sin": _unary_float(ew.sin_p),
    "cos": _unary_float(ew.cos_p),
    "tanh": _unary_float(ew.tanh_p),
    "sigmoid": _unary_float(ew.sigmoid_p),
    "erf": _unary_float(ew.erf_p),
    "tan": _unary_float(ew.tan_p),
    "floor": _rounding(ew.floor_p),
    "ceil": _rounding(ew.ceil_p),
    "round": _rounding(ew.round_p),
    "sign": _sign,
    "isnan": _float_test(ew.isnan_p, False),
    "isfinite": _float_test(ew.isfinite_p, True),
    "clip": _clip,
    "relu": _relu,
    "maximum": _binary_builtin("maximum", binary(ew.max_p, "maximum")),
    "minimum": _binary_builtin("minimum", binary(ew.min_p, "minimum")),
    "pow": _binary_builtin("pow", power),
    "where": _where,
    "f64": _convert(DType.F64),
    "f32": _convert(DType.F32),
    "i64": _convert(DType.I64),
    "sum": _reduction("sum", red.reduce_sum_p),
    "prod": _reduction("prod", red.reduce_prod_p),
    "max": _reduction("max", red.reduce_max_p, ew.max_p),
    "min": _reduction("min", red.reduce_min_p, ew.min_p),
    "mean": _mean,
    "argmax": _arg_extreme("argmax", smallest=False),
    "argmin": _arg_extreme("argmin", smallest=True),
    "any": _any_all("any", red.reduce_max_p),
    "all": _any_all("all", red.reduce_min_p),
    "var": _var,
    "std": _std,
    "logsumexp": _logsumexp,
    "cumsum": _recurrence("cumsum", _cumsum),
    "cumprod": _recurrence("cumprod", _cumprod),
    "cummax": _along_last("cummax", _cummax_last),
    "sort": _along_last("sort", _sort_last),
    "argsort": _along_last("argsort", _argsort_last),
    "top_k": _top_k,
    "zeros": _fill("zeros", 0.0),
    "ones": _fill("ones", 1.0),
    "full": _full,
    "shape": _shape,
    "len": _len,
    "reshape": _reshape,
    "transpose": _transpose,
    "segment_sum": _segment_sum,
    "einsum": einsum,
    "arange": _arange,
    "one_hot": _one_hot,
    "concat": _concat,
    "stack": _stack,
    "map": _map,
    "fold": _fold,
    "scan": _scan,
    "unfold": _unfold,
    "iterate": _iterate,
    "while": _while,
    "treemap": _treemap,
    "treefold": _treefold,
    "windows": _windows,
    "key": _key,
    "split": _split,
    "uniform": _uniform,
    "normal": _normal,
    "randint": _randint,
    "bernoulli": _bernoulli,
    "categorical": _categorical,
    "permutation": _permutation,
    "shuffle": _shuffle,
    "print": _print,
    "assert": _assert,
}

BUILTINS.update(AD_BUILTINS)

__all__ = ["BUILTINS", "BINOPS", "Builtin", "Partial", "Record"]
