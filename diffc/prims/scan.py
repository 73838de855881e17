"""The structured op scan (fold, unfold, iterate and windows-free loops lower onto it): a carry
threaded through the rows of its arrays; its derivative stacks T residual records and runs a
scan the other way."""

from __future__ import annotations

from ..errors import ShapeError
from ..ir.build import Builder
from ..ir.core import Body, is_float
from ..ir.walk import inline
from ..lower.loops import Slots, accumulators, cheap_steps, inplace_carries, row, store_row
from ..typesys import index_type, row_type, stacked
from . import ops
from .core import Kind, Loop, primitive

# --- scan ---------------------------------------------------------------------------------------


def _scan_shape(in_types, body, length, num_carry, num_xs, reverse):
    carry = in_types[:num_carry]
    outs = body.out_types
    if [t for t in outs[:num_carry]] != list(carry):
        raise ShapeError(
            "the step function must return a carry of the same type as the initial one: "
            f"expected {tuple(carry)}, got {tuple(outs[:num_carry])}"
        )
    for t in in_types[num_carry : num_carry + num_xs]:
        if t.rank == 0 or t.shape[0] != length:
            raise ShapeError(f"scan over an array of length other than {length}: {t}")
    return list(carry) + [stacked(t, length) for t in outs[num_carry:]]


def _scan_lower(em, eqn, ins):
    p = eqn.params
    body, n, nc, nx, reverse = p["body"], p["length"], p["num_carry"], p["num_xs"], p["reverse"]
    # an initial carry may be Lazy (it is computed straight into the carry's home)
    init, xs, consts = ins[:nc], [em.force(x) for x in ins[nc : nc + nx]], [em.force(x) for x in ins[nc + nx :]]
    carry_types = [o.type for o in eqn.outs[:nc]]
    ys = [em.alloc(o.type) for o in eqn.outs[nc:]]
    body, plan = accumulators(body, 1, nc)
    homes = [em.destinations.get(o.id) for o in eqn.outs[:nc]]
    slots = Slots(em, carry_types, init, inplace_carries(eqn.params["body"], 1, nc, plan), homes)
    n_out = len(eqn.params["body"].outs)

    def step(i):
        t = em.b.sub(em.i64(n - 1), i) if reverse else i
        res = em.lower_body(body, [t] + slots.read() + [row(em, x, t) for x in xs] + consts, lazy_outs=True)
        slots.write(res[:nc], plan, res[n_out:])
        for y, r in zip(ys, res[nc:n_out]):
            store_row(em, y, t, r)

    em.polled_loop(n, step, "scan", eqn.span, cheap_steps(eqn.params["body"]))
    return slots.read() + ys


# scan: the forward also stacks the residuals of every step (T residual records); the backward
# is a scan in the other direction carrying the carry's cotangent and the accumulated
# cotangents of the loop-invariant inputs.


def _scan_vjp_fwd(ctx, eqn, ins, act):
    b = ctx.b
    p = eqn.params
    body, nc, nx = p["body"], p["num_carry"], p["num_xs"]
    any_act = any(act)
    needs = [False] + [any_act and is_float(x) for x in ins[:nc]] + list(act[nc:])
    acc = [1 + k for k in range(nc + nx, len(ins)) if act[k] and is_float(ins[k])]
    fwd, bwd, kinds = ctx.vjp_split(body, needs, accumulate=acc)
    # the carry a step starts from is a residual too: stack it as an extra output
    carry_res = sorted({k for kind, k in kinds if kind == "param" and 1 <= k <= nc})
    fwd = Body(fwd.params, fwd.eqns, fwd.outs + [fwd.params[k] for k in carry_res])
    outs = b.emit(scan_p, ins, eqn.span, body=fwd, length=p["length"], num_carry=nc, num_xs=nx, reverse=p["reverse"])
    ny = len(body.outs) - nc
    b.eqns[-1].note = ctx.tape_note(fwd.out_types[len(body.outs) :], p["length"])
    n_extra = len(fwd.outs) - len(body.outs) - len(carry_res)
    res_stacked = outs[nc + ny : nc + ny + n_extra]
    carry_stacked = dict(zip(carry_res, outs[nc + ny + n_extra :]))
    return outs[: nc + ny], (ins, needs, bwd, kinds, res_stacked, carry_stacked)


