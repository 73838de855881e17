"""What the derivative rules of the structured ops (map, scan, while, cond, call) share: seeds,
closed bodies, tangents read back from an op emitted with them, tape notes. The rules reach
them through their context (ad/rules.py, Ctx). The layouts of the loops' operands are in
ir/prim.py (Loop)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.build import Builder
from ..ir.core import Body, is_float
from ..ir.walk import inline
from ..prims import ops
from ..prims.scan import scan_p
from ..typesys import index_type, row_type


def seed_or_zeros(b, ct, t):
    """ct, or zeros of type t where it is a structural zero (None): a loop's operand needs a
    value."""
    return ct if ct is not None else ops.zeros(b, t)


def closed_body(param_types, fn) -> Body:
    """A closed body built by fn(builder, params) -> outs."""
    b = Builder()
    params = [b.param(t) for t in param_types]
    return b.finish(list(fn(b, params)))[0]


def tangents_of(outs, n, like):
    """Split the outputs of an op emitted with tangents: (its n values, the tangents of the
    float ones among `like`, None for the others)."""
    touts = iter(outs[n:])
    return outs[:n], [next(touts) if is_float(o) else None for o in like]


def tape_note(types, n) -> str:
    """What a loop's tape holds: `types` per iteration, n iterations (None: known at run time)."""
    per = sum(t.nbytes for t in types)
    what = ", ".join(map(str, types)) or "nothing"
    total = (
        f"x {n} iterations = {per * n} B" if n is not None else "x the iterations the loop runs (a tape that doubles)"
    )
    return f"tape: {len(types)} residual{'s' * (len(types) != 1)} per iteration ({what}) = {per} B, {total}"


# --- the backward loop of map and scan ----------------------------------------------------------
# See Note [Loop derivatives]. A map is a scan with no carry: one builder makes
# the backward scan of both. The layouts (ir/prim.py, Loop):
#   map body  (i, *x_rows, *consts) -> ys
#   scan body (i, *carry, *x_rows, *consts) -> (*carry, *ys)
# so body param 0 is the index, params 1..nc the carry, then the rows, then the constants; and
# the op's input k is body param k + 1. The backward scan's operands are
#   carries (cotangents of the float carries, accumulators of the constants' cotangents)
#   xs      (seeds of the float ys, stacked residuals, stacked carries, the forward's xs)
#   consts  whatever its body captures (the bwd body's loop-invariant residuals)


@dataclass
class LoopResiduals:
    """What the augmented forward of a map or scan leaves for its backward."""

    ins: list  # the op's inputs
    needs: list[bool]  # per body param (the index first): whether it wants a cotangent
    bwd: Body  # the body's backward (vjp_split), seeds and accumulators first
    kinds: list  # where each of bwd's residuals is: a body param, or an extra output of fwd
    stacked: list  # fwd's extra outputs, one row per iteration
    # body param of a carry -> the carry each iteration started from, stacked (scan only: the
    # body's backward reads the carry, which the forward loop overwrites)
    carries: dict = field(default_factory=dict)


def reverse_loop(ctx, res: LoopResiduals, outs, cts, current, *, length, num_carry, num_xs, reverse):
    """The backward of a map (num_carry 0) or scan as a scan emitted into ctx.b: (cotangents of
    the op's inputs, the indices of those that are totals: the constants' accumulators start
    from `current`, their cotangents so far; See Note [Threaded accumulators] in ad/vjp.py).
    `reverse`: whether the backward scan walks the iterations last first (a scan's backward
    walks them in the other order than its forward)."""
    b, ins, nc, nx = ctx.b, res.ins, num_carry, num_xs
    init, xs, consts = ins[:nc], ins[nc : nc + nx], ins[nc + nx :]
    float_carry = [k for k in range(nc) if is_float(init[k])]
    # a float carry always has a cotangent to carry back (zero if none came), since the body
    # may mix it with an active input; the ys' seeds are read one row per iteration
    ct_carry0 = [seed_or_zeros(b, cts[k], outs[k].type) for k in float_carry]
    y_seeds = [seed_or_zeros(b, c, o.type) for c, o in zip(cts[nc:], outs[nc:]) if is_float(o)]
    want = [k for k in range(len(ins)) if res.needs[k + 1] and is_float(ins[k])]  # input k is param k + 1
    acc_idx = [k for k in want if k >= nc + nx]  # constants: summed over iterations in a carry
    row_idx = [k for k in want if nc <= k < nc + nx]  # xs: one cotangent row per iteration

    sb = Builder(b)
    t = sb.param(index_type())
    ct_c = [sb.param(init[k].type) for k in float_carry]
    accs = [sb.param(ins[k].type) for k in acc_idx]
    y_rows = [sb.param(row_type(s.type)) for s in y_seeds]
    res_rows = [sb.param(row_type(r.type)) for r in res.stacked]
    carry_keys = sorted(res.carries)
    c_rows = dict(zip(carry_keys, [sb.param(row_type(res.carries[k].type)) for k in carry_keys]))
    x_rows = [sb.param(row_type(x.type)) for x in xs]
    # the forward body's params as this iteration saw them: a carry only where it was stacked
    # (the body's backward reads no other), the rows of the xs, the constants themselves
    param_vals = [t] + [c_rows.get(k + 1) for k in range(nc)] + x_rows + list(consts)
    residuals = [param_vals[k] if kind == "param" else res_rows[k] for kind, k in res.kinds]
    ct = dict(zip(want, inline(sb, res.bwd, ct_c + y_rows + accs + residuals)))
    new_ct_c = [ct[k] if k in ct else ops.zeros(sb, init[k].type) for k in float_carry]
    body, captured = sb.finish(new_ct_c + [ct[k] for k in acc_idx] + [ct[k] for k in row_idx])
    stacks = y_seeds + list(res.stacked) + [res.carries[k] for k in carry_keys] + list(xs)
    inits = ct_carry0 + [seed_or_zeros(b, current[k], ins[k].type) for k in acc_idx]
    out = b.emit(
        scan_p,
        inits + stacks + captured,
        body=body,
        length=length,
        num_carry=len(inits),
        num_xs=len(stacks),
        reverse=reverse,
        derived=True,  # its sums over iterations may be reassociated (Note [Reassociated sums] in lower/loops.py)
    )
    # the backward scan's outputs: (carry cotangents, accumulators, stacked rows' cotangents)
    result = [None] * len(ins)
    for k, v in zip(float_carry, out):
        if k in want:
            result[k] = v
    for k, v in zip(acc_idx, out[len(float_carry) :]):
        result[k] = v
    for k, v in zip(row_idx, out[len(float_carry) + len(acc_idx) :]):
        result[k] = v
    return result, set(acc_idx)


