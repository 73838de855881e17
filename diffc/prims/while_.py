"""The structured op while: a data-dependent trip count; its derivative tapes each iteration's
residuals on a growing tape (prims/tape.py) in its one forward run."""

from __future__ import annotations

from ..ad.jvp import jvp_body
from ..ad.vjp import is_float, residual_values, vjp_split
from ..errors import ShapeError, TypeError_
from ..ir.build import Builder
from ..ir.core import Body
from ..ir.walk import inline
from ..typesys import DType, TensorType
from . import ops
from .core import primitive
from .loops import Slots, closed_body, seed_or_zeros, tape_note

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
    head, loop_body, done = em.block("while.head"), em.block("while.body"), em.block("while.end")
    em.b.branch(head)
    em.b.position_at_end(head)
    (c,) = em.lower_body(p["cond"], slots.read() + consts)
    em.b.cbranch(c, loop_body, done)
    em.b.position_at_end(loop_body)
    em.poll_interrupt(eqn.span)
    slots.write(em.lower_body(p["body"], slots.read() + consts))
    em.b.branch(head)
    em.b.position_at_end(done)
    return slots.read()


while_p = primitive("while", shape=_while_shape, lower=_while_lower)


# while: the forward appends each iteration's residuals to a growing tape (prims/tape.py);
# the backward replays the tape last record first.


def _while_vjp_fwd(b, eqn, ins, act):
    from .tape import while_tape_p

    p = eqn.params
    body, ns = p["body"], p["num_state"]
    any_act = any(act)
    needs = [any_act and is_float(x) for x in ins[:ns]] + list(act[ns:])
    acc = [k for k in range(ns, len(ins)) if act[k] and is_float(ins[k])]
    fwd, bwd, kinds = vjp_split(body, needs, accumulate=acc)
    state_res = sorted({k for kind, k in kinds if kind == "param" and k < ns})
    n_extra = len(fwd.outs) - ns
    fwd = Body(fwd.params, fwd.eqns, fwd.outs + [fwd.params[k] for k in state_res])
    outs = b.emit(while_tape_p, ins, eqn.span, cond=_clone(p["cond"]), body=fwd, num_state=ns)
    b.eqns[-1].note = tape_note(fwd.out_types[ns:], None)
    state, tape, count = outs[:ns], outs[ns], outs[ns + 1]
    res_types = fwd.out_types[ns:]
    return state, (ins, needs, bwd, kinds, state_res, n_extra, res_types, tape, count)


def _clone(body):
    from ..ir.walk import clone_body

    return clone_body(body)


def _while_vjp(b, params, aux, outs, cts, current):
    from .tape import while_untape_p

    ins, needs, bwd, kinds, state_res, n_extra, res_types, tape, count = aux
    ns = params["num_state"]
    consts = ins[ns:]
    float_state = [k for k in range(ns) if is_float(ins[k])]
    ct0 = [seed_or_zeros(b, cts[k], outs[k].type) for k in float_state]
    want = [k for k in range(len(ins)) if needs[k] and is_float(ins[k])]
    acc_idx = [k for k in want if k >= ns]

    sb = Builder(b)
    res = [sb.param(t) for t in res_types]
    ct_s = [sb.param(ins[k].type) for k in float_state]
    accs = [sb.param(ins[k].type) for k in acc_idx]
    extra, state_vals = res[:n_extra], dict(zip(state_res, res[n_extra:]))
    param_vals = [state_vals.get(k) for k in range(ns)] + list(consts)
    ct = dict(zip(want, inline(sb, bwd, ct_s + accs + residual_values(kinds, param_vals, extra))))
    new_ct = [ct[k] if k in ct else ops.zeros(sb, ins[k].type) for k in float_state]
    body, captured = sb.finish(new_ct + [ct[k] for k in acc_idx])
    carry0 = ct0 + [seed_or_zeros(b, current[k], ins[k].type) for k in acc_idx]
    out = b.emit(
        while_untape_p, [tape, count] + carry0 + captured, body=body, num_res=len(res_types), num_carry=len(carry0)
    )
    result = [None] * len(ins)
    for k, v in zip(float_state, out):
        if k in want:
            result[k] = v
    for k, v in zip(acc_idx, out[len(float_state) :]):
        result[k] = v
    return result, set(acc_idx)


def _while_jvp_full(b, eqn, ins, ts):
    p = eqn.params
    ns = p["num_state"]
    any_t = any(t is not None for t in ts)
    t_in = [
        (ts[k] if ts[k] is not None else ops.zeros(b, ins[k].type)) if any_t and is_float(ins[k]) else None
        for k in range(ns)
    ] + list(ts[ns:])
    ts_state = [t for t in t_in[:ns] if t is not None]
    ts_const = [t for t in t_in[ns:] if t is not None]
    nconst = len(ins) - ns
    jb = jvp_body(p["body"], [t is not None for t in t_in])

    def body_fn(bb, params):
        s, ts_, cs, tcs = (
            params[:ns],
            params[ns : ns + len(ts_state)],
            params[ns + len(ts_state) : ns + len(ts_state) + nconst],
            params[ns + len(ts_state) + nconst :],
        )
        vals = inline(bb, jb, s + cs + ts_ + tcs)
        return vals[:ns] + vals[ns:]

    def cond_fn(bb, params):
        return inline(bb, p["cond"], params[:ns] + params[ns + len(ts_state) : ns + len(ts_state) + nconst])

    types = (
        [x.type for x in ins[:ns]]
        + [t.type for t in ts_state]
        + [x.type for x in ins[ns:]]
        + [t.type for t in ts_const]
    )
    # the jvp body returns tangents for every float state, in order
    outs = b.emit(
        while_p,
        list(ins[:ns]) + ts_state + list(ins[ns:]) + ts_const,
        eqn.span,
        cond=closed_body(types, cond_fn),
        body=closed_body(types, body_fn),
        num_state=ns + len(ts_state),
    )
    t_out = iter(outs[ns:])
    return outs[:ns], [next(t_out) if t_in[k] is not None else None for k in range(ns)]


while_p.vjp_fwd, while_p.vjp, while_p.jvp_full = _while_vjp_fwd, _while_vjp, _while_jvp_full
while_p.threads_cotangents = True
