"""The built-in functions and operators of DFL, as the specialiser traces them into IR.

Each built-in checks its arguments (arity, types, static shapes) and reports mistakes at the
call, then emits primitives. Promotion rules live here (`binary`), so primitives can demand
operands of one dtype."""

from __future__ import annotations

import numpy as np

from ..errors import BoundsError, ShapeError, TypeError_
from ..ir.core import Var
from ..optimise.licm import hoist
from ..prims import elementwise as ew
from ..prims import io, linalg, scan, while_
from ..prims import random as rnd
from ..prims import reduce as red
from ..prims import shape as sh
from ..pytree import Record, flatten, unflatten
from ..typesys import DType, TensorType, broadcast_shapes, promote
from .values import FUNCTION_TYPES, Builtin, Partial, describe

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
    if a.type.rank == 0 or b.type.rank == 0 or a.type.rank > 2 or b.type.rank > 2:
        raise ShapeError(f"`@` needs vectors or matrices, got {a.type} @ {b.type}")
    ka = a.type.shape[-1]
    kb = b.type.shape[0]
    if ka != kb:
        raise ShapeError(f"inner dimensions of `@` disagree: {a.type} @ {b.type} ({ka} vs {kb})")
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
            starts.append(0)
            limits.append(n)
            scalar_axes.append(k)
            scalar_idx.append(v)
    if any(lo != 0 or hi != n for lo, hi, n in zip(starts, limits, t.shape)):
        x = tr.emit(sh.slice_p, [x], starts=tuple(starts), limits=tuple(limits))
    if not scalar_axes:
        return x
    if scalar_axes != list(range(len(scalar_axes))):
        rest = [k for k in range(x.type.rank) if k not in scalar_axes]
        x = tr.emit(sh.transpose_p, [x], perm=tuple(scalar_axes + rest))
    return tr.emit(sh.index_p, [x] + scalar_idx)


def _static_bounds(known, n, span, axis):
    for i in np.atleast_1d(known).reshape(-1):
        if not -n <= int(i) < n:
            raise BoundsError(f"index {int(i)} is out of bounds for axis {axis} with length {n}", span)


# --- argument checking -------------------------------------------------------------------------


def _arity(name, args, lo, hi=None):
    hi = lo if hi is None else hi
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else (f"{lo} to {hi}" if hi < 99 else f"at least {lo}")
        raise TypeError_(f"`{name}` takes {want} argument{'s' * (want != '1')}, got {len(args)}")


def _kwargs(name, kwargs, allowed):
    for k in kwargs:
        if k not in allowed:
            ok = ", ".join(f"`{a}`" for a in allowed) or "none"
            raise TypeError_(f"`{name}` has no keyword argument `{k}` (it takes {ok})")


def _tensor(x, name, what="argument"):
    if not isinstance(x, Var):
        raise TypeError_(f"`{name}` needs an array or a number as its {what}, got {describe(x)}")
    return x


def _func(f, name):
    if not isinstance(f, FUNCTION_TYPES):
        raise TypeError_(f"`{name}` needs a function as its first argument, got {describe(f)}")
    return f


def _static_shape(tr, v, name) -> tuple[int, ...]:
    """A shape argument: a list literal or shape(...) of ints known at compile time."""
    if isinstance(v, tuple):
        return tuple(tr.static_int(x, tr.span, f"a dimension in `{name}`") for x in v)
    if isinstance(v, Var) and v.type.dtype is I64 and v.type.rank <= 1 and v.known is not None:
        dims = tuple(int(d) for d in np.atleast_1d(v.known))
        if any(d < 0 for d in dims):
            raise ShapeError(f"negative dimension in the shape {list(dims)} of `{name}`")
        return dims
    raise TypeError_(f"`{name}` needs a shape known at compile time, like [2, 3] or shape(x), got {describe(v)}")


def _axis(tr, kwargs, name, rank, default=None):
    if "axis" not in kwargs:
        return default
    a = tr.static_int(kwargs["axis"], tr.span, f"the axis of `{name}`")
    if not -rank <= a < rank:
        raise ShapeError(f"axis {a} is out of range for an array of rank {rank} in `{name}`")
    return a % rank


# --- elementwise --------------------------------------------------------------------------------


def _unary_float(prim):
    def f(tr, args, kwargs):
        _arity(prim.name, args, 1)
        _kwargs(prim.name, kwargs, ())
        return arith_unary(tr, prim, _tensor(args[0], prim.name), floats=True)

    return f


