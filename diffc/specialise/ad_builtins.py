"""The differentiation built-ins as the specialiser traces them: grad, value_and_grad, vjp,
jvp, stop_gradient, custom_vjp, checkpoint.

Each traces the function it differentiates into a closed IR body (its captured values become
extra parameters), transforms that body with diffc/ad, and inlines the result at the call.
The result is ordinary IR, so these compose: grad(grad(f)), jvp(grad(f)), grad through a
function that calls grad."""

from __future__ import annotations

from ..ad.rules import Ctx
from ..ad.vjp import residual_values
from ..errors import TypeError_
from ..ir.core import Var
from ..ir.walk import inline
from ..prims import checkpoint, ops
from ..prims import elementwise as ew
from ..pytree import LEAF, flatten, unflatten
from .args import func_arg
from .values import Partial, describe


def _ad(tr) -> Ctx:
    """The transforms, adding what they make (a recursive function's derivatives) to the
    program the tracer builds."""
    return Ctx(tr.program)


def trace_function(tr, f, args, span):
    """f traced on args into a closed body: (body, captured, out_tree, leaves, per-arg leaf ranges)."""
    leaves, ranges = [], []
    trees = []
    for a in args:
        ls, t = flatten(a)
        for x in ls:
            if not isinstance(x, Var):
                raise TypeError_(f"cannot differentiate with respect to {describe(x)}", span)
        ranges.append(range(len(leaves), len(leaves) + len(ls)))
        leaves += ls
        trees.append(t)

    def run(*params):
        params = list(params)
        tr.sources.update(zip(params, leaves))  # (a compile-time value needed inside comes from outside)
        call_args = [unflatten(t, params[r.start : r.stop]) for t, r in zip(trees, ranges)]
        return tr.call(f, call_args, {}, span)

    body, captured, out_tree = tr.trace_body(
        [x.type for x in leaves], run, known=[x.known if not x.type.dtype.is_float else None for x in leaves]
    )
    return body, captured, out_tree, leaves, ranges, trees


def _argnums(tr, spec, nargs, name):
    if spec is None:
        return (0,), True
    if isinstance(spec, tuple):
        nums = tuple(tr.static_int(x, tr.span, f"an argument number of `{name}`") for x in spec)
        single = False
    else:
        nums, single = (tr.static_int(spec, tr.span, f"the argument number of `{name}`"),), True
    for k in nums:
        if not 0 <= k < nargs:
            raise TypeError_(f"`{name}` with respect to argument {k}, but the function is called with {nargs}")
    if len(set(nums)) != len(nums):
        raise TypeError_(f"`{name}` with respect to arguments {nums}: each argument at most once")
    return nums, single


def _check_float_args(args, nums, ranges, leaves, name):
    for k in nums:
        for i in ranges[k]:
            if not leaves[i].type.dtype.is_float:
                raise TypeError_(
                    f"`{name}` with respect to argument {k}, which is {describe(args[k])}: "
                    "only float values have derivatives"
                )


def _reverse(tr, f, args, nums, name, span):
    """Trace f, check it returns a float scalar, run the forward and backward passes inline:
    (value, gradients in the structure of the chosen arguments)."""
    body, captured, out_tree, leaves, ranges, trees = trace_function(tr, f, args, span)
    outs = body.out_types
    if out_tree != LEAF or outs[0].rank != 0 or not outs[0].dtype.is_float:
        got = outs[0] if out_tree == LEAF else describe(unflatten(out_tree, [Var(t) for t in outs]))
        raise TypeError_(f"`{name}` needs a function that returns a float scalar, but it returns {got}", span)
    _check_float_args(args, nums, ranges, leaves, name)
    needs = [False] * len(body.params)
    for k in nums:
        for i in ranges[k]:
            needs[i] = True
    fwd, bwd, kinds = _ad(tr).vjp_split(body, needs)
    inputs = leaves + captured
    vals = inline(tr.b, fwd, inputs)
    y, extra = vals[0], vals[1:]
    cts = inline(tr.b, bwd, [ops.const(tr.b, 1.0, y.type.dtype)] + residual_values(kinds, inputs, extra))
    it = iter(cts)
    grads = tuple(unflatten(trees[k], [next(it) for _ in ranges[k]]) for k in sorted(nums))
    by_num = dict(zip(sorted(nums), grads))
    return y, tuple(by_num[k] for k in nums)


