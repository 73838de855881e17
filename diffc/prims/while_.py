"""The structured op while: a data-dependent trip count; its derivative tapes each iteration's
residuals on a growing tape (prims/tape.py) in its one forward run."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ShapeError, TypeError_
from ..ir.build import Builder
from ..ir.core import Body
from ..ir.walk import clone_body, inline
from ..lower.bodies import loop_body_lowering
from ..lower.emit import ERR_NEGATIVE, Site
from ..lower.loops import Slots
from ..typesys import DType, TensorType, index_type
from . import ops
from .core import Kind, Loop, primitive, rules_via
from .elementwise import gt_p, lt_p
from .tape import WhileOrigin, while_tape_lower, while_tape_shape, while_untape_lower, while_untape_shape

# --- while --------------------------------------------------------------------------------------


def _while_shape(in_types, cond, body, num_state):
    state = in_types[:num_state]
    if cond.out_types != [TensorType(DType.BOOL, ())]:
        raise TypeError_(f"the condition of while must return a bool, got {tuple(cond.out_types)}")
    if body.out_types != list(state):
        raise ShapeError(
            "the body of while must return a state of the same type as the initial one: "
            f"expected {tuple(state)}, got {tuple(body.out_types)}"
        )
    return list(state)


def _while_lower(em, eqn, ins):
    p = eqn.params
    ns = p["num_state"]
    init, consts = ins[:ns], ins[ns:]
    slots = Slots(em, [o.type for o in eqn.outs], init)
    cond, body = (loop_body_lowering(em, p[k], eqn.span) for k in ("cond", "body"))
    head, loop_body, done = em.block("while.head"), em.block("while.body"), em.block("while.end")
    em.b.branch(head)
    em.b.position_at_end(head)
    (c,) = cond(slots.read() + consts)
    em.b.cbranch(c, loop_body, done)
    em.b.position_at_end(loop_body)
    em.poll_interrupt(eqn.span)
    slots.write(body(slots.read() + consts))
    em.b.branch(head)
    em.b.position_at_end(done)
    return slots.read()


# count: a trip count known only at run time (iterate's n), passed through; a located error
# when it is negative.


def _count_shape(in_types, what):
    if in_types != [TensorType(DType.I64, ())]:
        raise TypeError_(f"{what} must be an integer, got {in_types[0]}")
    return list(in_types)


def _count_lower(em, eqn, ins):
    (n,) = ins
    em.fail_if(em.b.icmp_signed("<", n, em.i64(0)), Site(eqn.span, ERR_NEGATIVE, eqn.params["what"]), n)
    return [n]


count_p = primitive("count", shape=_count_shape, lower=_count_lower, nondiff=True, effect=True)


# while: the forward appends each iteration's residuals to a growing tape (prims/tape.py);
# the backward replays the tape last record first.


class _Plan:
    """Which inputs of a while get cotangents, from the active ones (act): every float state
    if any input is active (the state mixes them), the active float constants; the backward
    loop carries the state's cotangent and accumulates the constants' (`acc_idx`)."""

    def __init__(self, types, act, ns: int):
        self.types = list(types)
        self.needs = tuple([any(act) and t.dtype.is_float for t in types[:ns]] + list(act[ns:]))
        self.float_state = [k for k in range(ns) if types[k].dtype.is_float]
        self.want = [k for k, t in enumerate(types) if self.needs[k] and t.dtype.is_float]
        self.acc_idx = [k for k in self.want if k >= ns]

    def carry_types(self):
        return [self.types[k] for k in self.float_state + self.acc_idx]


def _reverse_step(ctx, sb, plan, bwd, kinds, param_vals, extra, carry):
    """One iteration of the backward loop, built in sb: the state's cotangent before an
    iteration and the constants' accumulated so far, from the state's after it and the
    iteration's residuals."""
    ct = dict(zip(plan.want, inline(sb, bwd, carry + ctx.residual_values(kinds, param_vals, extra))))
    new_ct = [ct[k] if k in ct else ops.zeros(sb, plan.types[k]) for k in plan.float_state]
    return new_ct + [ct[k] for k in plan.acc_idx]


@dataclass
class _WhileResiduals:
    """What a while's taping forward leaves for its backward."""

    ins: list  # the loop's inputs
    plan: _Plan  # which of them get cotangents
    bwd: Body  # the body's backward: (state cotangent, accumulators, residuals) -> the same
    kinds: list  # where each residual of bwd is: a param of the body, or an extra output of fwd
    state_res: list[int]  # the state params the backward reads, taped after fwd's extra outputs
    n_extra: int  # fwd's extra outputs (the first values of each taped record)
    res_types: list  # the types of a taped record
    tape: object  # the tape's handle
    count: object  # the iterations run
    origin: WhileOrigin  # the loop itself, for a derivative of the backward