def _abs(tr, args, kwargs):
    _arity("abs", args, 1)
    return arith_unary(tr, ew.abs_p, _tensor(args[0], "abs"))


def _relu(tr, args, kwargs):
    _arity("relu", args, 1)
    x = _tensor(args[0], "relu")
    zero = tr.const(0, x.type.dtype if x.type.dtype is not BOOL else I64)
    return binary(ew.max_p, "relu")(tr, zero, x)  # zero first: at a tie (x == 0) the derivative is 0


def _binary_builtin(name, fn):
    def f(tr, args, kwargs):
        _arity(name, args, 2)
        _kwargs(name, kwargs, ())
        return fn(tr, _tensor(args[0], name), _tensor(args[1], name))

    return f


def _where(tr, args, kwargs):
    _arity("where", args, 3)
    c, a, b = (_tensor(x, "where") for x in args)
    if c.type.dtype is not BOOL:
        raise TypeError_(f"the condition of `where` must be bool, got {c.type}")
    if broadcast_shapes(c.type.shape, a.type.shape, b.type.shape) is None:
        raise ShapeError(f"shapes do not broadcast in `where`: {c.type}, {a.type}, {b.type}")
    a, b = promote_pair(tr, a, b)
    return tr.emit(ew.select_p, [c, a, b])


def _convert(dtype):
    def f(tr, args, kwargs):
        _arity(dtype.value, args, 1)
        return tr.convert(_tensor(args[0], dtype.value), dtype)

    return f


# --- reductions ---------------------------------------------------------------------------------


def _reduction(name, prim):
    def f(tr, args, kwargs):
        _arity(name, args, 1)
        _kwargs(name, kwargs, ("axis",))
        x = _tensor(args[0], name)
        if x.type.dtype is BOOL:
            x = tr.convert(x, I64)
        axis = _axis(tr, kwargs, name, x.type.rank)
        axes = tuple(range(x.type.rank)) if axis is None else (axis,)
        if name in ("max", "min") and any(x.type.shape[a] == 0 for a in axes):
            raise ShapeError(f"`{name}` of an empty array")
        return tr.emit(prim, [x], axes=axes)

    return f


def _mean(tr, args, kwargs):
    _arity("mean", args, 1)
    _kwargs("mean", kwargs, ("axis",))
    x = _tensor(args[0], "mean")
    if not x.type.dtype.is_float:
        x = tr.convert(x, F64)
    axis = _axis(tr, kwargs, "mean", x.type.rank)
    axes = tuple(range(x.type.rank)) if axis is None else (axis,)
    count = 1
    for a in axes:
        count *= x.type.shape[a]
    s = tr.emit(red.reduce_sum_p, [x], axes=axes)
    return tr.emit(ew.div_p, [s, tr.const(count, x.type.dtype)])


def _argmax(tr, args, kwargs):
    _arity("argmax", args, 1)
    _kwargs("argmax", kwargs, ("axis",))
    x = _tensor(args[0], "argmax")
    if x.type.dtype is BOOL:
        x = tr.convert(x, I64)
    if x.type.rank == 0 or x.type.size == 0:
        raise ShapeError(f"`argmax` needs a non-empty array, got {x.type}")
    axis = _axis(tr, kwargs, "argmax", x.type.rank)
    if axis is None and x.type.rank > 1:
        x = tr.emit(sh.reshape_p, [x], shape=(x.type.size,))
        axis = 0
    return tr.emit(red.argmax_p, [x], axis=axis or 0)


# --- shapes -------------------------------------------------------------------------------------


def _fill(name, value):
    def f(tr, args, kwargs):
        _arity(name, args, 1)
        shape = _static_shape(tr, args[0], name)
        return tr.emit(sh.broadcast_p, [tr.const(value, F64)], shape=shape)

    return f


def _full(tr, args, kwargs):
    _arity("full", args, 2)
    shape = _static_shape(tr, args[0], "full")
    v = _tensor(args[1], "full", "fill value")
    if v.type.rank != 0:
        v = v  # an array fill broadcasts like NumPy's full
    return tr.emit(sh.broadcast_p, [v], shape=shape)


def _shape(tr, args, kwargs):
    _arity("shape", args, 1)
    x = _tensor(args[0], "shape")
    return tr.const(np.array(x.type.shape, dtype=np.int64), I64)


