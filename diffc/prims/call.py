"""The op call: a call of a recursive function of the program; its derivatives are a pair of
recursive functions made on demand (forward with per-call residual records, and reverse)."""

from __future__ import annotations

from ..ad.jvp import jvp_body
from ..ad.via import rules_via
from ..ad.vjp import is_float, residual_values, unsupported, vjp_split
from ..errors import TypeError_
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
    ins = ins[: len(ins) - eqn.params.get("origin", 0)]  # the origin is for derivatives only
    args = [x if not isinstance(x, Arr) else em.base_ptr(em.materialise(x)) for x in ins]
    em.b.call(fn, [em.ctx] + out_ptrs + args)
    em.check_failed()
    return [h if isinstance(h, Arr) else em.load_scalar_ptr(h, o.type.dtype) for h, o in zip(homes, eqn.outs)]


def _call_shape(in_types, func, out_types, derived=None, origin=0):
    return list(out_types)


call_p = primitive("call", shape=_call_shape, lower=_call_lower)


# call (recursion): each recursive Func f gets an augmented forward f.fwd returning its
# outputs and a handle to a heap record of its residuals (which hold the handles of its own
# calls: the tape of a recursion is a tree of per-call records), and a reverse f.bwd that
# takes the handle and the output cotangents, and frees the record. An argument that every
# recursive call passes on unchanged (a weight, the data) is not taped: f.bwd takes it as an
# argument, from its caller (See Note [Unchanged arguments]). A call of f.fwd or f.bwd made
# where it may be differentiated again says so (`derived`), and a call of f.bwd also takes the
# arguments of f (its `origin`, not passed on): See Note [Differentiating a tape] in ad/via.py.


def unchanged_args(f) -> list[int]:
    """The parameters of f that each call of f in its body (also inside `if` branches) passes
    at the same place unchanged."""
    body = f.body
    keep = set(range(len(body.params)))

    def walk(b, alias):  # alias: value id -> the index of the param of f it is
        for e in b.eqns:
            if e.prim is call_p and e.params["func"] == f.name:
                keep.difference_update([k for k in keep if alias.get(e.inputs[k].id) != k])
            elif e.prim.name == "cond":
                for branch in e.params["branches"]:
                    walk(branch, {p.id: alias[x.id] for p, x in zip(branch.params, e.inputs[1:]) if x.id in alias})
            else:
                for sub in e.bodies():  # a call of f inside a loop: its arguments are not traced
                    if _calls(sub, f.name):
                        keep.clear()

    walk(body, {p.id: k for k, p in enumerate(body.params)})
    return sorted(keep)


def _calls(body, fname) -> bool:
    from ..ir.walk import all_eqns

    return any(e.prim is call_p and e.params["func"] == fname for e in all_eqns(body))


def _ad_funcs(kind: str, fname: str, needs: tuple | None = None):
    """The name of f's derived function `kind` (jvp, rev; fwd and bwd for the arguments that
    need cotangents, `needs`), made on first use."""
    from ..ad import context
    from ..ir.core import Func

    prog = context.program()
    f = prog.funcs[fname]
    every = tuple(is_float(p) for p in f.body.params)
    needs = every if needs is None else needs
    mark = "" if needs == every else "." + "".join("1" if n else "0" for n in needs)
    name = f"{fname}.{kind}{mark}"
    if name in prog.funcs:
        return name
    if kind == "jvp":
        prog.funcs[name] = Func(name, None, f.span, recursive=True)
        prog.funcs[name].body = jvp_body(f.body, list(every))
    elif kind == "rev":
        prog.funcs[name] = Func(name, None, f.span, recursive=True)
        with context.building(context.Mode.TAPE_FREE):
            prog.funcs[name].body = _rev_body(f)
    else:
        _fwd_bwd(prog, f, needs, mark)
    return name