def _scan_vjp(ctx, params, aux, outs, cts, current):
    b = ctx.b
    ins, needs, bwd, kinds, res_stacked, carry_stacked = aux
    n, nc, nx = params["length"], params["num_carry"], params["num_xs"]
    init, xs, consts = ins[:nc], ins[nc : nc + nx], ins[nc + nx :]
    float_carry = [k for k in range(nc) if is_float(init[k])]
    ct_carry0 = [ctx.seed_or_zeros(cts[k], outs[k].type) for k in float_carry]
    y_seeds = [ctx.seed_or_zeros(c, o.type) for c, o in zip(cts[nc:], outs[nc:]) if is_float(o)]
    want = [k for k in range(len(ins)) if needs[k + 1] and is_float(ins[k])]
    carry_want = [k for k in want if k < nc]
    acc_idx = [k for k in want if k >= nc + nx]
    row_idx = [k for k in want if nc <= k < nc + nx]

    sb = Builder(b)
    t = sb.param(index_type())
    ct_c = [sb.param(init[k].type) for k in float_carry]
    accs = [sb.param(ins[k].type) for k in acc_idx]
    y_rows = [sb.param(row_type(s.type)) for s in y_seeds]
    res_rows = [sb.param(row_type(r.type)) for r in res_stacked]
    carry_keys = sorted(carry_stacked)
    c_rows = dict(zip(carry_keys, [sb.param(row_type(carry_stacked[k].type)) for k in carry_keys]))
    x_rows = [sb.param(row_type(x.type)) for x in xs]
    param_vals = [t] + [c_rows.get(k + 1) for k in range(nc)] + x_rows + list(consts)
    res = [param_vals[k] if kind == "param" else res_rows[k] for kind, k in kinds]
    ct = dict(zip(want, inline(sb, bwd, ct_c + y_rows + accs + res)))
    new_ct_c = [ct[k] if k in ct else ops.zeros(sb, init[k].type) for k in float_carry]
    body, captured = sb.finish(new_ct_c + [ct[k] for k in acc_idx] + [ct[k] for k in row_idx])
    stacks = y_seeds + list(res_stacked) + [carry_stacked[k] for k in carry_keys] + list(xs)
    inits = ct_carry0 + [ctx.seed_or_zeros(current[k], ins[k].type) for k in acc_idx]
    out = b.emit(
        scan_p,
        inits + stacks + captured,
        body=body,
        length=n,
        num_carry=len(inits),
        num_xs=len(stacks),
        reverse=not params["reverse"],
    )
    result = [None] * len(ins)
    for k, v in zip(float_carry, out):
        if k in carry_want:
            result[k] = v
    for k, v in zip(acc_idx, out[len(float_carry) :]):
        result[k] = v
    for k, v in zip(row_idx, out[len(float_carry) + len(acc_idx) :]):
        result[k] = v
    return result, set(acc_idx)


def _scan_jvp_full(ctx, eqn, ins, ts):
    b = ctx.b
    p = eqn.params
    body, nc, nx = p["body"], p["num_carry"], p["num_xs"]
    any_t = any(t is not None for t in ts)
    # a float carry gets a tangent whenever anything does (it may become active in the loop)
    t_in = [
        (ts[k] if ts[k] is not None else ops.zeros(b, ins[k].type)) if any_t and is_float(ins[k]) else None
        for k in range(nc)
    ] + list(ts[nc:])
    has = [False] + [t is not None for t in t_in]
    jb = ctx.jvp_body(body, has)
    tc = [t for t in t_in[:nc] if t is not None]
    tx = [t for t in t_in[nc : nc + nx] if t is not None]
    tk = [t for t in t_in[nc + nx :] if t is not None]
    ncons = len(ins) - nc - nx

    def reorder(bb, params):
        k = 0

        def take(m):
            nonlocal k
            out = params[k : k + m]
            k += m
            return out

        i, c, t_c, xr, t_xr, cs, t_cs = (
            take(1),
            take(nc),
            take(len(tc)),
            take(nx),
            take(len(tx)),
            take(ncons),
            take(len(tk)),
        )
        outs = inline(bb, jb, i + c + xr + cs + t_c + t_xr + t_cs)
        n_out = len(body.outs)
        prim, tang = outs[:n_out], outs[n_out:]
        float_out = [is_float(o) for o in body.outs]
        tmap, it = [], iter(tang)
        for f in float_out:
            tmap.append(next(it) if f else None)
        carry_t = [tmap[k2] for k2 in range(nc) if t_in[k2] is not None]
        y_t = [x for x in tmap[nc:] if x is not None]
        return prim[:nc] + carry_t + prim[nc:] + y_t

    types = (
        [index_type()]
        + [x.type for x in ins[:nc]]
        + [t.type for t in tc]
        + [row_type(x.type) for x in ins[nc : nc + nx]]
        + [row_type(t.type) for t in tx]
        + [x.type for x in ins[nc + nx :]]
        + [t.type for t in tk]
    )
    nb = ctx.closed_body(types, reorder)
    outs = b.emit(
        scan_p,
        list(ins[:nc]) + tc + list(ins[nc : nc + nx]) + tx + list(ins[nc + nx :]) + tk,
        eqn.span,
        body=nb,
        length=p["length"],
        num_carry=nc + len(tc),
        num_xs=nx + len(tx),
        reverse=p["reverse"],
    )
    ny = len(body.outs) - nc
    carry, carry_t = outs[:nc], iter(outs[nc : nc + len(tc)])
    ys = outs[nc + len(tc) : nc + len(tc) + ny]
    ys_t = iter(outs[nc + len(tc) + ny :])
    touts = [next(carry_t) if t_in[k] is not None else None for k in range(nc)]
    touts += [next(ys_t) if is_float(o) else None for o in body.outs[nc:]]
    return carry + ys, touts


scan_p = primitive(
    "scan",
    shape=_scan_shape,
    lower=_scan_lower,
    reads_lazy=True,
    kind=Kind.LOOP,
    vjp_fwd=_scan_vjp_fwd,
    vjp=_scan_vjp,
    jvp_full=_scan_jvp_full,
    threads_cotangents=True,
    loop=Loop(
        trips=lambda p: p["length"],
        carries=lambda p: (0, 1, p["num_carry"]),
        consts=lambda p: 1 + p["num_xs"] + p["num_carry"],
        indexed=True,
    ),
)