def _len(tr, args, kwargs):
    _arity("len", args, 1)
    x = args[0]
    if isinstance(x, tuple):
        return tr.const(len(x), I64)
    x = _tensor(x, "len")
    if x.type.rank == 0:
        raise TypeError_(f"`len` of a scalar ({x.type})")
    return tr.const(x.type.shape[0], I64)


def _reshape(tr, args, kwargs):
    _arity("reshape", args, 2)
    x = _tensor(args[0], "reshape")
    shape = list(_static_shape(tr, args[1], "reshape"))
    return tr.emit(sh.reshape_p, [x], shape=tuple(shape))


def _transpose(tr, args, kwargs):
    _arity("transpose", args, 1, 2)
    x = _tensor(args[0], "transpose")
    if len(args) == 2:
        perm = _static_shape(tr, args[1], "transpose")
        if sorted(perm) != list(range(x.type.rank)):
            raise ShapeError(f"{list(perm)} is not a permutation of the axes of {x.type}")
    else:
        perm = tuple(reversed(range(x.type.rank)))
    return tr.emit(sh.transpose_p, [x], perm=tuple(perm))


def _arange(tr, args, kwargs):
    _arity("arange", args, 1)
    n = tr.static_int(args[0], tr.span, "the length of `arange`")
    if n < 0:
        raise ShapeError(f"`arange` of a negative length ({n})")
    return tr.emit(sh.iota_p, [], n=n)


def _one_hot(tr, args, kwargs):
    _arity("one_hot", args, 2)
    ids = _tensor(args[0], "one_hot")
    if ids.type.dtype is not I64:
        raise TypeError_(f"`one_hot` needs integer ids, got {ids.type}")
    n = tr.static_int(args[1], tr.span, "the depth of `one_hot`")
    col = tr.emit(sh.reshape_p, [ids], shape=ids.type.shape + (1,))
    hit = tr.emit(ew.eq_p, [col, tr.emit(sh.iota_p, [], n=n)])
    return tr.convert(hit, F64)


def _parts(tr, name, args, kwargs):
    _kwargs(name, kwargs, ("axis",))
    if not args:
        raise TypeError_(f"`{name}` needs at least one array")
    xs = [_tensor(a, name) for a in args]
    dt = xs[0].type.dtype
    for x in xs[1:]:
        dt = promote(dt, x.type.dtype)
    return [tr.convert(x, dt) for x in xs]


def _concat(tr, args, kwargs):
    xs = _parts(tr, "concat", args, kwargs)
    axis = _axis(tr, kwargs, "concat", max(xs[0].type.rank, 1), 0)
    if len(xs) == 1:
        return xs[0]
    return tr.emit(sh.concat_p, xs, axis=axis)


def _stack(tr, args, kwargs):
    xs = _parts(tr, "stack", args, kwargs)
    axis = _axis(tr, kwargs, "stack", xs[0].type.rank + 1, 0)
    return tr.stack(xs, axis)


# --- higher-order -----------------------------------------------------------------------------


def _leading(tr, name, trees):
    """Flatten trees of arrays mapped over their leading axis; all must have one length."""
    leaves, defs = [], []
    for t in trees:
        ls, d = flatten(t)
        for x in ls:
            x = _tensor(x, name, "array")
            if x.type.rank == 0:
                raise ShapeError(f"`{name}` needs arrays to iterate over, got a scalar {x.type}")
            leaves.append(x)
        defs.append((d, len(ls)))
    lengths = {x.type.shape[0] for x in leaves}
    if len(lengths) > 1:
        raise ShapeError(f"`{name}` over arrays of different lengths: " + ", ".join(str(x.type) for x in leaves))
    return leaves, defs, (lengths.pop() if lengths else None)


def _split_rows(defs, rows):
    out, k = [], 0
    for d, count in defs:
        out.append(unflatten(d, rows[k : k + count]))
        k += count
    return out


def _map(tr, args, kwargs):
    _arity("map", args, 2, 99)
    f = _func(args[0], "map")
    leaves, defs, n = _leading(tr, "map", args[1:])
    span = tr.span
    return tr.map_loop(n, lambda i, rows: tr.call(f, _split_rows(defs, rows), {}, span), leaves)


def _carry_types(tr, init):
    leaves, tree = flatten(init)
    return [_tensor(x, "fold", "initial value") for x in leaves], tree


def _checkpoint_arg(tr, kwargs, name):
    if "checkpoint" not in kwargs:
        return None
    k = tr.static_int(kwargs["checkpoint"], tr.span, f"the `checkpoint` segment length of `{name}`")
    if k < 1:
        raise TypeError_(f"the `checkpoint` segment length of `{name}` must be at least 1, got {k}")
    return k


