"""The higher-order built-ins, the weight-tying combinators: map, fold, scan, unfold, iterate,
while, treemap, treefold, windows. Each traces its function argument into the body of a structured op
(prims/map_.py, scan.py, while_.py), after hoisting what does not change between iterations."""

from __future__ import annotations

from ..errors import ShapeError, TypeError_
from ..ir.core import Body, Var
from ..ir.hoist import hoist
from ..prims import ops, scan, while_
from ..prims import shape as sh
from ..pytree import flatten, unflatten
from ..typesys import DType, TensorType
from .ad_builtins import checkpointed
from .args import allowed_kwargs, arity, count_arg, func_arg, tensor_arg
from .values import Partial, describe

I64, BOOL = DType.I64, DType.BOOL


def _leading(tr, name, trees):
    """Flatten trees of arrays mapped over their leading axis; all must have one length."""
    leaves, defs = [], []
    for t in trees:
        ls, d = flatten(t)
        for x in ls:
            x = tensor_arg(x, name, "array")
            if x.type.rank == 0:
                raise ShapeError(f"`{name}` needs arrays to iterate over, got a scalar {x.type}")
            leaves.append(x)
        defs.append((d, len(ls)))
    lengths = {x.type.shape[0] for x in leaves}
    if len(lengths) > 1:
        raise ShapeError(f"`{name}` over arrays of different lengths: " + ", ".join(str(x.type) for x in leaves))
    return leaves, defs, (lengths.pop() if lengths else None)


def _split_rows(defs, rows):
    """The rows of one step, regrouped into the trees the user passed (the inverse of
    _leading's flattening: defs holds each tree's definition and leaf count)."""
    out, k = [], 0
    for d, count in defs:
        out.append(unflatten(d, rows[k : k + count]))
        k += count
    return out


def _map(tr, args, kwargs):
    arity("map", args, 2, 99)
    f = func_arg(args[0], "map")
    leaves, defs, n = _leading(tr, "map", args[1:])
    span = tr.span
    return tr.map_loop(n, lambda i, rows: tr.call(f, _split_rows(defs, rows), {}, span), leaves)


def _carry_types(tr, init):
    leaves, tree = flatten(init)
    return [tensor_arg(x, "fold", "initial value") for x in leaves], tree


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
    nseg, rem = divmod(length, k)

    # The first nseg*k rows become [nseg, k, ...] arrays: an outer scan over segments whose step
    # is a checkpointed inner scan over k rows. The rem rows left over run as one more,
    # shorter, checkpointed segment: after the others when walking forward, before them (it
    # holds the last rows, met first) when walking in reverse.

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
    body_at = tr.arg_span(0)  # (the step function, for an error in what it returns)

    def body(i, *params):
        carry = unflatten(ctree, params[: len(carry_types)])
        new, y = f_step(carry, list(params[len(carry_types) :]))
        nleaves, ntree = flatten(new)
        if ntree != ctree:
            raise ShapeError(
                f"the step function of `{name}` must return a carry of the same structure as "
                f"the initial value: expected {describe(init)}, got {describe(new)}"
            )
        return tuple(nleaves) + ((y,) if ys_wanted else ())

    # the body's params, as scan_p lays them out: (i, *carry, *x_rows); its captures follow
    types = [TensorType(I64, ())] + carry_types + [x.type.with_shape(x.type.shape[1:]) for x in xs_leaves]
    body_ir, captured, tree = tr.trace_body(types, body)
    check_carry(name, "the step function", carry_types, body_ir.out_types[: len(carry_types)], body_at)
    # what does not depend on the step (a weight's transpose) is computed once, before the loop,
    # and so never taped per step when the loop is differentiated; not out of a loop that may
    # run zero times when it may fail (an index), which would make the program fail where it
    # would not
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
    ys_leaves_tree = tree.children[-1]  # (the body returned (*carry leaves, y): y's tree is the last child)
    return carry, unflatten(ys_leaves_tree, outs[len(carry_types) :])


def check_carry(name, what, start, returned, span):
    """A loop's carry keeps its type: the step must return the types it was given. (It was
    once widened silently: an f32 model became f64 when an f64 counter entered its update.)"""
    if returned == start:
        return
    hint = "convert what it returns (`f32(...)`, `f64(...)`) or start from a value of the type it returns"
    if any(a.dtype is I64 and b.dtype.is_float for a, b in zip(start, returned)):
        hint = "start from a float (`0.0`, not `0`)"
    error = TypeError_
    if any(a.shape != b.shape for a, b in zip(start, returned)):
        hint, error = "a loop's carry keeps its shape", ShapeError
    raise error(
        f"the carry of `{name}` starts as {_types_str(start)} and {what} returns {_types_str(returned)}: {hint}",
        span,
    )


def _types_str(ts):
    return ts[0].__str__() if len(ts) == 1 else "(" + ", ".join(map(str, ts)) + ")"


def _fold(tr, args, kwargs):
    arity("fold", args, 3)
    allowed_kwargs("fold", kwargs, ("checkpoint",))
    f, init, xs = func_arg(args[0], "fold"), args[1], args[2]
    leaves, defs, n = _leading(tr, "fold", [xs])
    span = tr.span

    def step(carry, rows):
        return tr.call(f, [carry, _split_rows(defs, rows)[0]], {}, span), None

    return scan_loop(
        tr, "fold", step, init, leaves, n, False, ys_wanted=False, checkpoint=_checkpoint_arg(tr, kwargs, "fold")
    )[0]