def _rev_body(f):
    """f.rev(*args, *seeds) -> cotangents of the float args, without a tape: each recursive
    call's reverse is a call of .rev, which recomputes that call's forward."""
    fwd, bwd, kinds = vjp_split(f.body, [is_float(p) for p in f.body.params])
    n_out = len(f.body.outs)
    seed_types = [t for t in f.body.out_types if t.dtype.is_float]

    def rev_fn(bb, params):
        args, seeds = params[: len(f.body.params)], params[len(f.body.params) :]
        extra = inline(bb, fwd, args)[n_out:]
        return inline(bb, bwd, seeds + residual_values(kinds, args, extra))

    return closed_body(f.body.in_types + seed_types, rev_fn)


def _fwd_bwd(prog, f, needs, mark):
    from ..ad import context
    from ..ir.core import Func

    fwd_f = prog.funcs[f"{f.name}.fwd{mark}"] = Func(f"{f.name}.fwd{mark}", None, f.span, recursive=True)
    bwd_f = prog.funcs[f"{f.name}.bwd{mark}"] = Func(f"{f.name}.bwd{mark}", None, f.span, recursive=True)
    from .tape import tape_pack_p, tape_unpack_p

    with context.building(context.Mode.TAPE_INSIDE):
        fwd, bwd, kinds = vjp_split(f.body, list(needs))
    n_out = len(f.body.outs)
    unchanged = unchanged_args(f)
    taped = sorted({k for kind_, k in kinds if kind_ == "param"} - set(unchanged))

    def fwd_fn(bb, params):
        vals = inline(bb, fwd, params)
        saved = vals[n_out:] + [params[k] for k in taped]
        handle = bb.emit1(tape_pack_p, saved)
        return vals[:n_out] + [handle]

    fwd_f.body = closed_body(f.body.in_types, fwd_fn)
    n_extra = len(fwd.outs) - n_out
    res_types = fwd.out_types[n_out:] + [f.body.params[k].type for k in taped]
    seed_types = [t for t in f.body.out_types if t.dtype.is_float]
    given_types = [f.body.params[k].type for k in unchanged]

    def bwd_fn(bb, params):
        handle, seeds, given = params[0], params[1 : 1 + len(seed_types)], params[1 + len(seed_types) :]
        saved = bb.emit(tape_unpack_p, [handle], types=tuple(res_types))
        pvals = dict(zip(taped, saved[n_extra:])) | dict(zip(unchanged, given))
        args = [pvals.get(k) for k in range(len(f.body.params))]
        return inline(bb, bwd, list(seeds) + residual_values(kinds, args, saved[:n_extra]))

    bwd_f.body = closed_body([TensorType(DType.I64, ())] + seed_types + given_types, bwd_fn)


def _call_vjp_fwd(b, eqn, ins, act):
    from ..ad import context

    fname = eqn.params["func"]
    if context.mode() is context.Mode.TAPE_FREE:
        return b.emit(call_p, ins, eqn.span, **eqn.params), (ins, None, fname, None)
    # only the arguments that are active get cotangents (data passed along costs nothing)
    needs = tuple(a and is_float(x) for a, x in zip(act, ins))
    outs = b.emit(
        call_p,
        ins,
        eqn.span,
        func=_ad_funcs("fwd", fname, needs),
        out_types=tuple(eqn.params["out_types"]) + (TensorType(DType.I64, ()),),
        derived=("fwd", fname, needs),
    )
    return outs[:-1], (ins, outs[-1], fname, needs)