def segmented_scan(tr, name, f_step, init, xs_leaves, length, reverse, ys_wanted, k):
    """scan ..., checkpoint=k: an outer loop over segments of k steps, each segment a
    checkpointed inner loop. The backward pass keeps one carry per segment and recomputes a
    segment's steps when it reaches it: memory O(T/k + k) instead of O(T)."""
    from .ad_builtins import checkpointed

    nseg, rem = divmod(length, k)

    def rows(lo, hi):
        return [
            tr.emit(sh.slice_p, [x], starts=(lo,) + (0,) * (x.type.rank - 1), limits=(hi,) + x.type.shape[1:])
            for x in xs_leaves
        ]

    def segment(carry, seg_rows, n):
        if ys_wanted:
            return checkpointed(
                tr, lambda c, *r: scan_loop(tr, name, f_step, c, list(r), n, reverse), [carry] + list(seg_rows)
            )
        inner = lambda c, *r: scan_loop(tr, name, f_step, c, list(r), n, reverse, False)[0]  # noqa: E731
        return checkpointed(tr, inner, [carry] + list(seg_rows)), None

    def run_segments(carry):
        seg_xs = [tr.emit(sh.reshape_p, [x], shape=(nseg, k) + x.type.shape[1:]) for x in rows(0, nseg * k)]
        c, ys = scan_loop(tr, name, lambda c, r: segment(c, r, k), carry, seg_xs, nseg, reverse, ys_wanted)
        if ys_wanted:
            ys = _map_leaves(ys, lambda y: tr.emit(sh.reshape_p, [y], shape=(nseg * k,) + y.type.shape[2:]))
        return c, ys

    def run_rest(carry):
        return segment(carry, rows(nseg * k, length), rem)

    if rem == 0:
        return run_segments(init)
    if not reverse:
        c, ys1 = run_segments(init)
        c, ys2 = run_rest(c)
    else:
        c, ys2 = run_rest(init)
        c, ys1 = run_segments(c)
    if not ys_wanted:
        return c, None
    return c, _zip_leaves(ys1, ys2, lambda a, b: tr.emit(sh.concat_p, [a, b], axis=0))


def _map_leaves(tree, fn):
    leaves, t = flatten(tree)
    return unflatten(t, [fn(x) for x in leaves])


def _zip_leaves(a, b, fn):
    la, t = flatten(a)
    lb, _ = flatten(b)
    return unflatten(t, [fn(x, y) for x, y in zip(la, lb)])


def scan_loop(tr, name, f_step, init, xs_leaves, length, reverse, ys_wanted=True, checkpoint=None):
    """The shared core of fold, scan, unfold and iterate.
    f_step(carry_tree_value, x_rows) -> (new carry value, y value or None)."""
    if checkpoint is not None and checkpoint < length:
        return segmented_scan(tr, name, f_step, init, xs_leaves, length, reverse, ys_wanted, checkpoint)
    init_leaves, ctree = _carry_types(tr, init)
    carry_types = [x.type for x in init_leaves]
    for attempt in range(2):
        ys_tree = []

        def body(i, *params):
            carry = unflatten(ctree, params[: len(carry_types)])
            new, y = f_step(carry, list(params[len(carry_types) :]))
            nleaves, ntree = flatten(new)
            if ntree != ctree:
                raise ShapeError(
                    f"the step function of `{name}` must return a carry of the same structure as "
                    f"the initial value: expected {describe(init)}, got {describe(new)}"
                )
            ys_tree.append(y)
            return tuple(nleaves) + ((y,) if ys_wanted else ())

        types = [TensorType(I64, ())] + carry_types + [x.type.with_shape(x.type.shape[1:]) for x in xs_leaves]
        body_ir, captured, tree = tr.trace_body(types, body)
        out_carry = body_ir.out_types[: len(carry_types)]
        if out_carry == carry_types:
            break
        widened = []
        for a, b in zip(carry_types, out_carry):
            if a.shape != b.shape or attempt == 1:
                raise ShapeError(
                    f"the step function of `{name}` must return a carry shaped like the initial value: "
                    f"expected {_types_str(carry_types)}, got {_types_str(out_carry)}"
                )
            widened.append(a.with_dtype(promote(a.dtype, b.dtype)))
        carry_types = widened
        init_leaves = [tr.convert(x, t.dtype) for x, t in zip(init_leaves, carry_types)]
    body_ir, captured = hoist(tr.b, body_ir, 1 + len(carry_types) + len(xs_leaves), captured, length == 0)
    outs = tr.emit_n(
        scan.scan_p,
        init_leaves + xs_leaves + captured,
        body=body_ir,
        length=length,
        num_carry=len(carry_types),
        num_xs=len(xs_leaves),
        reverse=reverse,
    )
    carry = unflatten(ctree, outs[: len(carry_types)])
    if not ys_wanted:
        return carry, None
    ys_leaves_tree = tree.children[-1]
    return carry, unflatten(ys_leaves_tree, outs[len(carry_types) :])


