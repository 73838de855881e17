"""The structured op scan (fold, unfold, iterate and windows-free loops lower onto it): a carry
threaded through the rows of its arrays; its derivative stacks T residual records and runs a
scan the other way."""

from __future__ import annotations

import math

from llvmlite import ir

from ..errors import ShapeError
from ..ir.core import Body, is_float
from ..ir.prim import may_fail
from ..ir.walk import all_eqns
from ..lower.bodies import body_function
from ..lower.emit import PARALLEL_MIN, Arr, Lazy, reg_type
from ..lower.loops import (
    Deferral,
    Slots,
    accumulators,
    added,
    cheap_steps,
    deferred_loop,
    deferred_scatters,
    gathered_loop,
    inplace_carries,
    reassociate,
    row,
    step_work,
    store_row,
    sum_carries,
    term_values,
    zero_outside,
)
from ..typesys import stacked
from .core import Kind, Loop, primitive

# --- scan ---------------------------------------------------------------------------------------


def _scan_shape(in_types, body, length, num_carry, num_xs, reverse, derived=False):
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
    # an initial carry may be Lazy (it is computed straight into the carry's home), and so may
    # a uniform xs (a broadcast scalar: its rows are read without memory)
    init, xs, consts = ins[:nc], [_rows_of(em, x) for x in ins[nc : nc + nx]], [em.force(x) for x in ins[nc + nx :]]
    carry_types = [o.type for o in eqn.outs[:nc]]
    ys = [em.alloc(o.type) for o in eqn.outs[nc:]]
    body, plan = accumulators(body, 1, nc)
    cheap = cheap_steps(eqn.params["body"], 1, nc)
    deferral = deferred_scatters(body, plan, 1 + nc + nx) if cheap else Deferral({}, {}, {})
    deferred = deferral.terms
    n_out = len(eqn.params["body"].outs)
    if deferred and nc == 1 and n_out == 1 and 0 in deferral.first_writes and not reverse and _pure(body):
        # a loop that only adds its terms into one vector: each element is the sum of the terms
        # that reach it, computed at once (See Note [Deferred scatters] in lower/loops.py)
        dest = em.destinations.get(eqn.outs[0].id)
        out = dest if dest is not None and dest.contiguous else em.alloc(carry_types[0])

        def values_at(t):
            res = em.lower_body(body, [t, out] + [row(em, x, t) for x in xs] + consts, lazy_outs=True)
            return {j: v for (_, j), v in term_values(plan, res[:1], res[1:]).items()}

        start = None if _zero(em, init[0]) else init[0]
        gathered_loop(em, n, values_at, deferral.offsets[0], out, start, eqn.span)
        return [out]
    # an accumulator from zero whose stored term writes each element first (See Note [Deferred
    # scatters] in lower/loops.py): zeros only where that term does not write
    firsts = {k: jc for k, jc in deferral.first_writes.items() if deferred and not reverse and _zero(em, init[k])}
    sums = sum_carries(body, 1, nc) if p.get("derived") else {}  # See Note [Reassociated sums] in lower/loops.py
    inplace = inplace_carries(eqn.params["body"], 1, nc, plan)
    if not deferred and _sums_apart(eqn, sums, inplace):
        return _in_blocks(em, eqn, body, plan, sums, inplace, init, xs, consts, ys)
    homes = [em.destinations.get(o.id) for o in eqn.outs[:nc]]
    slots = Slots(em, carry_types, init, inplace, homes, set(firsts))
    for k, (_, c) in firsts.items():
        zero_outside(em, slots.accumulator(k), c, c + n)
    stored = {(k, j) for k, (j, _) in firsts.items()}

    def order(i):
        return em.b.sub(em.i64(n - 1), i) if reverse else i

    fn, consts = (None, consts) if deferred else _long_body(em, eqn, body, plan, sums, slots.inplace, consts)

    def step(i):
        t = order(i)
        args = [t] + slots.read() + [row(em, x, t) for x in xs] + consts
        return _iteration(em, fn, body, slots, sums, plan, ys, t, args, deferred, stored)

    if deferred:
        deferred_loop(em, n, step, deferred, slots.accumulator, consts, order, eqn.span)
    else:
        em.polled_loop(n, step, "scan", eqn.span, cheap)
    return slots.read() + ys


