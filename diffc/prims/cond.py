"""The structured op cond (if): two closed bodies on the same operands; its derivative runs only
the taken branch's backward code."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ShapeError, TypeError_
from ..ir.core import is_float
from ..ir.walk import inline
from ..lower.emit import Arr, reg_type
from ..typesys import DType, TensorType
from . import ops
from .core import primitive

# --- cond ---------------------------------------------------------------------------------------


def _cond_shape(in_types, branches):
    then, else_ = branches
    if in_types[0] != TensorType(DType.BOOL, ()):
        raise TypeError_(f"the condition of if must be a bool, got {in_types[0]}")
    if then.out_types != else_.out_types:
        raise ShapeError(
            f"the branches of if have different types: {tuple(then.out_types)} and {tuple(else_.out_types)}"
        )
    return list(then.out_types)


def _cond_lower(em, eqn, ins):
    pred, ops = ins[0], ins[1:]
    homes = []
    for o in eqn.outs:
        homes.append(em.alloca(reg_type(o.type.dtype)) if o.type.rank == 0 else em.alloc(o.type))
    blocks = [em.block("if.then"), em.block("if.else")]
    done = em.block("if.end")
    em.b.cbranch(pred, *blocks)
    for blk, body in zip(blocks, eqn.params["branches"]):
        em.b.position_at_end(blk)
        for h, v in zip(homes, em.lower_body(body, ops)):
            if isinstance(h, Arr):
                em.copy_into(h, v)
            else:
                em.b.store(v, h)
        em.b.branch(done)
    em.b.position_at_end(done)
    return [h if isinstance(h, Arr) else em.b.load(h) for h in homes]


# cond: each branch's forward also returns its residuals (zeros for the other branch's); the
# backward is a cond on the same predicate running the taken branch's backward only.


@dataclass
class _CondResiduals:
    """What an if's augmented forward leaves for its backward."""

    ins: list  # (predicate, *operands)
    act: list[bool]  # which inputs are active
    splits: list  # per branch, vjp_split's (fwd, bwd, kinds)
    extras: list  # per branch, the outputs that hold its residuals (zeros when not taken)


def _cond_vjp_fwd(ctx, eqn, ins, act):
    branches = eqn.params["branches"]
    splits = [ctx.vjp_split(br, list(act[1:])) for br in branches]
    n_out = len(eqn.outs)
    extra_types = [[o.type for o in fwd.outs[n_out:]] for fwd, _, _ in splits]

    def branch(k):
        fwd = splits[k][0]

        def build(bb, params):
            vals = inline(bb, fwd, params)
            mine = vals[n_out:]
            parts = []
            for j, ts in enumerate(extra_types):
                parts += mine if j == k else [ops.zeros(bb, t) for t in ts]
            return vals[:n_out] + parts

        return ctx.closed_body([x.type for x in ins[1:]], build)

    outs = ctx.b.emit(cond_p, ins, eqn.span, branches=(branch(0), branch(1)))
    extras, k0 = [], n_out
    for ts in extra_types:
        extras.append(outs[k0 : k0 + len(ts)])
        k0 += len(ts)
    return outs[:n_out], _CondResiduals(ins, act, splits, extras)


def _cond_vjp(ctx, params, aux, outs, cts):
    ins, act, splits, extras = aux.ins, aux.act, aux.splits, aux.extras
    operands = ins[1:]
    seeds = [ctx.seed_or_zeros(c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    flat_extras = [x for e in extras for x in e]
    want = [k for k, x in enumerate(operands) if act[k + 1] and is_float(x)]

    def branch(k):
        _, bwd, kinds = splits[k]

        def build(bb, params):
            s = params[: len(seeds)]
            ex = params[len(seeds) : len(seeds) + len(flat_extras)]
            ops_ = params[len(seeds) + len(flat_extras) :]
            start = sum(len(e) for e in extras[:k])
            mine = ex[start : start + len(extras[k])]
            return inline(bb, bwd, s + ctx.residual_values(kinds, ops_, mine))

        types = [s.type for s in seeds] + [x.type for x in flat_extras] + [x.type for x in operands]
        return ctx.closed_body(types, build)

    ct = ctx.b.emit(cond_p, [ins[0]] + seeds + flat_extras + list(operands), branches=(branch(0), branch(1)))
    result = [None] * len(ins)
    for k, v in zip(want, ct):
        result[k + 1] = v
    return result


def _cond_jvp_full(ctx, eqn, ins, ts):
    has = [t is not None for t in ts[1:]]
    jbs = [ctx.jvp_body(br, has) for br in eqn.params["branches"]]
    t_ops = [t for t in ts[1:] if t is not None]
    outs = ctx.b.emit(cond_p, list(ins) + t_ops, eqn.span, branches=tuple(jbs))
    return ctx.tangents_of(outs, len(eqn.outs), eqn.outs)


cond_p = primitive(
    "cond",
    shape=_cond_shape,
    lower=_cond_lower,
    vjp_fwd=_cond_vjp_fwd,
    vjp=_cond_vjp,
    jvp_full=_cond_jvp_full,
)
