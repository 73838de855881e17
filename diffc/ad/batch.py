"""A map's body applied to all its rows at once, as whole-array ops (JAX's vmap, for the ops a
body of array arithmetic is made of). A map's backward built from it is that of a few
whole-array ops, read where they are needed, instead of a loop that stores every row's
cotangent: see Note [Batched maps]."""

from __future__ import annotations

from ..ir.build import Builder
from ..ir.core import Body
from ..ir.prim import Kind
from ..prims import ops
from ..prims.shape import broadcast_p, reshape_p


def batched(body: Body, n: int, num_xs: int) -> Body | None:
    """A body of (*xs, *consts) -> the map's stacked outs, computing what map[n, num_xs] over
    `body` (i, *x_rows, *consts) -> ys computes; None when an equation of the body has no rule
    here (only elementwise ops, reductions over `axes`, broadcasts, reshapes and constants do,
    on the rows and the constants; not on the row's index)."""
    b = Builder()
    params = [b.param(p.type.with_shape((n,) + p.type.shape), hint=p.hint) for p in body.params[1 : 1 + num_xs]]
    params += [b.param(p.type, p.known, p.hint) for p in body.params[1 + num_xs :]]
    env = dict(zip(body.params[1:], params))
    rows = {p.id for p in params[:num_xs]}  # the values with a leading axis of n (the rest are the same for every row)
    for eqn in body.eqns:
        if body.params[0] in eqn.inputs:  # (the row's index)
            return None
        ins = [env[x] for x in eqn.inputs]
        if not any(x.id in rows for x in ins):
            outs = b.emit(eqn.prim, ins, eqn.span, **eqn.params)
        else:
            outs = _batched_eqn(b, eqn, ins, rows, n)
            if outs is None:
                return None
            rows.update(o.id for o in outs)
        env.update(zip(eqn.outs, outs))
    outs = []
    for o in body.outs:
        v = env[o]
        if v.id not in rows:  # (the same for every row: stacked n times)
            v = ops.broadcast(b, ops.reshape(b, v, (1,) + v.type.shape), (n,) + v.type.shape)
        outs.append(v)
    return b.finish(outs)[0]


def _batched_eqn(b: Builder, eqn, ins, rows, n):
    """eqn applied to every row at once (ins: the rows' values with their leading axis of n), or
    None when there is no rule for it."""
    prim, out = eqn.prim, eqn.outs[0].type
    if prim.kind is Kind.ELEMENTWISE and len(eqn.outs) == 1:
        # a row's operand of lower rank broadcasts against its trailing axes: so must the whole's
        ins = [_lifted(b, x, n, out.rank) if x.id in rows else x for x in ins]
        return b.emit(prim, ins, eqn.span, **eqn.params)
    if prim.kind is Kind.REDUCTION and set(eqn.params) == {"axes"}:
        (x,) = ins
        return b.emit(prim, [x], eqn.span, axes=tuple(a + 1 for a in eqn.params["axes"]))
    if prim is broadcast_p:
        (x,) = ins
        shape = (n,) + tuple(eqn.params["shape"])
        return b.emit(prim, [_lifted(b, x, n, out.rank)], eqn.span, shape=shape)
    if prim is reshape_p:
        return b.emit(prim, ins, eqn.span, shape=(n,) + tuple(eqn.params["shape"]))
    return None


def _lifted(b: Builder, x, n: int, rank: int):
    """x ([n, *s]) with axes of 1 after its first, up to rank + 1 axes."""
    extra = rank + 1 - x.type.rank
    return x if extra == 0 else ops.reshape(b, x, (n,) + (1,) * extra + x.type.shape[1:])


# Note [Batched maps]
# ~~~~~~~~~~~~~~~~~~~
# The backward of a map is a scan over its rows that stacks each row's cotangent (ad/loops.py):
# for `map(fn(w) => max(w), windows(x, 4))` a [n, 4] array written a row at a time, which
# unwindows then adds up. That store and that read cost 10-20 times the forward (a max over
# windows of 4, a sum over windows of 8, at 16384 to 262144 elements). When every equation of
# the body has a batching rule here, the map's backward is instead that of the batched body
# (prims/map_.py): a reduction over the windows' axis, whose cotangent (a broadcast, or the
# picks of extreme_scatter) unwindows reads where it adds it, with no [n, k] array between.
# The forward stays the map (its loop is faster than a reduction over the second axis of a
# windows view); the backward recomputes what it needs of the batched body, which for these
# bodies is nothing or a cheap elementwise value read in place.
# Only maps over windows (prims/map_.py): over the rows of an array, the loop's stacked row
# cotangents are that array's cotangent already, and the batched body stores whole [n, k]
# temporaries the loop keeps in cache a row at a time (a log-sum-exp of each row of 4096 x 64:
# 1.3 against 0.9 ms), for gains of 10-40% on the cheapest bodies only.
