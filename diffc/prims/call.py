"""The op call: a call of a recursive function of the program; its derivatives are a pair of
recursive functions made on demand (forward with per-call residual records, and reverse)."""

from __future__ import annotations

from ..ad.jvp import jvp_body
from ..ad.vjp import is_float, residual_values, vjp_split
from ..ir.walk import inline
from ..lower.emit import I8, Arr, reg_type
from ..typesys import DType, TensorType
from . import ops
from .core import primitive
from .loops import closed_body, seed_or_zeros

# --- call ---------------------------------------------------------------------------------------


def _call_lower(em, eqn, ins):
    fn = em.m.funcs[eqn.params["func"]]
    homes, out_ptrs = [], []
    for o in eqn.outs:
        if o.type.rank == 0:
            h = em.alloca(reg_type(o.type.dtype) if o.type.dtype is not DType.BOOL else I8)
            homes.append(h)
            out_ptrs.append(h)
        else:
            a = em.alloc(o.type)
            homes.append(a)
            out_ptrs.append(a.ptr)
    args = [x if not isinstance(x, Arr) else em.base_ptr(em.materialise(x)) for x in ins]
    em.b.call(fn, [em.ctx] + out_ptrs + args)
    em.check_failed()
    return [h if isinstance(h, Arr) else em.load_scalar_ptr(h, o.type.dtype) for h, o in zip(homes, eqn.outs)]


call_p = primitive("call", shape=lambda ts, func, out_types: list(out_types), lower=_call_lower)


# call (recursion): each recursive Func f gets an augmented forward f.fwd returning its
# outputs and a handle to a heap record of its residuals (which hold the handles of its own
# calls: the tape of a recursion is a tree of per-call records), and a reverse f.bwd that
# takes the handle and the output cotangents, and frees the record.


def _ad_funcs(kind: str, fname: str):
    from ..ad import context

    prog = context.program()
    name = f"{fname}.{kind}"
    if name in prog.funcs:
        return name
    from ..ir.core import Func

    f = prog.funcs[fname]
    placeholder = Func(name, None, f.span, recursive=True)
    if kind == "jvp":
        prog.funcs[name] = placeholder
        placeholder.body = jvp_body(f.body, [is_float(p) for p in f.body.params])
        return name
    bwd_name = f"{fname}.bwd"
    prog.funcs[name] = placeholder
    bwd_f = Func(bwd_name, None, f.span, recursive=True)
    prog.funcs[bwd_name] = bwd_f
    from .tape import tape_pack_p, tape_unpack_p

    fwd, bwd, kinds = vjp_split(f.body, [is_float(p) for p in f.body.params])
    n_out = len(f.body.outs)
    res_params = sorted({k for kind_, k in kinds if kind_ == "param"})

    def fwd_fn(bb, params):
        vals = inline(bb, fwd, params)
        saved = vals[n_out:] + [params[k] for k in res_params]
        handle = bb.emit1(tape_pack_p, saved)
        return vals[:n_out] + [handle]

    placeholder.body = closed_body(f.body.in_types, fwd_fn)
    res_types = fwd.out_types[n_out:] + [f.body.params[k].type for k in res_params]
    seed_types = [t for t in f.body.out_types if t.dtype.is_float]

    def bwd_fn(bb, params):
        handle, seeds = params[0], params[1:]
        saved = bb.emit(tape_unpack_p, [handle], types=tuple(res_types))
        extra, pvals = saved[: len(fwd.outs) - n_out], dict(zip(res_params, saved[len(fwd.outs) - n_out :]))
        return inline(
            bb, bwd, list(seeds) + residual_values(kinds, [pvals.get(k) for k in range(len(f.body.params))], extra)
        )

    bwd_f.body = closed_body([TensorType(DType.I64, ())] + seed_types, bwd_fn)
    return name


def _call_vjp_fwd(b, eqn, ins, act):
    fname = eqn.params["func"]
    name = _ad_funcs("fwd", fname)
    outs = b.emit(
        call_p, ins, eqn.span, func=name, out_types=tuple(eqn.params["out_types"]) + (TensorType(DType.I64, ()),)
    )
    return outs[:-1], (ins, outs[-1], fname)


def _call_vjp(b, params, aux, outs, cts):
    ins, handle, fname = aux
    from ..ad import context

    f = context.program().funcs[fname]
    seeds = [seed_or_zeros(b, c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    ct_types = tuple(p.type for p in f.body.params if is_float(p))
    ct = iter(b.emit(call_p, [handle] + seeds, func=f"{fname}.bwd", out_types=ct_types))
    return [next(ct) if is_float(x) else None for x in ins]


def _call_jvp_full(b, eqn, ins, ts):
    name = _ad_funcs("jvp", eqn.params["func"])
    full_ts = [(t if t is not None else ops.zeros(b, x.type)) for x, t in zip(ins, ts) if is_float(x)]
    out_types = tuple(eqn.params["out_types"])
    t_types = tuple(t for t in out_types if t.dtype.is_float)
    outs = b.emit(call_p, list(ins) + full_ts, eqn.span, func=name, out_types=out_types + t_types)
    n = len(out_types)
    t_out = iter(outs[n:])
    return outs[:n], [next(t_out) if t.dtype.is_float else None for t in out_types]


call_p.vjp_fwd, call_p.vjp, call_p.jvp_full = _call_vjp_fwd, _call_vjp, _call_jvp_full
