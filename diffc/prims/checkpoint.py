"""checkpoint and custom_vjp: bodies with their own derivative behaviour (recomputation, and the
user's fwd/bwd)."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.core import is_float
from ..ir.walk import inline
from .core import primitive

# --- checkpoint and custom_vjp: bodies with their own derivative behaviour --------------------------


def _inline_lower(body_key):
    def lower(em, eqn, ins):
        return em.lower_body(eqn.params[body_key], ins[: len(eqn.params[body_key].params)])

    return lower


def _custom_vjp_lower(em, eqn, ins):
    n, nc = eqn.params["counts"][:2]
    return em.lower_body(eqn.params["fun"], ins[: n + nc])


# checkpoint: the forward keeps no residuals; the backward runs the body's forward again.


@dataclass
class _Inputs:
    """What the backward of checkpoint reads: its inputs, and which are active."""

    ins: list
    act: list[bool]


def _checkpoint_vjp_fwd(ctx, eqn, ins, act):
    outs = ctx.b.emit(checkpoint_p, ins, eqn.span, body=eqn.params["body"])
    return outs, _Inputs(ins, act)


def _checkpoint_vjp(ctx, params, aux, outs, cts):
    ins, act = aux.ins, aux.act
    body = params["body"]
    fwd, bwd, kinds = ctx.vjp_split(body, act)
    vals = inline(ctx.b, fwd, ins)
    extra = vals[len(body.outs) :]
    seeds = [ctx.seed_or_zeros(c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    ct_in = iter(inline(ctx.b, bwd, seeds + ctx.residual_values(kinds, ins, extra)))
    return [next(ct_in) if a and is_float(x) else None for x, a in zip(ins, act)]


def _body_jvp_full(key):
    def jvp_full(ctx, eqn, ins, ts):
        jb = ctx.jvp_body(eqn.params[key], [t is not None for t in ts])
        vals = inline(ctx.b, jb, ins + [t for t in ts if t is not None])
        return ctx.tangents_of(vals, len(eqn.outs), eqn.outs)

    return jvp_full


checkpoint_p = primitive(
    "checkpoint",
    shape=lambda ts, body: list(body.out_types),
    lower=_inline_lower("body"),
    vjp_fwd=_checkpoint_vjp_fwd,
    vjp=_checkpoint_vjp,
    jvp_full=_body_jvp_full("body"),
)


# custom_vjp: the user's fwd and bwd replace the derivative of fun.


def _custom_vjp_fwd(ctx, eqn, ins, act):
    n, nc, nf, nb = eqn.params["counts"]
    fwd = eqn.params["fwd"]
    vals = inline(ctx.b, fwd, ins[:n] + ins[n + nc : n + nc + nf])
    n_out = len(eqn.outs)
    return vals[:n_out], _UserResiduals(ins, vals[n_out:])


@dataclass
class _UserResiduals:
    """What the backward of custom_vjp reads: its inputs, and the residuals the user's fwd
    returned (bwd's first arguments)."""

    ins: list
    residuals: list


def _custom_vjp_vjp(ctx, params, aux, outs, cts):
    ins, residuals = aux.ins, aux.residuals
    n, nc, nf, nb = params["counts"]
    seeds = [ctx.seed_or_zeros(c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    bcap = ins[n + nc + nf :]
    ct_in = iter(inline(ctx.b, params["bwd"], list(residuals) + seeds + bcap))
    return [next(ct_in) if is_float(x) else None for x in ins[:n]] + [None] * (len(ins) - n)


def _custom_vjp_jvp_full(ctx, eqn, ins, ts):
    n, nc = eqn.params["counts"][:2]
    fun = eqn.params["fun"]
    jb = ctx.jvp_body(fun, [t is not None for t in ts[: n + nc]])
    vals = inline(ctx.b, jb, ins[: n + nc] + [t for t in ts[: n + nc] if t is not None])
    return ctx.tangents_of(vals, len(eqn.outs), eqn.outs)


custom_vjp_p = primitive(
    "custom_vjp",
    shape=lambda ts, fun, fwd, bwd, counts: list(fun.out_types),
    lower=_custom_vjp_lower,
    vjp_fwd=_custom_vjp_fwd,
    vjp=_custom_vjp_vjp,
    jvp_full=_custom_vjp_jvp_full,
)