def _long_body(em, eqn, body, plan, sums, in_place, consts):
    """(the function of a long body, which adds its own terms to the carries `plan` sums and
    updates those in_place where they are; the constants in memory, passed to each call), or
    (None, consts) for a body lowered where it runs (See Note [Loop functions] in
    lower/bodies.py)."""
    p = eqn.params
    nc, n_out = p["num_carry"], len(p["body"].outs)
    types = [o.type for o in eqn.outs[:nc]]

    def in_function(inner, params, res):
        reassociate(params[1 : 1 + nc], res, sums)
        return added(inner, params[1 : 1 + nc], types, plan, res, n_out)

    fn = body_function(em, body, eqn.span, in_function, key=p["body"], carries={k: 1 + k for k in in_place})
    return (None, consts) if fn is None else (fn, [em.materialise(c) for c in consts])


def _iteration(em, fn, body, slots, sums, plan, ys, t, args, deferred=(), stored=()):
    """One run of the body at iteration t on args: a call of its function fn, which adds its own
    terms, or its equations lowered here; the carries written to slots (their terms added, as
    `plan` says, but for those `deferred`: returned), the rows of ys stored."""
    nc = len(slots.types)
    n_out = nc + len(ys)
    if fn is not None:  # the results computed in the carries' spare buffers and the rows of ys
        dests = {k: slots.spare(k) for k, c in enumerate(slots.types) if c.rank and k not in slots.inplace}
        dests.update((nc + j, row(em, y, t)) for j, y in enumerate(ys) if y.type.rank > 1)
        res = fn.call(em, args, dests)
        held = slots.write(res[:nc])
    else:  # the rows of ys computed straight into place, as a map's are
        dests = _rows_of_ys(em, body, ys, t, nc)
        with em.into_rows({body.outs[k].id: r for k, r in dests.items()}):
            res = em.lower_body(body, args, lazy_outs=True)
        reassociate(args[1 : 1 + nc], res, sums)
        held = slots.write(res[:nc], plan, res[n_out:], deferred, stored)
    for j, (y, r) in enumerate(zip(ys, res[nc:n_out])):
        if r != dests.get(nc + j):  # (a view of it, equal, as a transpose computed into place)
            store_row(em, y, t, r)
    return held


def _rows_of_ys(em, body, ys, t, nc) -> dict:
    """Result k -> the row t of its y, for the array results of ys that the body makes, each
    one result only (not a carry too, nor another y)."""
    outs = [o.id for o in body.outs]
    made = {x.id for e in body.eqns for x in e.outs}
    return {
        nc + j: row(em, y, t)
        for j, y in enumerate(ys)
        if y.type.rank > 1 and outs[nc + j] in made and outs.count(outs[nc + j]) == 1
    }


def _derived(params) -> dict:
    """The `derived` flag of a scan made by differentiation, for a scan made from it (its
    forward again, its tangents): what it sums over iterations is as free of order."""
    return {"derived": True} if params.get("derived") else {}


SUM_BLOCKS = 8  # the blocks of iterations of a loop whose carries are only sums (See Note [Sums in blocks])
BLOCK_OVERHEAD = 16  # its work over the elements its blocks zero and add up, from which it is cut


def _sums_apart(eqn, sums, inplace) -> bool:
    """Whether a scan made by differentiation only sums terms into its carries (a map's
    backward: the cotangents of the map's constants), has no effect and no failure, and enough
    work for its iterations to run as blocks on the threads (See Note [Sums in blocks])."""
    p = eqn.params
    n, nc, body = p["length"], p["num_carry"], p["body"]
    types = [o.type for o in eqn.outs[:nc]]
    sums_only = all(t.dtype.is_float and (k in sums if t.rank == 0 else k in inplace) for k, t in enumerate(types))
    if not (p.get("derived") and sums_only and n >= 2 * SUM_BLOCKS and _pure(body)):
        return False
    work = n * step_work(body, 1, nc)
    return work >= PARALLEL_MIN and work >= BLOCK_OVERHEAD * SUM_BLOCKS * sum(t.size for t in types)