def _while_vjp_fwd(ctx, eqn, ins, act):
    b = ctx.b
    p = eqn.params
    body, ns = p["body"], p["num_state"]
    plan = _Plan([x.type for x in ins], act, ns)
    # the taped body is never differentiated itself (its derivative is made from the loop:
    # See Note [Differentiating a tape] in ad/via.py)
    inside = ctx.building(ctx.Mode.TAPE_INSIDE)
    fwd, bwd, kinds = inside.vjp_split(body, list(plan.needs), accumulate=plan.acc_idx)
    # body params (*state, *consts): the state an iteration starts from is overwritten by the
    # next one, so the state params the backward reads are taped too, after fwd's residuals;
    # the constants are not (the backward loop reads them as they are)
    state_res = sorted({k for kind, k in kinds if kind == "param" and k < ns})
    n_extra = len(fwd.outs) - ns
    fwd = Body(fwd.params, fwd.eqns, fwd.outs + [fwd.params[k] for k in state_res])
    origin = WhileOrigin(clone_body(p["cond"]), clone_body(body), ns, plan.needs)
    outs = b.emit(while_tape_p, ins, eqn.span, cond=clone_body(p["cond"]), body=fwd, num_state=ns, origin=origin)
    b.eqns[-1].note = ctx.tape_note(fwd.out_types[ns:], None)
    state, tape, count = outs[:ns], outs[ns], outs[ns + 1]
    return state, _WhileResiduals(ins, plan, bwd, kinds, state_res, n_extra, fwd.out_types[ns:], tape, count, origin)


def _while_vjp(ctx, params, aux, outs, cts, current):
    b = ctx.b
    ins, plan, bwd, kinds = aux.ins, aux.plan, aux.bwd, aux.kinds
    ns = params["num_state"]
    consts = ins[ns:]
    ct0 = [ctx.seed_or_zeros(cts[k], outs[k].type) for k in plan.float_state]
    sb = Builder(b)
    # the backward body: (*one taped record, *carry) -> carry, the record being (fwd's extra
    # outputs, the state params the backward reads: the iteration overwrote them)
    res = [sb.param(t) for t in aux.res_types]
    carry = [sb.param(t) for t in plan.carry_types()]
    extra, state_vals = res[: aux.n_extra], dict(zip(aux.state_res, res[aux.n_extra :]))
    param_vals = [state_vals.get(k) for k in range(ns)] + list(consts)
    body, captured = sb.finish(_reverse_step(ctx, sb, plan, bwd, kinds, param_vals, extra, carry))
    carry0 = ct0 + [ctx.seed_or_zeros(current[k], ins[k].type) for k in plan.acc_idx]
    # the loop's inputs ride along where this code may be differentiated again (ad/via.py)
    keep = ctx.keeps_origin
    out = b.emit(
        while_untape_p,
        [aux.tape, aux.count] + carry0 + captured + (list(ins) if keep else []),
        body=body,
        num_res=len(aux.res_types),
        num_carry=len(carry0),
        origin=aux.origin if keep else None,
    )
    result = [None] * len(ins)
    for k, v in zip(plan.float_state, out):
        if k in plan.want:
            result[k] = v
    for k, v in zip(plan.acc_idx, out[len(plan.float_state) :]):
        result[k] = v
    return result, set(plan.acc_idx)


def _while_jvp_full(ctx, eqn, ins, ts):
    p = eqn.params
    ns = p["num_state"]
    # the body with tangents: params and outs (*state, *state tangents[, *consts, *their
    # tangents]); the condition reads the same params, ignoring the tangents
    body, inputs, t_in = ctx.with_tangents(p["body"], ins, ts, num_carry=ns, num_xs=0, indexed=False)
    n_ts = sum(1 for t in t_in[:ns] if t is not None)
    n_consts = len(ins) - ns

    def cond_fn(bb, params):
        return inline(bb, p["cond"], params[:ns] + params[ns + n_ts : ns + n_ts + n_consts])

    outs = ctx.b.emit(
        while_p,
        inputs,
        eqn.span,
        cond=ctx.closed_body(body.in_types, cond_fn),
        body=body,
        num_state=ns + n_ts,
    )
    return ctx.split_tangents(outs, p["body"], ns, t_in)


while_p = primitive(
    "while",
    shape=_while_shape,
    lower=_while_lower,
    kind=Kind.LOOP,
    vjp_fwd=_while_vjp_fwd,
    vjp=_while_vjp,
    jvp_full=_while_jvp_full,
    threads_cotangents=True,
    tapes=True,
    loop=Loop(),
)