def _types_str(ts):
    return ts[0].__str__() if len(ts) == 1 else "(" + ", ".join(map(str, ts)) + ")"


def _fold(tr, args, kwargs):
    _arity("fold", args, 3)
    _kwargs("fold", kwargs, ("checkpoint",))
    f, init, xs = _func(args[0], "fold"), args[1], args[2]
    leaves, defs, n = _leading(tr, "fold", [xs])
    span = tr.span

    def step(carry, rows):
        return tr.call(f, [carry, _split_rows(defs, rows)[0]], {}, span), None

    return scan_loop(
        tr, "fold", step, init, leaves, n, False, ys_wanted=False, checkpoint=_checkpoint_arg(tr, kwargs, "fold")
    )[0]


def _scan(tr, args, kwargs):
    _arity("scan", args, 3)
    _kwargs("scan", kwargs, ("reverse", "checkpoint"))
    f, init, xs = _func(args[0], "scan"), args[1], args[2]
    reverse = False
    if "reverse" in kwargs:
        r = kwargs["reverse"]
        if not (isinstance(r, Var) and r.type.dtype is BOOL and r.known is not None):
            raise TypeError_("`reverse` of `scan` must be true or false")
        reverse = bool(r.known)
    leaves, defs, n = _leading(tr, "scan", [xs])
    span = tr.span

    def step(carry, rows):
        out = tr.call(f, [carry, _split_rows(defs, rows)[0]], {}, span)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError_(f"the step function of `scan` must return a pair (carry, output), got {describe(out)}")
        return out

    return scan_loop(tr, "scan", step, init, leaves, n, reverse, checkpoint=_checkpoint_arg(tr, kwargs, "scan"))


def _unfold(tr, args, kwargs):
    _arity("unfold", args, 3)
    f, init = _func(args[0], "unfold"), args[1]
    n = tr.static_int(args[2], tr.span, "the length of `unfold`")
    span = tr.span

    def step(carry, rows):
        out = tr.call(f, [carry], {}, span)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError_(f"the function of `unfold` must return a pair (state, output), got {describe(out)}")
        return out

    return scan_loop(tr, "unfold", step, init, [], n, False)[1]


def _iterate(tr, args, kwargs):
    _arity("iterate", args, 3)
    _kwargs("iterate", kwargs, ("checkpoint",))
    f, init = _func(args[0], "iterate"), args[1]
    n = tr.static_int(args[2], tr.span, "the count of `iterate`")
    span = tr.span
    return scan_loop(
        tr,
        "iterate",
        lambda c, rows: (tr.call(f, [c], {}, span), None),
        init,
        [],
        n,
        False,
        ys_wanted=False,
        checkpoint=_checkpoint_arg(tr, kwargs, "iterate"),
    )[0]


def _while(tr, args, kwargs):
    _arity("while", args, 3)
    cond_f, body_f, init = _func(args[0], "while"), _func(args[1], "while"), args[2]
    span = tr.span
    init_leaves, tree = _carry_types(tr, init)
    types = [x.type for x in init_leaves]
    for attempt in range(2):

        def cond(*params):
            c = tr.call(cond_f, [unflatten(tree, params)], {}, span)
            if not (isinstance(c, Var) and c.type == TensorType(BOOL, ())):
                raise TypeError_(f"the condition of `while` must return a bool, got {describe(c)}")
            return c

        def body(*params):
            new = tr.call(body_f, [unflatten(tree, params)], {}, span)
            if flatten(new)[1] != tree:
                raise ShapeError(
                    f"the body of `while` must return a state shaped like the initial one: expected "
                    f"{describe(init)}, got {describe(new)}"
                )
            return new

        body_ir, body_cap, _ = tr.trace_body(types, body)
        if body_ir.out_types == types:
            break
        if attempt == 1 or any(a.shape != b.shape for a, b in zip(types, body_ir.out_types)):
            raise ShapeError(
                f"the body of `while` must return a state shaped like the initial one: expected "
                f"{_types_str(types)}, got {_types_str(body_ir.out_types)}"
            )
        types = [a.with_dtype(promote(a.dtype, b.dtype)) for a, b in zip(types, body_ir.out_types)]
        init_leaves = [tr.convert(x, t.dtype) for x, t in zip(init_leaves, types)]
    cond_ir, cond_cap, _ = tr.trace_body(types, cond)
    # both bodies take the same constants: the union of what either captures
    consts = list(dict.fromkeys(cond_cap + body_cap))
    cond_ir = _with_consts(cond_ir, len(types), cond_cap, consts)
    body_ir = _with_consts(body_ir, len(types), body_cap, consts)
    outs = tr.emit_n(while_.while_p, init_leaves + consts, cond=cond_ir, body=body_ir, num_state=len(types))
    return unflatten(tree, outs)


