"""The structured op map: the same body applied to every row of its arrays; its derivative is
a map that also stacks residuals, and a scan that sums the cotangents of its constants."""

from __future__ import annotations

from ..errors import ShapeError
from ..ir.build import Builder
from ..ir.core import is_float
from ..ir.walk import inline
from ..lower.emit import Lazy
from ..lower.loops import cheap_steps, row, store_row
from ..typesys import index_type, row_type, stacked
from .core import Kind, Loop, primitive
from .scan import scan_p

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
            (v,) = em.lower_body(body, [idx[0]] + [row(em, x, idx[0]) for x in xs] + consts, lazy_outs=True)
            return em.read(v, idx[1:])

        return [Lazy(eqn.outs[0].type, at)]
    outs = [em.destinations.get(o.id) or em.alloc(o.type) for o in eqn.outs]
    made = {x.id for e in body.eqns for x in e.outs}

    def step(i):
        # the body computes its results straight into their rows: an inner map writes its rows
        # there, a fused elementwise result is evaluated into it (no temporary, no copy)
        # (a value that is several results is computed into the first one's row and copied)
        rows: dict[int, tuple[int, object]] = {}
        for k, (o, out) in enumerate(zip(body.outs, outs)):
            if o.type.rank and o.id in made and o.id not in rows:
                rows[o.id] = (k, row(em, out, i))
        outer, em.destinations = em.destinations, {**em.destinations, **{v: r for v, (_, r) in rows.items()}}
        try:
            res = em.lower_body(body, [i] + [row(em, x, i) for x in xs] + consts, lazy_outs=True)
        finally:
            em.destinations = outer
        for k, (o, out, r) in enumerate(zip(body.outs, outs, res)):
            if rows.get(o.id, (None, None)) != (k, r):
                store_row(em, out, i, r)

    em.polled_loop(n, step, "map", eqn.span, cheap_steps(body))
    return outs


# map: forward map with stacked residuals; backward is a scan whose carry accumulates the
# cotangents of the loop-invariant inputs (tied weights) and whose outputs are the rows' ones.


def _map_vjp_fwd(ctx, eqn, ins, act):
    b = ctx.b
    p = eqn.params
    body, nx = p["body"], p["num_xs"]
    needs = [False] + list(act)
    acc = [1 + k for k in range(nx, len(ins)) if act[k] and is_float(ins[k])]
    fwd, bwd, kinds = ctx.vjp_split(body, needs, accumulate=acc)
    outs = b.emit(map_p, ins, eqn.span, body=fwd, n=p["n"], num_xs=nx)
    ny = len(body.outs)
    b.eqns[-1].note = ctx.tape_note(fwd.out_types[ny:], p["n"])
    return outs[:ny], (ins, act, bwd, kinds, outs[ny:])


def _map_vjp(ctx, params, aux, outs, cts, current):
    b = ctx.b
    ins, act, bwd, kinds, res_stacked = aux
    n, nx = params["n"], params["num_xs"]
    xs, consts = ins[:nx], ins[nx:]
    seeds = [ctx.seed_or_zeros(c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    want = [k for k, x in enumerate(ins) if act[k] and is_float(x)]  # inputs that get cotangents
    acc_idx = [k for k in want if k >= nx]
    row_idx = [k for k in want if k < nx]
    acc_types = [ins[k].type for k in acc_idx]

    sb = Builder(b)
    i = sb.param(index_type())
    accs = [sb.param(t) for t in acc_types]
    seed_rows = [sb.param(row_type(s.type)) for s in seeds]
    res_rows = [sb.param(row_type(r.type)) for r in res_stacked]
    x_rows = [sb.param(row_type(x.type)) for x in xs]
    param_vals = [i] + x_rows + list(consts)
    res = [param_vals[k] if kind == "param" else res_rows[k] for kind, k in kinds]
    ct = dict(zip(want, inline(sb, bwd, seed_rows + accs + res)))
    body, captured = sb.finish([ct[k] for k in acc_idx] + [ct[k] for k in row_idx])
    inits = [ctx.seed_or_zeros(current[k], ins[k].type) for k in acc_idx]
    stacks = seeds + list(res_stacked) + list(xs)
    out = b.emit(
        scan_p, inits + stacks + captured, body=body, length=n, num_carry=len(inits), num_xs=len(stacks), reverse=False
    )
    result = [None] * len(ins)
    for k, v in zip(acc_idx, out[: len(acc_idx)]):
        result[k] = v
    for k, v in zip(row_idx, out[len(acc_idx) :]):
        result[k] = v
    return result, set(acc_idx)


def _map_jvp_full(ctx, eqn, ins, ts):
    p = eqn.params
    body, nx = p["body"], p["num_xs"]
    has = [False] + [t is not None for t in ts]
    jb = ctx.jvp_body(body, has)
    # jb takes (i, rows, consts, row tangents, const tangents); map wants rows first
    t_rows = [t for t in ts[:nx] if t is not None]
    t_consts = [t for t in ts[nx:] if t is not None]
    n_rows = len(t_rows)

    def reorder(bb, params):
        i, rows, trows = params[0], params[1 : 1 + nx], params[1 + nx : 1 + nx + n_rows]
        consts, tconsts = (
            params[1 + nx + n_rows : 1 + nx + n_rows + len(ins) - nx],
            params[1 + nx + n_rows + len(ins) - nx :],
        )
        return inline(bb, jb, [i] + rows + consts + trows + tconsts)

    types = (
        [index_type()]
        + [row_type(x.type) for x in ins[:nx]]
        + [row_type(t.type) for t in t_rows]
        + [x.type for x in ins[nx:]]
        + [t.type for t in t_consts]
    )
    nb = ctx.closed_body(types, reorder)
    outs = ctx.b.emit(
        map_p, list(ins[:nx]) + t_rows + list(ins[nx:]) + t_consts, eqn.span, body=nb, n=p["n"], num_xs=nx + n_rows
    )
    return ctx.tangents_of(outs, len(eqn.outs), eqn.outs)


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
    loop=Loop(trips=lambda p: p["n"], carries=lambda p: (0, 1, 0), consts=lambda p: 1 + p["num_xs"], indexed=True),
)