# --- the derivatives of the tape ops: See Note [Differentiating a tape] in ad/via.py -----------


def _origin(ctx, eqn):
    o = eqn.params["origin"]
    if o is None:  # made inside a tape's own bodies, which are never differentiated
        raise TypeError_(ctx.unsupported(eqn.prim))
    return o


def _run(ctx, b, o: WhileOrigin, init, consts, n):
    """The state after n iterations of the original loop's body from init."""
    ns = len(init)
    types = [index_type()] + [x.type for x in init] + [x.type for x in consts] + [n.type]

    def step(bb, ps):
        j, s, cs = ps[0], ps[1 : 1 + ns], ps[1 + ns : -1]
        return [ops.add(bb, j, ops.const(bb, 1, DType.I64))] + inline(bb, o.body, s + cs)

    outs = b.emit(
        while_p,
        [ops.const(b, 0, DType.I64)] + list(init) + list(consts) + [n],
        cond=ctx.closed_body(types, lambda bb, ps: [bb.emit1(lt_p, [ps[0], ps[-1]])]),
        body=ctx.closed_body(types, step),
        num_state=1 + ns,
    )
    return outs[1:]


def _tape_as_while(ctx, eqn):
    """while_tape as the while it was made from."""
    o = _origin(ctx, eqn)

    def fn(b, ps):
        return b.emit(while_p, ps, cond=clone_body(o.cond), body=clone_body(o.body), num_state=o.num_state)

    return ctx.closed_body([x.type for x in eqn.inputs], fn), list(range(len(eqn.inputs)))


def _untape_recomputing(ctx, eqn):
    """while_untape as a backward loop that recomputes each iteration's state from the initial
    one instead of reading the tape: (count, *carry, *the while's inputs) -> carry."""
    o = _origin(ctx, eqn)
    nc, ns, n_in = eqn.params["num_carry"], o.num_state, len(eqn.inputs)
    first_origin = n_in - len(o.needs)
    origin_types = [x.type for x in eqn.inputs[first_origin:]]
    plan = _Plan(origin_types, o.needs, ns)
    fwd, bwd, kinds = ctx.vjp_split(o.body, list(plan.needs), accumulate=plan.acc_idx)
    types = [index_type()] + plan.carry_types() + origin_types

    def back_step(b, ps):  # (k, carry after iteration k, *inputs) -> (k - 1, carry before it)
        k = ops.sub(b, ps[0], ops.const(b, 1, DType.I64))
        carry, init, consts = ps[1 : 1 + nc], ps[1 + nc : 1 + nc + ns], ps[1 + nc + ns :]
        s = _run(ctx, b, o, init, consts, k)
        extra = inline(b, fwd, s + consts)[ns:]
        return [k] + _reverse_step(ctx, b, plan, bwd, kinds, s + consts, extra, carry)

    def fn(b, ps):
        outs = b.emit(
            while_p,
            ps,
            cond=ctx.closed_body(types, lambda bb, qs: [bb.emit1(gt_p, [qs[0], ops.const(bb, 0, DType.I64)])]),
            body=ctx.closed_body(types, back_step),
            num_state=1 + nc,
        )
        return outs[1:]

    return ctx.closed_body(types, fn), [1] + list(range(2, 2 + nc)) + list(range(first_origin, n_in))


_tape_jvp_full, _tape_vjp_fwd, _tape_vjp = rules_via(_tape_as_while)
_untape_jvp_full, _untape_vjp_fwd, _untape_vjp = rules_via(_untape_recomputing)
_WHILE = "a `while` loop"  # what their tapes belong to, for the message refusing a second derivative
while_tape_p = primitive(
    "while_tape",
    shape=while_tape_shape,
    kind=Kind.LOOP,
    lower=while_tape_lower,
    jvp_full=_tape_jvp_full,
    vjp_fwd=_tape_vjp_fwd,
    vjp=_tape_vjp,
    taped=_WHILE,
    loop=Loop(),
)
# an effect: it frees the tape, so it runs even when the cotangents it gives are not used
while_untape_p = primitive(
    "while_untape",
    shape=while_untape_shape,
    kind=Kind.LOOP,
    lower=while_untape_lower,
    jvp_full=_untape_jvp_full,
    vjp_fwd=_untape_vjp_fwd,
    vjp=_untape_vjp,
    effect=True,
    taped=_WHILE,
    # inputs (tape, count, *carry, ...), body (*record, *carry, *consts)
    loop=Loop(carries=lambda p: (2, p["num_res"], p["num_carry"])),
)