def _with_consts(body, n_explicit, captured, consts):
    """Re-order a body's captured params to follow `consts`, adding unused ones."""
    from ..ir.core import Body
    from ..ir.core import Var as V

    have = dict(zip(captured, body.params[n_explicit:]))
    params = body.params[:n_explicit] + [have.get(c) or V(c.type, c.known) for c in consts]
    return Body(params, body.eqns, body.outs)


def _treemap(tr, args, kwargs):
    _arity("treemap", args, 2, 99)
    f = _func(args[0], "treemap")
    trees = args[1:]
    flat = [flatten(t) for t in trees]
    for leaves, d in flat[1:]:
        if d != flat[0][1]:
            raise TypeError_(
                "`treemap` needs trees of the same structure, got " + " and ".join(describe(t) for t in trees)
            )
    span = tr.span
    outs = [tr.call(f, list(ls), {}, span) for ls in zip(*(leaves for leaves, _ in flat))]
    return unflatten(flat[0][1], outs)


def _windows(tr, args, kwargs):
    _arity("windows", args, 2)
    x = _tensor(args[0], "windows")
    k = tr.static_int(args[1], tr.span, "the window length")
    return tr.emit(sh.windows_p, [x], k=k)


# --- randomness -------------------------------------------------------------------------------


def _key(tr, args, kwargs):
    _arity("key", args, 1)
    seed = _tensor(args[0], "key")
    if seed.type != TensorType(I64, ()):
        raise TypeError_(f"`key` needs an integer seed, got {seed.type}")
    return tr.emit(sh.concat_p, [tr.const(np.zeros(1, np.int64)), tr.emit(sh.reshape_p, [seed], shape=(1,))], axis=0)


def _key_arg(x, name):
    if not (isinstance(x, Var) and x.type == TensorType(I64, (2,))):
        raise TypeError_(f"`{name}` needs a key made by `key` or `split`, got {describe(x)}")
    return x


def _split(tr, args, kwargs):
    _arity("split", args, 1, 2)
    k = _key_arg(args[0], "split")
    count = tr.static_int(args[1], tr.span, "the count of `split`") if len(args) == 2 else 2
    bits = tr.emit(rnd.random_bits_p, [k], shape=(count, 2))
    return tuple(tr.emit(sh.index_p, [bits, tr.const(i, I64)]) for i in range(count))


def _uniform(tr, args, kwargs):
    _arity("uniform", args, 2)
    k = _key_arg(args[0], "uniform")
    return tr.emit(rnd.random_uniform_p, [k], shape=_static_shape(tr, args[1], "uniform"))


def _normal(tr, args, kwargs):
    _arity("normal", args, 2)
    k = _key_arg(args[0], "normal")
    return tr.emit(rnd.random_normal_p, [k], shape=_static_shape(tr, args[1], "normal"))


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
    "max": _reduction("max", red.reduce_max_p),
    "min": _reduction("min", red.reduce_min_p),
    "mean": _mean,
    "argmax": _argmax,
    "zeros": _fill("zeros", 0.0),
    "ones": _fill("ones", 1.0),
    "full": _full,
    "shape": _shape,
    "len": _len,
    "reshape": _reshape,
    "transpose": _transpose,
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
    "windows": _windows,
    "key": _key,
    "split": _split,
    "uniform": _uniform,
    "normal": _normal,
    "print": _print,
}

from .ad_builtins import AD_BUILTINS  # noqa: E402

BUILTINS.update(AD_BUILTINS)

__all__ = ["BUILTINS", "BINOPS", "Builtin", "Partial", "Record"]
