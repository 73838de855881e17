"""Derivative rules for the ops that reverse mode makes (the tapes of while and recursion): such
an op is differentiated as an equivalent body that uses no tape, so that derivatives of
derivatives compose to any order. See Note [Differentiating a tape]."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.core import Body, is_float
from ..ir.walk import inline
from ..prims import ops
from .jvp import jvp_body
from .vjp import re_emit, residual_values, vjp_split

# The rules of a primitive whose first outputs are what the body `equivalent(ctx, eqn) ->
# (body, picks)` computes, body param i being the eqn's input picks[i] (prims/core.py,
# rules_via, declares them). The op itself still runs for its values (it also frees its tape);
# the derivative comes from the equivalent body.


def jvp_full(ctx, equivalent, eqn, ins, ts):
    body, picks = equivalent(ctx, eqn)
    primal = re_emit(ctx.b, eqn, ins)
    xs, txs = [ins[i] for i in picks], [ts[i] for i in picks]
    jb = jvp_body(ctx, body, [t is not None for t in txs])
    vals = inline(ctx.b, jb, xs + [t for t in txs if t is not None])
    touts = iter(vals[len(body.outs) :])
    tangents = [next(touts) if is_float(o) else None for o in body.outs]
    return primal, tangents + [None] * (len(primal) - len(tangents))


@dataclass
class ViaResiduals:
    """What the backward of an op differentiated as its equivalent body reads."""

    body: Body  # the equivalent body
    picks: list[int]  # the op's input that is each of its params
    xs: list  # those inputs
    needs: list[bool]  # whether each wants a cotangent
    n_in: int  # the op's number of inputs


def vjp_fwd(ctx, equivalent, eqn, ins, act):
    # the equivalent body runs in the backward pass, forward and reverse together: run in
    # the forward pass, the tapes it makes would leak whenever no cotangent comes back
    body, picks = equivalent(ctx, eqn)
    aux = ViaResiduals(body, picks, [ins[i] for i in picks], [act[i] for i in picks], len(ins))
    return re_emit(ctx.b, eqn, ins), aux


def vjp(ctx, params, aux: ViaResiduals, outs, cts):
    b = ctx.b
    if all(c is None for c in cts):
        return [None] * aux.n_in  # (the op frees its own tape)
    fwd, bwd, kinds = vjp_split(ctx, aux.body, aux.needs)
    extra = inline(b, fwd, aux.xs)[len(aux.body.outs) :]
    n_out = len(aux.body.outs)
    seeds = [ct if ct is not None else ops.zeros(b, o.type) for ct, o in zip(cts[:n_out], outs) if is_float(o)]
    got = iter(inline(b, bwd, seeds + residual_values(kinds, aux.xs, extra)))
    result = [None] * aux.n_in
    for i, x, need in zip(aux.picks, aux.xs, aux.needs):
        if need and is_float(x):
            result[i] = next(got)
    return result


# Note [Differentiating a tape]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# Reverse mode through `while` and recursion stores residuals in run-time tapes behind integer
# handles (prims/tape.py): no derivative can flow through a handle. So the ops around a tape are
# not differentiated as they are, but as equivalent tape-free code (as Zygote and Enzyme
# differentiate the adjoint of a loop rather than its tape):
#   while_tape (a while's forward, taping)      as the original while;
#   while_untape (its backward, reading the tape) as a loop that, for k = n-1 down to 0,
#       recomputes the state of iteration k from the initial state (n(n+1)/2 body runs in all)
#       and applies the body's reverse to it;
#   call f.fwd (a recursive function's forward) as call f;
#   call f.bwd (its reverse)                     as call f.rev, a tape-free reverse of f that
#       recomputes each recursive call's forward before undoing it (depth^2/2 calls in all).
# For this the reverse op also takes the inputs of the forward op (its "origin", see
# ad/rules.py, Mode) when it is built where it may be differentiated again. The equivalent
# code is ordinary IR, differentiated by the ordinary rules: its own loops and calls are taped
# again, and those tapes are differentiated the same way, so every order works, at a cost
# that grows by one power of the trip count (or depth) per order taken in reverse. The tape op
# itself still runs, for its values, and frees its tape (while_untape is an effect, so it
# runs even when its values are unused); in reverse mode the equivalent code runs forward
# and backward in the backward pass, so that no tape it makes is left unfreed when no
# cotangent comes back.