def _grad_family(name, with_value):
    def make(tr, args, kwargs):
        if not 1 <= len(args) <= 2 or kwargs:
            raise TypeError_(f"`{name}` takes a function and an optional argument number or tuple of them")
        f = func_arg(args[0], name)
        spec = args[1] if len(args) == 2 else None

        def call(tr, cargs, ckw):
            if ckw:
                raise TypeError_(f"a function made by `{name}` takes no keyword arguments")
            nums, single = _argnums(tr, spec, len(cargs), name)
            y, grads = _reverse(tr, f, cargs, nums, name, tr.span)
            g = grads[0] if single else grads
            return (y, g) if with_value else g

        return Partial(name, call)

    return make


def _vjp(tr, args, kwargs):
    if len(args) < 2 or kwargs:
        raise TypeError_("`vjp` takes a function and its arguments: vjp(f, x, ...)")
    f, primals = func_arg(args[0], "vjp"), list(args[1:])
    span = tr.span
    body, captured, out_tree, leaves, ranges, trees = trace_function(tr, f, primals, span)
    needs = [True] * len(leaves) + [False] * len(captured)
    fwd, bwd, kinds = _ad(tr).vjp_split(body, needs)
    inputs = leaves + captured
    vals = inline(tr.b, fwd, inputs)
    n_out = len(body.outs)
    outs, extra = vals[:n_out], vals[n_out:]
    residuals = residual_values(kinds, inputs, extra)
    y = unflatten(out_tree, outs)

    def pullback(tr, cargs, ckw):
        if len(cargs) != 1 or ckw:
            raise TypeError_("a pullback takes one cotangent, shaped like the function's result")
        ct_leaves, ct_tree = flatten(cargs[0])
        if ct_tree != out_tree or any(
            not isinstance(c, Var) or c.type.shape != o.type.shape for c, o in zip(ct_leaves, outs)
        ):
            raise TypeError_(
                f"the cotangent must be shaped like the function's result {describe(y)}, got {describe(cargs[0])}"
            )
        seeds = [_seed(tr, c, o.type.dtype) for c, o in zip(ct_leaves, outs) if o.type.dtype.is_float]
        cts = iter(inline(tr.b, bwd, seeds + residuals))
        res = []
        for k, t in enumerate(trees):
            ls = [next(cts) if leaves[i].type.dtype.is_float else ops.zeros(tr.b, leaves[i].type) for i in ranges[k]]
            res.append(unflatten(t, ls))
        return tuple(res)

    return y, Partial("pullback", pullback)


def _seed(tr, t, dtype):
    """A tangent or cotangent handed to a derivative from outside, as a `copy`: its zeros may
    stand for "no dependence", so the guarded products it reaches keep their guard
    (optimise/guards.py)."""
    return ops.emit(tr.b, "copy", tr.convert(t, dtype))


def _jvp(tr, args, kwargs):
    if len(args) != 3 or kwargs:
        raise TypeError_("`jvp` takes a function, a tuple of primals and a tuple of tangents: jvp(f, (x,), (v,))")
    f, primals, tangents = func_arg(args[0], "jvp"), args[1], args[2]
    if not isinstance(primals, tuple) or not isinstance(tangents, tuple):
        raise TypeError_("`jvp` takes its primals and its tangents as tuples: jvp(f, (x,), (v,))")
    if len(primals) != len(tangents):
        raise TypeError_(f"`jvp` got {len(primals)} primals but {len(tangents)} tangents")
    span = tr.span
    for k, (p, t) in enumerate(zip(primals, tangents)):
        pl, pt = flatten(p)
        tl, tt = flatten(t)
        if pt != tt or any(
            not isinstance(a, Var) or not isinstance(b, Var) or a.type.shape != b.type.shape for a, b in zip(pl, tl)
        ):
            raise TypeError_(
                f"the tangent of argument {k} must be shaped like the primal {describe(p)}, got {describe(t)}", span
            )
    body, captured, out_tree, leaves, ranges, trees = trace_function(tr, f, list(primals), span)
    has = [True] * len(leaves) + [False] * len(captured)
    jb = _ad(tr).jvp_body(body, has)
    t_leaves = []
    for p, t in zip(primals, tangents):
        for a, b in zip(flatten(p)[0], flatten(t)[0]):
            if a.type.dtype.is_float:
                t_leaves.append(_seed(tr, b, a.type.dtype))
    vals = inline(tr.b, jb, leaves + captured + t_leaves)
    n = len(body.outs)
    outs, touts = vals[:n], iter(vals[n:])
    dy = [next(touts) if o.type.dtype.is_float else ops.zeros(tr.b, o.type) for o in outs]
    return unflatten(out_tree, outs), unflatten(out_tree, dy)