def _call_vjp(b, params, aux, outs, cts):
    ins, handle, fname, needs = aux
    from ..ad import context

    f = context.program().funcs[fname]
    if handle is None and all(c is None for c in cts):
        return [None] * len(ins)  # no tape to free (call_p.tapes), and nothing to give
    seeds = [seed_or_zeros(b, c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    if handle is None:  # tape-free (building a .rev)
        needs = tuple(is_float(x) for x in ins)
        ct = b.emit(call_p, list(ins) + seeds, func=_ad_funcs("rev", fname), out_types=_ct_types(f, needs))
    else:
        given = [ins[k] for k in unchanged_args(f)]
        # the arguments ride along where this code may be differentiated again (ad/via.py)
        origin = list(ins) if context.mode() is not context.Mode.TAPE_INSIDE else []
        ct = b.emit(
            call_p,
            [handle] + seeds + given + origin,
            func=_ad_funcs("bwd", fname, needs),
            out_types=_ct_types(f, needs),
            derived=("bwd", fname, needs),
            origin=len(origin),
        )
    ct = iter(ct)
    return [next(ct) if need else None for need in needs]


def _ct_types(f, needs):
    return tuple(p.type for p, need in zip(f.body.params, needs) if need)


def _call_jvp_full(b, eqn, ins, ts):
    name = _ad_funcs("jvp", eqn.params["func"])
    full_ts = [(t if t is not None else ops.zeros(b, x.type)) for x, t in zip(ins, ts) if is_float(x)]
    out_types = tuple(eqn.params["out_types"])
    t_types = tuple(t for t in out_types if t.dtype.is_float)
    outs = b.emit(call_p, list(ins) + full_ts, eqn.span, func=name, out_types=out_types + t_types)
    n = len(out_types)
    t_out = iter(outs[n:])
    return outs[:n], [next(t_out) if t.dtype.is_float else None for t in out_types]


# --- the derivatives of calls of .fwd and .bwd: See Note [Differentiating a tape] in ad/via.py


def _derived_equivalent(eqn):
    """A call of f.fwd as a call of f; a call of f.bwd as a call of f.rev (the cotangents it
    gives)."""
    from ..ad import context

    kind, fname, needs = eqn.params["derived"]
    if kind == "bwd" and not eqn.params["origin"]:  # inside a tape's bodies: never differentiated
        raise TypeError_(unsupported(call_p))
    f = context.program().funcs[fname]
    n_args = len(f.body.params)
    if kind == "fwd":
        picks = list(range(n_args))
        types = [eqn.inputs[i].type for i in picks]
        return closed_body(
            types, lambda bb, ps: bb.emit(call_p, ps, func=fname, out_types=tuple(f.body.out_types))
        ), picks
    n_in, n_seeds = len(eqn.inputs), sum(1 for t in f.body.out_types if t.dtype.is_float)
    picks = list(range(n_in - n_args, n_in)) + list(range(1, 1 + n_seeds))
    every = tuple(is_float(p) for p in f.body.params)

    def rev(bb, ps):
        cts = iter(bb.emit(call_p, ps, func=_ad_funcs("rev", fname), out_types=_ct_types(f, every)))
        return [ct for ct, need in zip(cts, [n for n, e in zip(needs, every) if e]) if need]

    return closed_body([eqn.inputs[i].type for i in picks], rev), picks


_derived_jvp, _derived_vjp_fwd, _derived_vjp = rules_via(_derived_equivalent)


def _call_rule(plain, derived):
    """The rule `plain` for calls of a program's function, `derived` for calls of .fwd/.bwd."""

    def rule(b, eqn_or_params, *rest):
        params = eqn_or_params if isinstance(eqn_or_params, dict) else eqn_or_params.params
        if params.get("derived") is not None:
            return derived(b, eqn_or_params, *rest)
        return plain(b, eqn_or_params, *rest)

    return rule


call_p.vjp_fwd = _call_rule(_call_vjp_fwd, _derived_vjp_fwd)
call_p.vjp = _call_rule(_call_vjp, _derived_vjp)
call_p.jvp_full = _call_rule(_call_jvp_full, _derived_jvp)
call_p.tapes = True

# Note [Unchanged arguments]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# A recursion over data passes the data on unchanged: fn f(xs, w, i) = ... f(xs, w, i + 1).
# Taping such an argument in every call's record (as any other residual) would keep depth
# copies of it: 2,000 calls over a [2000, 64] array, 2 GB. Every activation of f.bwd has it
# anyway, from its caller, down to the first caller, which has the value itself: so f.bwd
# takes it as an argument and the record holds only what changes from call to call.