def _in_blocks(em, eqn, body, plan, sums, inplace, init, xs, consts, ys):
    """The loop as SUM_BLOCKS blocks of its iterations, each summing its terms into carries of
    its own from zero, on the threads; then each carry is its initial value plus the blocks'
    sums, added in the blocks' order (See Note [Sums in blocks])."""
    p = eqn.params
    n, nc = p["length"], p["num_carry"]
    types = [o.type for o in eqn.outs[:nc]]
    per = -(-n // SUM_BLOCKS)
    count = -(-n // per)
    parts = [em.alloc(stacked(t, count)) for t in types]
    for part, t in zip(parts, types):
        if t.rank:
            em.fill(part, [ir.Constant(reg_type(t.dtype), 0.0)], lambda z: z, "zero")
    cheap = cheap_steps(p["body"], 1, nc)

    fn, consts = _long_body(em, eqn, body, plan, sums, inplace, consts)  # (called from each block)

    def block(j):
        b = em.b
        zeros = [ir.Constant(reg_type(t.dtype), 0.0) if t.rank == 0 else None for t in types]
        homes = [row(em, part, j) if t.rank else None for part, t in zip(parts, types)]
        slots = Slots(em, types, zeros, inplace, homes, {k for k, t in enumerate(types) if t.rank})
        start, size = em.block_of(j, per, n)

        def step(i):
            t = b.add(start, i)
            args = [t] + slots.read() + [row(em, x, t) for x in xs] + consts
            _iteration(em, fn, body, slots, sums, plan, ys, t, args)

        em.polled_loop(size, step, "block", eqn.span, cheap)
        for k, (t, v) in enumerate(zip(types, slots.read())):
            if t.rank == 0:
                em.store(parts[k], [j], v)

    em.parallel_loop(count, block, "blocks")
    outs = []
    for k, (o, t, part) in enumerate(zip(eqn.outs, types, parts)):
        terms = ([] if _zero(em, init[k]) else [init[k]]) + [row(em, part, em.i64(j)) for j in range(count)]
        if t.rank == 0:
            outs.append(em.sum_in_order(*[_scalar(em, v) for v in terms]))
            continue
        dest = em.destinations.get(o.id)
        out = dest if dest is not None and dest.contiguous else em.alloc(t)
        em.fill(out, terms, em.sum_in_order, "blocksum")
        outs.append(out)
    return outs + ys


def _scalar(em, v):
    """A scalar carry's value in a register."""
    if isinstance(v, Arr):
        return em.load(v, [])
    return v.at([]) if isinstance(v, Lazy) else v


def _pure(body) -> bool:
    """Whether evaluating body more than once, or not at all, changes nothing but the time."""
    return not any(may_fail(e) or e.prim.effect for e in all_eqns(body))


def _zero(em, v) -> bool:
    """Whether a lowered initial carry is +0 everywhere (a broadcast zero: where derivatives'
    accumulators start)."""
    if not (isinstance(v, Lazy) and v.uniform):
        return False
    c = v.at([em.i64(0)] * v.type.rank)
    return isinstance(c, ir.Constant) and c.constant == 0 and math.copysign(1.0, c.constant) > 0


def _rows_of(em, x):
    """x in memory, unless it is a uniform Lazy (`row` reads those as they are)."""
    return x if isinstance(x, Lazy) and x.uniform else em.force(x)


# scan: the forward also stacks the residuals of every step (T residual records); the backward
# is a scan in the other direction (ad/loops.py, reverse_loop) carrying the carry's cotangent
# and the accumulated cotangents of the loop-invariant inputs.


def _scan_vjp_fwd(ctx, eqn, ins, act):
    b = ctx.b
    p = eqn.params
    body, nc, nx = p["body"], p["num_carry"], p["num_xs"]
    any_act = any(act)
    # body params (i, *carry, *x_rows, *consts): a float carry needs a cotangent whenever any
    # input is active, since the body may mix that input into it
    needs = [False] + [any_act and is_float(x) for x in ins[:nc]] + list(act[nc:])
    # input k is body param k + 1; the constants' cotangents are threaded through the backward
    acc = [1 + k for k in range(nc + nx, len(ins)) if act[k] and is_float(ins[k])]
    fwd, bwd, kinds = ctx.vjp_split(body, needs, accumulate=acc)
    # the carry a step starts from is a residual too (the next step overwrites it): fwd also
    # returns it, so the scan stacks it (params 1..nc are the carry)
    carry_res = sorted({k for kind, k in kinds if kind == "param" and 1 <= k <= nc})
    fwd = Body(fwd.params, fwd.eqns, fwd.outs + [fwd.params[k] for k in carry_res])
    params = dict(length=p["length"], num_carry=nc, num_xs=nx, reverse=p["reverse"], **_derived(p))
    outs = b.emit(scan_p, ins, eqn.span, body=fwd, **params)
    # the scan's outputs: (*final carry, *ys, *stacked residuals, *stacked carries)
    ny = len(body.outs) - nc
    b.eqns[-1].note = ctx.tape_note(fwd.out_types[len(body.outs) :], p["length"])
    n_extra = len(fwd.outs) - len(body.outs) - len(carry_res)
    res_stacked = outs[nc + ny : nc + ny + n_extra]
    carry_stacked = dict(zip(carry_res, outs[nc + ny + n_extra :]))
    return outs[: nc + ny], ctx.LoopResiduals(ins, needs, bwd, kinds, res_stacked, carry_stacked)


def _scan_vjp(ctx, params, aux, outs, cts, current):
    return ctx.reverse_loop(
        aux,
        outs,
        cts,
        current,
        length=params["length"],
        num_carry=params["num_carry"],
        num_xs=params["num_xs"],
        reverse=not params["reverse"],  # last step first
    )


def _scan_jvp_full(ctx, eqn, ins, ts):
    p = eqn.params
    nc, nx = p["num_carry"], p["num_xs"]
    body, inputs, t_in = ctx.with_tangents(p["body"], ins, ts, num_carry=nc, num_xs=nx)
    n_tc = sum(1 for t in t_in[:nc] if t is not None)
    n_tx = sum(1 for t in t_in[nc : nc + nx] if t is not None)
    outs = ctx.b.emit(
        scan_p,
        inputs,
        eqn.span,
        body=body,
        length=p["length"],
        num_carry=nc + n_tc,
        num_xs=nx + n_tx,
        reverse=p["reverse"],
        **_derived(p),
    )
    return ctx.split_tangents(outs, p["body"], nc, t_in)


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
        stacked=lambda p: p["num_carry"],
    ),
)


# Note [Sums in blocks]
# ~~~~~~~~~~~~~~~~~~~~~
# A map's rows run on the threads, but its backward is a scan: its carries sum the cotangents
# of the map's constants (tied weights) over the rows, each row adding to the sums the row
# before left, so it ran on one thread. Those sums have no order of their own (See Note
# [Reassociated sums] in lower/loops.py). So a scan made by differentiation whose carries are
# all such sums, or that has none (a map with no constant to differentiate, as attention's
# scores per batch and head: b8 t128 d128 f32 value_and_grad 5.2 -> 4.3 ms at 2 threads)
# (`_sums_apart`: array carries added to in place, scalar ones sum chains), with
# no effect and no failure and enough work, runs as SUM_BLOCKS blocks of its iterations, a
# parallel loop: each block sums its rows' terms from zero into carries of its own, and each
# carry is then its initial value plus the blocks' sums, in the blocks' order. The blocks
# depend on the count of iterations alone, so the results are the same bits on any count of
# threads (they differ from the serial scan's by rounding). The extra work, zeroing the
# blocks' carries and adding them up, is kept below 1/BLOCK_OVERHEAD of the loop's. A long
# body is a function (Note [Loop functions] in lower/bodies.py) that each block calls.