def _scan(tr, args, kwargs):
    arity("scan", args, 3)
    allowed_kwargs("scan", kwargs, ("reverse", "checkpoint"))
    f, init, xs = func_arg(args[0], "scan"), args[1], args[2]
    reverse = False
    if "reverse" in kwargs:
        r = kwargs["reverse"]
        if not (isinstance(r, Var) and r.type == TensorType(BOOL, ())):
            raise TypeError_("`reverse` of `scan` must be true or false")
        if r.known is None:
            tr.not_known(r, tr.span, "`reverse` of `scan`")
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
    arity("unfold", args, 3)
    f, init = func_arg(args[0], "unfold"), args[1]
    n = count_arg(tr, args, 2, "the length of `unfold`")
    span = tr.span

    def step(carry, rows):
        out = tr.call(f, [carry], {}, span)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError_(f"the function of `unfold` must return a pair (state, output), got {describe(out)}")
        return out

    return scan_loop(tr, "unfold", step, init, [], n, False)[1]


def _iterate(tr, args, kwargs):
    arity("iterate", args, 3)
    allowed_kwargs("iterate", kwargs, ("checkpoint",))
    f, init, n = func_arg(args[0], "iterate"), args[1], args[2]
    span = tr.span
    if not (isinstance(n, Var) and n.type.rank == 0 and n.type.dtype in (I64, BOOL)):
        raise TypeError_(f"the count of `iterate` must be an integer, got {describe(n)}", span)
    if n.known is None:
        if "checkpoint" in kwargs:
            tr.ask_static(n)
            raise TypeError_("`checkpoint` of `iterate` needs a count known at compile time", span)
        return _iterate_dynamic(tr, f, init, n)
    return scan_loop(
        tr,
        "iterate",
        lambda c, rows: (tr.call(f, [c], {}, span), None),
        init,
        [],
        count_arg(tr, args, 2, "the count of `iterate`"),
        False,
        ys_wanted=False,
        checkpoint=_checkpoint_arg(tr, kwargs, "iterate"),
    )[0]


def _iterate_dynamic(tr, f, init, n):
    """iterate with a count known only at run time: a while over (i, state) until i == n, so
    that it is differentiated as a while is (a located error at run time if n < 0)."""
    n = tr.emit(while_.count_p, [tr.convert(n, I64)], what="the count of `iterate`")
    span = tr.span

    def cond(tr, args, kw):
        return ops.emit(tr.b, "lt", args[0][0], n)

    def step(tr, args, kw):
        i, x = args[0]
        return ops.add(tr.b, i, ops.const(tr.b, 1, I64)), tr.call(f, [x], {}, span)

    loop = [Partial("iterate", cond), Partial("iterate", step), (ops.const(tr.b, 0, I64), init)]
    return _while(tr, loop, {}, "iterate", tr.arg_span(0))[1]


def _while(tr, args, kwargs, name="while", body_at=None):
    arity("while", args, 3)
    cond_f, body_f, init = func_arg(args[0], "while"), func_arg(args[1], "while"), args[2]
    span = tr.span
    body_at = body_at or tr.arg_span(1)
    init_leaves, tree = _carry_types(tr, init)
    types = [x.type for x in init_leaves]

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
    if name == "iterate":  # (its state is (counter, the user's value): the user's part is named)
        check_carry(name, "the function", types[1:], body_ir.out_types[1:], body_at)
    check_carry(name, "the body", types, body_ir.out_types, body_at)
    cond_ir, cond_cap, _ = tr.trace_body(types, cond)
    # both bodies take the same constants: the union of what either captures
    consts = list(dict.fromkeys(cond_cap + body_cap))
    cond_ir = _with_consts(cond_ir, len(types), cond_cap, consts)
    body_ir = _with_consts(body_ir, len(types), body_cap, consts)
    outs = tr.emit_n(while_.while_p, init_leaves + consts, cond=cond_ir, body=body_ir, num_state=len(types))
    return unflatten(tree, outs)


def _with_consts(body, n_explicit, captured, consts):
    """Re-order a body's captured params to follow `consts`, adding unused ones."""
    have = dict(zip(captured, body.params[n_explicit:]))
    params = body.params[:n_explicit] + [have.get(c) or Var(c.type, c.known) for c in consts]
    return Body(params, body.eqns, body.outs)


def _treemap(tr, args, kwargs):
    arity("treemap", args, 2, 99)
    f = func_arg(args[0], "treemap")
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


def _treefold(tr, args, kwargs):
    """treefold(f, init, tree): acc = f(acc, leaf) over the leaves in treemap's order, the one
    way to reduce a whole tree (a global norm, a parameter count); unrolled at compile time."""
    arity("treefold", args, 3)
    f = func_arg(args[0], "treefold")
    acc = args[1]
    leaves, _ = flatten(args[2])
    for leaf in leaves:
        acc = tr.call(f, [acc, leaf], {}, tr.span)
    return acc


def _windows(tr, args, kwargs):
    arity("windows", args, 2)
    x = tensor_arg(args[0], "windows")
    k = count_arg(tr, args, 1, "the window length", least=1)
    return tr.emit(sh.windows_p, [x], k=k)