# --- a loop with tangents -----------------------------------------------------------------------


def with_tangents(ctx, body, ins, ts, *, num_carry, num_xs, indexed=True):
    """The loop body and inputs that compute tangents beside the values, for forward mode: the
    body's jvp (ctx.jvp_body takes (params, tangents) and returns (outs, tangents)) reordered to
    the loop's layout, each group followed by its tangents:
      params (i, *carry, *t_carry, *x_rows, *t_rows, *consts, *t_consts)   (i: if indexed)
      outs   (*carry, *t_carry, *ys, *t_ys)
    Returns (body, inputs, t_in): t_in[k] is the tangent input k gets, or None. A float carry
    gets one whenever any input has one (the loop may mix them into it); map and scan (and
    while: not indexed, no xs) share it."""
    nc, nx = num_carry, num_xs
    any_t = any(t is not None for t in ts)
    t_in = [
        (ts[k] if ts[k] is not None else ops.zeros(ctx.b, ins[k].type)) if any_t and is_float(ins[k]) else None
        for k in range(nc)
    ] + list(ts[nc:])
    jb = ctx.jvp_body(body, [False] * indexed + [t is not None for t in t_in])
    tc = [t for t in t_in[:nc] if t is not None]
    tx = [t for t in t_in[nc : nc + nx] if t is not None]
    tk = [t for t in t_in[nc + nx :] if t is not None]
    groups = [  # (values, their tangents) in the loop's order
        (ins[:nc], tc),
        (ins[nc : nc + nx], tx),
        (ins[nc + nx :], tk),
    ]

    def reorder(bb, params):
        params = list(params)
        i, params = params[:indexed], params[indexed:]
        vals, tans = [], []
        for xs_, ts_ in groups:
            vals += params[: len(xs_)]
            tans += params[len(xs_) : len(xs_) + len(ts_)]
            params = params[len(xs_) + len(ts_) :]
        outs = inline(bb, jb, i + vals + tans)
        n_out = len(body.outs)
        prim, tang = outs[:n_out], iter(outs[n_out:])
        touts = [next(tang) if is_float(o) else None for o in body.outs]
        carry_t = [touts[k] for k in range(nc) if t_in[k] is not None]
        y_t = [x for x in touts[nc:] if x is not None]
        return prim[:nc] + carry_t + prim[nc:] + y_t

    def row(x, is_row):
        return row_type(x.type) if is_row else x.type

    types = [index_type()] * indexed + [row(x, g == 1) for g, (xs_, ts_) in enumerate(groups) for x in list(xs_) + ts_]
    inputs = [x for xs_, ts_ in groups for x in list(xs_) + ts_]
    return closed_body(types, reorder), inputs, t_in


def split_tangents(outs, body, num_carry, t_in):
    """The outputs of a loop made by with_tangents: (the values, the tangents of the op's
    outputs, None for those that have none)."""
    nc = num_carry
    ntc = sum(1 for t in t_in[:nc] if t is not None)
    ny = len(body.outs) - nc
    carry, carry_t = outs[:nc], iter(outs[nc : nc + ntc])
    ys, ys_t = outs[nc + ntc : nc + ntc + ny], iter(outs[nc + ntc + ny :])
    touts = [next(carry_t) if t_in[k] is not None else None for k in range(nc)]
    touts += [next(ys_t) if is_float(o) else None for o in body.outs[nc:]]
    return carry + ys, touts


# Note [Loop derivatives]
# ~~~~~~~~~~~~~~~~~~~~~~~~~
# A loop body is split by vjp_split into a forward body (which also returns the residuals
# its backward reads) and a backward body. The forward loop stacks the residuals of each of
# its T iterations, so the tape of a loop over T steps is T residual records. Values that do
# not change across iterations (captured weights, constants) are not taped: the backward loop
# reads them directly, and their cotangents are summed in a carry of the backward loop: the one
# accumulator a tied weight gets.