def _stop_gradient(tr, args, kwargs):
    if len(args) != 1 or kwargs:
        raise TypeError_("`stop_gradient` takes one value")
    leaves, tree = flatten(args[0])
    return unflatten(
        tree, [tr.emit(ew.stop_gradient_p, [x]) if isinstance(x, Var) and x.type.dtype.is_float else x for x in leaves]
    )


def checkpointed(tr, fn, args):
    """fn(*args) traced into a `checkpoint` op: its forward is recomputed in the backward pass."""
    body, captured, out_tree, leaves, ranges, trees = trace_function(
        tr, Partial("segment", lambda tr, a, kw: fn(*a)), args, tr.span
    )
    outs = tr.emit_n(checkpoint.checkpoint_p, leaves + captured, body=body)
    return unflatten(out_tree, outs)


def _checkpoint(tr, args, kwargs):
    if len(args) != 1 or kwargs:
        raise TypeError_("`checkpoint` takes one function")
    f = func_arg(args[0], "checkpoint")

    def call(tr, cargs, ckw):
        if ckw:
            raise TypeError_("a checkpointed function takes no keyword arguments")
        return checkpointed(tr, lambda *a: tr.call(f, list(a), {}, tr.span), cargs)

    return Partial("checkpoint", call)


def _custom_vjp(tr, args, kwargs):
    if len(args) != 3 or kwargs:
        raise TypeError_("`custom_vjp` takes three functions: custom_vjp(f, fwd, bwd)")
    f, fwd_f, bwd_f = (func_arg(a, "custom_vjp") for a in args)
    span = tr.span

    def call(tr, cargs, ckw):
        body, cap, out_tree, leaves, ranges, trees = trace_function(tr, f, cargs, span)
        fwd, fcap, ftree, *_ = trace_function(tr, fwd_f, cargs, span)
        y_types = body.out_types
        if (
            ftree.kind != "tuple"
            or len(ftree.children) != 2
            or ftree.children[0] != out_tree
            or fwd.out_types[: len(y_types)] != y_types
        ):
            raise TypeError_(
                "the `fwd` of custom_vjp must return (value, residuals) with the value shaped like the function's", span
            )
        res_tree = ftree.children[1]
        res_types = fwd.out_types[len(y_types) :]
        ct_types = [t for t in y_types if t.dtype.is_float]

        def run_bwd(*params):
            res = unflatten(res_tree, list(params[: len(res_types)]))
            ct = unflatten(out_tree, _fill_ints(tr, y_types, list(params[len(res_types) :])))
            out = tr.call(bwd_f, [res, ct], {}, span)
            want = tuple(cargs)
            if (
                not isinstance(out, tuple)
                or len(out) != len(want)
                or any(flatten(o)[1] != flatten(w)[1] for o, w in zip(out, want))
            ):
                raise TypeError_(
                    f"the `bwd` of custom_vjp must return a tuple with one cotangent per argument, "
                    f"shaped like {describe(want)}, but it returns {describe(out)}",
                    span,
                )
            outs = []
            for o, w in zip(flatten(out)[0], flatten(want)[0]):
                if not isinstance(o, Var) or o.type.shape != w.type.shape:
                    raise TypeError_(
                        f"the `bwd` of custom_vjp returns a cotangent {describe(o)} for an argument {describe(w)}", span
                    )
                if w.type.dtype.is_float:
                    outs.append(tr.convert(o, w.type.dtype))
            return tuple(outs)

        bwd, bcap, _ = tr.trace_body(res_types + ct_types, run_bwd)
        outs = tr.emit_n(
            checkpoint.custom_vjp_p,
            leaves + cap + fcap + bcap,
            fun=body,
            fwd=fwd,
            bwd=bwd,
            counts=(len(leaves), len(cap), len(fcap), len(bcap)),
        )
        return unflatten(out_tree, outs)

    return Partial("custom_vjp", call)


def _fill_ints(tr, types, float_cts):
    it = iter(float_cts)
    return [next(it) if t.dtype.is_float else ops.zeros(tr.b, t) for t in types]


AD_BUILTINS = {
    "grad": _grad_family("grad", False),
    "value_and_grad": _grad_family("value_and_grad", True),
    "vjp": _vjp,
    "jvp": _jvp,
    "stop_gradient": _stop_gradient,
    "checkpoint": _checkpoint,
    "custom_vjp": _custom_vjp,
}
