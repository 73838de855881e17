"""The structured op map: the same body applied to every row of its arrays; its derivative is
a map that also stacks residuals, and a scan that sums the cotangents of its constants."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ShapeError
from ..ir.core import Body, is_float
from ..ir.walk import clone_body, inline
from ..lower.bodies import body_function
from ..lower.emit import PARALLEL_MIN, Lazy
from ..lower.loops import cheap_steps, row, step_work, store_row
from ..typesys import stacked
from .core import Kind, Loop, primitive
from .shape import windows_p

# --- map ----------------------------------------------------------------------------------------


def _map_shape(in_types, body, n, num_xs):
    for t in in_types[:num_xs]:
        if t.rank == 0 or t.shape[0] != n:
            raise ShapeError(f"map over arrays of different lengths: expected {n} rows, got {t}")
    return [stacked(t, n) for t in body.out_types]


def _map_lower(em, eqn, ins):
    body, n, num_xs = eqn.params["body"], eqn.params["n"], eqn.params["num_xs"]
    xs, consts = ins[:num_xs], ins[num_xs:]
    if em.fuse_next:  # read by a reduction: evaluate the body where each element is read

        def at(idx):
            args = [idx[0]] + [row(em, x, idx[0]) for x in xs] + consts
            (v,) = em.lower_body(body, args, lazy_outs=True, rows_apart=True)
            return em.read(v, idx[1:])

        return [Lazy(eqn.outs[0].type, at, work=step_work(body))]
    outs = [em.destinations.get(o.id) or em.alloc(o.type) for o in eqn.outs]
    made = {x.id for e in body.eqns for x in e.outs}
    fn = body_function(em, body, eqn.span)  # a long body: a call (See Note [Loop functions] in lower/bodies.py)
    if fn is not None:
        consts = [em.materialise(c) for c in consts]  # (once, not in each call)

    def step(i):
        # the body computes its results straight into their rows: an inner map writes its rows
        # there, an elementwise result is evaluated into it, fused or not (no temporary, no copy)
        # (a value that is several results is computed into the first one's row and copied)
        rows: dict[int, tuple[int, object]] = {}
        for k, (o, out) in enumerate(zip(body.outs, outs)):
            if o.type.rank and o.id in made and o.id not in rows:
                rows[o.id] = (k, row(em, out, i))
        args = [i] + [row(em, x, i) for x in xs] + consts
        if fn is not None:
            res = fn.call(em, args, {k: r for k, r in rows.values()})
        else:
            with em.into_rows({v: r for v, (_, r) in rows.items()}):
                res = em.lower_body(body, args, lazy_outs=True, rows_apart=True)
        for k, (o, out, r) in enumerate(zip(body.outs, outs, res)):
            if rows.get(o.id, (None, None)) != (k, r):
                store_row(em, out, i, r)

    cheap = cheap_steps(body)
    if n > 1 and n * step_work(body) >= PARALLEL_MIN:  # (its rows are independent)

        def polled_step(i):
            if not cheap:
                em.poll_interrupt(eqn.span)
            step(i)

        em.parallel_loop(n, polled_step, "map")
    else:
        em.polled_loop(n, step, "map", eqn.span, cheap)
    return outs


# map: the forward is a map that also stacks each row's residuals; the backward is a scan (a
# map with a carry: ad/loops.py, reverse_loop) whose carries accumulate the cotangents of the
# loop-invariant inputs (tied weights) and whose outputs are the rows' ones.


@dataclass
class _Batched:
    """What the backward of a map whose body batches (ad/batch.py) reads: the batched body, the
    map's inputs, and which are active. See Note [Batched maps] in ad/batch.py."""

    body: Body
    ins: list
    act: list[bool]


def _over_windows(b, xs) -> bool:
    """Whether one of xs is a windows view made in b's body: its rows' cotangents, stacked by
    the loop's backward, are k times its size (See Note [Batched maps] in ad/batch.py)."""
    ids = {x.id for x in xs}
    return any(e.prim is windows_p and e.outs[0].id in ids for e in b.eqns)


def _map_vjp_fwd(ctx, eqn, ins, act):
    b = ctx.b
    p = eqn.params
    body, nx = p["body"], p["num_xs"]
    whole = ctx.batched(body, p["n"], nx) if _over_windows(b, ins[:nx]) else None
    if whole is not None:
        return b.emit(map_p, ins, eqn.span, **{**p, "body": clone_body(body)}), _Batched(whole, ins, list(act))
    needs = [False] + list(act)  # body param 0 is the index: it has no cotangent
    # input k is body param k + 1; the constants' cotangents are threaded through the backward
    acc = [1 + k for k in range(nx, len(ins)) if act[k] and is_float(ins[k])]
    fwd, bwd, kinds = ctx.vjp_split(body, needs, accumulate=acc)
    outs = b.emit(map_p, ins, eqn.span, body=fwd, n=p["n"], num_xs=nx)
    ny = len(body.outs)  # fwd returns (ys, residuals): the map stacks both
    b.eqns[-1].note = ctx.tape_note(fwd.out_types[ny:], p["n"])
    return outs[:ny], ctx.LoopResiduals(ins, needs, bwd, kinds, outs[ny:])


def _map_vjp(ctx, params, aux, outs, cts, current):
    if isinstance(aux, _Batched):
        fwd, bwd, kinds = ctx.vjp_split(aux.body, aux.act)
        extra = inline(ctx.b, fwd, aux.ins)[len(outs) :]
        seeds = [ctx.seed_or_zeros(c, o.type) for c, o in zip(cts, outs) if is_float(o)]
        ct_in = iter(inline(ctx.b, bwd, seeds + ctx.residual_values(kinds, aux.ins, extra)))
        return [next(ct_in) if a and is_float(x) else None for x, a in zip(aux.ins, aux.act)], ()
    # the rows are independent (no carry): the backward walks them first to last, as the map
    return ctx.reverse_loop(
        aux, outs, cts, current, length=params["n"], num_carry=0, num_xs=params["num_xs"], reverse=False
    )


def _map_jvp_full(ctx, eqn, ins, ts):
    p = eqn.params
    nx = p["num_xs"]
    body, inputs, t_in = ctx.with_tangents(p["body"], ins, ts, num_carry=0, num_xs=nx)
    n_t_rows = sum(1 for t in t_in[:nx] if t is not None)  # the rows' tangents are rows too
    outs = ctx.b.emit(map_p, inputs, eqn.span, body=body, n=p["n"], num_xs=nx + n_t_rows)
    return ctx.split_tangents(outs, p["body"], 0, t_in)


map_p = primitive(
    "map",
    shape=_map_shape,
    lower=_map_lower,
    kind=Kind.LOOP,
    vjp_fwd=_map_vjp_fwd,
    vjp=_map_vjp,
    jvp_full=_map_jvp_full,
    threads_cotangents=True,
    cheap=True,
    lazy_when_reduced=True,
    # inputs (*xs, *consts), body (i, *x_rows, *consts)
    loop=Loop(
        trips=lambda p: p["n"],
        carries=lambda p: (0, 1, 0),
        consts=lambda p: 1 + p["num_xs"],
        indexed=True,
        stacked=lambda p: 0,
    ),
)
