"""The op call: a call of a recursive function of the program; its derivatives are a pair of
recursive functions made on demand (forward with per-call residual records, and reverse)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TypeError_
from ..ir.core import NO_SPAN, Body, Eqn, Func, Var, is_float
from ..ir.walk import all_eqns, inline, is_zeros, uses_and_producers
from ..lower.emit import I8, Arr, reg_type
from ..typesys import DType, TensorType
from . import ops
from .cond import cond_p
from .core import Kind, primitive, rules_via
from .elementwise import add_p
from .shape import index_scatter_p
from .tape import HANDLE, acc_add_at_p, acc_add_p, acc_new_p, acc_take_p, tape_pack_p, tape_unpack_p

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


def _call_shape(in_types, func, out_types, derived=None, origin=0, acc=0):
    return list(out_types)


# call (recursion): each recursive Func f gets an augmented forward f.fwd returning its
# outputs and a handle to a heap record of its residuals (which hold the handles of its own
# calls: the tape of a recursion is a tree of per-call records), and a reverse f.bwd that
# takes the handle and the output cotangents, and frees the record. An argument that every
# recursive call passes on unchanged (a weight, the data) is not taped: f.bwd takes it as an
# argument, from its caller (See Note [Unchanged arguments]). A call of f.fwd or f.bwd made
# where it may be differentiated again says so (`derived`), and a call of f.bwd also takes the
# arguments of f (its `origin`, not passed on): See Note [Differentiating a tape] in ad/via.py.
# The cotangent of an unchanged argument that needs one is a heap buffer that every call's
# reverse adds to (f.bwdacc, called by f.bwd): See Note [Recursion accumulators].


def unchanged_args(f) -> list[int]:
    """The parameters of f that each call of f in its body (also inside `if` branches) passes
    at the same place unchanged."""
    body = f.body
    keep = set(range(len(body.params)))

    def walk(b, alias):  # alias: value id -> the index of the param of f it is
        for e in b.eqns:
            if e.prim is call_p and e.params["func"] == f.name:
                keep.difference_update([k for k in keep if alias.get(e.inputs[k].id) != k])
            elif e.prim is cond_p:
                for branch in e.params["branches"]:
                    walk(branch, {p.id: alias[x.id] for p, x in zip(branch.params, e.inputs[1:]) if x.id in alias})
            else:
                for sub in e.bodies():  # a call of f inside a loop: its arguments are not traced
                    if _calls(sub, f.name):
                        keep.clear()

    walk(body, {p.id: k for k, p in enumerate(body.params)})
    return sorted(keep)


def accumulated_args(f, needs) -> list[int]:
    """The array arguments passed unchanged down the recursion that need a cotangent: all
    calls add to one buffer (See Note [Recursion accumulators])."""
    return [k for k in unchanged_args(f) if needs[k] and f.body.params[k].type.rank > 0]


def _with_handles(body, fname: str, n: int):
    """body with n more (handle) params, which each call of fname in it takes after its
    arguments (`acc`), through the `if`s around it."""
    hs = [Var(HANDLE) for _ in range(n)]
    eqns = []
    for e in body.eqns:
        if e.prim is call_p and e.params["func"] == fname:
            e = Eqn(e.prim, e.inputs + hs, e.params | {"acc": n}, e.outs, e.span)
        elif e.prim is cond_p and any(_calls(br, fname) for br in e.params["branches"]):
            branches = tuple(_with_handles(br, fname, n) for br in e.params["branches"])
            e = Eqn(e.prim, e.inputs + hs, e.params | {"branches": branches}, e.outs, e.span)
        eqns.append(e)
    return Body(body.params + hs, eqns, body.outs)


def _sink_out(body, j: int, h):
    """body without its output j, which is added into the buffer of handle h instead: sums
    are split, an index's cotangent adds one row in place, and an `if` adds in its branches,
    so that no array-sized cotangent is made per call."""
    uses, made_by = uses_and_producers(body)
    eqns, tail = list(body.eqns), []

    def add(v):
        e = made_by.get(v.id)
        if is_zeros(v, made_by):
            return
        if e is not None and uses.get(v.id) == 1:
            if e.prim is add_p and all(x.type == v.type for x in e.inputs):
                eqns.remove(e)
                for x in e.inputs:
                    add(x)
                return
            if e.prim is index_scatter_p:
                params = {"type": v.type, "safe": e.params["safe"]}
                tail.append(Eqn(acc_add_at_p, [h] + e.inputs, params, [], e.span))
                eqns.remove(e)  # (acc_add_at checks the index as index_scatter did)
                return
            if e.prim is cond_p:
                k = e.outs.index(v)
                branches = []
                for br in e.params["branches"]:
                    hp = Var(HANDLE)
                    branches.append(_sink_out(Body(br.params + [hp], br.eqns, br.outs), k, hp))
                outs = e.outs[:k] + e.outs[k + 1 :]
                eqns[eqns.index(e)] = Eqn(
                    e.prim, e.inputs + [h], e.params | {"branches": tuple(branches)}, outs, e.span
                )
                return
        tail.append(Eqn(acc_add_p, [h, v], {}, [], e.span if e is not None else NO_SPAN))

    add(body.outs[j])
    return Body(body.params, eqns + tail, body.outs[:j] + body.outs[j + 1 :])


def _calls(body, fname) -> bool:
    return any(e.prim is call_p and e.params["func"] == fname for e in all_eqns(body))


def _ad_funcs(ctx, kind: str, fname: str, needs: tuple | None = None):
    """The name of f's derived function `kind` (jvp, rev; fwd and bwd for the arguments that
    need cotangents, `needs`), made on first use in the program being built (ctx.program)."""
    prog = ctx.program
    f = prog.funcs[fname]
    every = tuple(is_float(p) for p in f.body.params)
    needs = every if needs is None else needs
    mark = "" if needs == every else "." + "".join("1" if n else "0" for n in needs)
    name = f"{fname}.{kind}{mark}"
    if name in prog.funcs:
        return name
    if kind == "jvp":
        prog.funcs[name] = Func(name, None, f.span, recursive=True)
        prog.funcs[name].body = ctx.jvp_body(f.body, list(every))
    elif kind == "rev":
        prog.funcs[name] = Func(name, None, f.span, recursive=True)
        prog.funcs[name].body = _rev_body(ctx.building(ctx.Mode.TAPE_FREE), f)
    else:
        _fwd_bwd(ctx, prog, f, needs, mark)
    return name


def _rev_body(ctx, f):
    """f.rev(*args, *seeds) -> cotangents of the float args, without a tape: each recursive
    call's reverse is a call of .rev, which recomputes that call's forward."""
    fwd, bwd, kinds = ctx.vjp_split(f.body, [is_float(p) for p in f.body.params])
    n_out = len(f.body.outs)
    seed_types = [t for t in f.body.out_types if t.dtype.is_float]

    def rev_fn(bb, params):
        args, seeds = params[: len(f.body.params)], params[len(f.body.params) :]
        extra = inline(bb, fwd, args)[n_out:]
        return inline(bb, bwd, seeds + ctx.residual_values(kinds, args, extra))

    return ctx.closed_body(f.body.in_types + seed_types, rev_fn)


def _fwd_bwd(ctx, prog, f, needs, mark):
    fwd_f = prog.funcs[f"{f.name}.fwd{mark}"] = Func(f"{f.name}.fwd{mark}", None, f.span, recursive=True)
    bwd_f = prog.funcs[f"{f.name}.bwd{mark}"] = Func(f"{f.name}.bwd{mark}", None, f.span, recursive=True)
    acc = accumulated_args(f, needs)
    n_args = len(f.body.params)
    inside = ctx.building(ctx.Mode.TAPE_INSIDE)
    fwd, bwd, kinds = inside.vjp_split(_with_handles(f.body, f.name, len(acc)), list(needs) + [False] * len(acc))
    n_out = len(f.body.outs)
    unchanged = unchanged_args(f)
    taped = sorted({k for kind_, k in kinds if kind_ == "param" and k < n_args} - set(unchanged))

    def fwd_fn(bb, params):
        vals = inline(bb, fwd, params + [ops.zeros(bb, HANDLE) for _ in acc])  # (handles: unread)
        saved = vals[n_out:] + [params[k] for k in taped]
        handle = bb.emit1(tape_pack_p, saved)
        return vals[:n_out] + [handle]

    fwd_f.body = ctx.closed_body(f.body.in_types, fwd_fn)
    n_extra = len(fwd.outs) - n_out
    res_types = fwd.out_types[n_out:] + [f.body.params[k].type for k in taped]
    seed_types = [t for t in f.body.out_types if t.dtype.is_float]
    given_types = [f.body.params[k].type for k in unchanged]
    n_given = 1 + len(seed_types) + len(given_types)

    def bwd_fn(bb, params):
        handle, seeds, given = params[0], params[1 : 1 + len(seed_types)], params[1 + len(seed_types) : n_given]
        saved = bb.emit(tape_unpack_p, [handle], types=tuple(res_types))
        pvals = dict(zip(taped, saved[n_extra:])) | dict(zip(unchanged, given))
        args = [pvals.get(k) for k in range(n_args)] + list(params[n_given:])
        return inline(bb, bwd, list(seeds) + ctx.residual_values(kinds, args, saved[:n_extra]))

    if not acc:
        bwd_f.body = ctx.closed_body([HANDLE] + seed_types + given_types, bwd_fn)
        return
    # the recursion adds the cotangents of `acc` into buffers; f.bwd makes and reads them
    inner = prog.funcs[f"{f.name}.bwdacc{mark}"] = Func(f"{f.name}.bwdacc{mark}", None, f.span, recursive=True)
    body = ctx.closed_body([HANDLE] + seed_types + given_types + [HANDLE] * len(acc), bwd_fn)
    wanted = [k for k in range(n_args) if needs[k]]
    for j, k in reversed(list(enumerate(acc))):
        body = _sink_out(body, wanted.index(k), body.params[n_given + j])
    inner.body = body

    def wrapper(bb, params):
        hs = [bb.emit1(acc_new_p, [], type=f.body.params[k].type) for k in acc]
        rest = _ct_types(f, [n and k not in acc for k, n in enumerate(needs)])
        cts = iter(bb.emit(call_p, params + hs, func=inner.name, out_types=rest))
        totals = dict(
            zip(acc, [bb.emit1(acc_take_p, [h], type=h_t) for h, h_t in zip(hs, [f.body.params[k].type for k in acc])])
        )
        return [totals[k] if k in totals else next(cts) for k in wanted]

    bwd_f.body = ctx.closed_body([HANDLE] + seed_types + given_types, wrapper)


@dataclass
class _CallResiduals:
    """What a call's augmented forward leaves for its backward."""

    ins: list  # the call's arguments
    handle: object  # the handle of its record of residuals; None: tape-free (building a .rev)
    fname: str  # the function called
    needs: tuple | None  # which arguments get cotangents (None: tape-free)
    hs: list  # the handles of the recursion's accumulators (a call inside f.bwdacc)


def _call_vjp_fwd(ctx, eqn, ins, act):
    b = ctx.b
    fname = eqn.params["func"]
    n_acc = eqn.params.get("acc", 0)  # the handles of a recursion's accumulators (in .bwdacc)
    ins, hs, act = ins[: len(ins) - n_acc], ins[len(ins) - n_acc :], act[: len(act) - n_acc]
    if ctx.mode is ctx.Mode.TAPE_FREE:
        return b.emit(call_p, ins, eqn.span, **eqn.params), _CallResiduals(ins, None, fname, None, [])
    # only the arguments that are active get cotangents (data passed along costs nothing)
    needs = tuple(a and is_float(x) for a, x in zip(act, ins))
    outs = b.emit(
        call_p,
        ins,
        eqn.span,
        func=_ad_funcs(ctx, "fwd", fname, needs),
        out_types=tuple(eqn.params["out_types"]) + (TensorType(DType.I64, ()),),
        derived=("fwd", fname, needs),
    )
    return outs[:-1], _CallResiduals(ins, outs[-1], fname, needs, hs)


def _call_vjp(ctx, params, aux, outs, cts):
    b = ctx.b
    ins, handle, fname, needs, hs = aux.ins, aux.handle, aux.fname, aux.needs, aux.hs
    f = ctx.program.funcs[fname]
    if handle is None and all(c is None for c in cts):
        return [None] * len(ins)  # no tape to free (call_p.tapes), and nothing to give
    seeds = [ctx.seed_or_zeros(c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    if handle is None:  # tape-free (building a .rev)
        needs = tuple(is_float(x) for x in ins)
        ct = b.emit(call_p, list(ins) + seeds, func=_ad_funcs(ctx, "rev", fname), out_types=_ct_types(f, needs))
    elif hs:  # a call in f.bwdacc: the accumulated cotangents go to the buffers
        acc = accumulated_args(f, needs)
        ct = b.emit(
            call_p,
            [handle] + seeds + [ins[k] for k in unchanged_args(f)] + hs,
            func=fname + ".bwdacc" + _ad_funcs(ctx, "bwd", fname, needs)[len(fname) + 4 :],
            out_types=_ct_types(f, [n and k not in acc for k, n in enumerate(needs)]),
        )
        needs = [n and k not in acc for k, n in enumerate(needs)]
    else:
        given = [ins[k] for k in unchanged_args(f)]
        # the arguments ride along where this code may be differentiated again (ad/via.py)
        origin = list(ins) if ctx.keeps_origin else []
        ct = b.emit(
            call_p,
            [handle] + seeds + given + origin,
            func=_ad_funcs(ctx, "bwd", fname, needs),
            out_types=_ct_types(f, needs),
            derived=("bwd", fname, needs),
            origin=len(origin),
        )
    ct = iter(ct)
    return [next(ct) if need else None for need in needs]


def _ct_types(f, needs):
    return tuple(p.type for p, need in zip(f.body.params, needs) if need)


def _call_jvp_full(ctx, eqn, ins, ts):
    b = ctx.b
    name = _ad_funcs(ctx, "jvp", eqn.params["func"])
    full_ts = [(t if t is not None else ops.zeros(b, x.type)) for x, t in zip(ins, ts) if is_float(x)]
    out_types = tuple(eqn.params["out_types"])
    t_types = tuple(t for t in out_types if t.dtype.is_float)
    outs = b.emit(call_p, list(ins) + full_ts, eqn.span, func=name, out_types=out_types + t_types)
    n = len(out_types)
    t_out = iter(outs[n:])
    return outs[:n], [next(t_out) if t.dtype.is_float else None for t in out_types]


# --- the derivatives of calls of .fwd and .bwd: See Note [Differentiating a tape] in ad/via.py


def _derived_equivalent(ctx, eqn):
    """A call of f.fwd as a call of f; a call of f.bwd as a call of f.rev (the cotangents it
    gives)."""
    kind, fname, needs = eqn.params["derived"]
    if kind == "bwd" and not eqn.params["origin"]:  # inside a tape's bodies: never differentiated
        raise TypeError_(ctx.unsupported(call_p))
    f = ctx.program.funcs[fname]
    n_args = len(f.body.params)
    if kind == "fwd":
        picks = list(range(n_args))
        types = [eqn.inputs[i].type for i in picks]
        return ctx.closed_body(
            types, lambda bb, ps: bb.emit(call_p, ps, func=fname, out_types=tuple(f.body.out_types))
        ), picks
    n_in, n_seeds = len(eqn.inputs), sum(1 for t in f.body.out_types if t.dtype.is_float)
    picks = list(range(n_in - n_args, n_in)) + list(range(1, 1 + n_seeds))
    every = tuple(is_float(p) for p in f.body.params)

    def rev(bb, ps):
        cts = iter(bb.emit(call_p, ps, func=_ad_funcs(ctx, "rev", fname), out_types=_ct_types(f, every)))
        return [ct for ct, need in zip(cts, [n for n, e in zip(needs, every) if e]) if need]

    return ctx.closed_body([eqn.inputs[i].type for i in picks], rev), picks


_derived_jvp, _derived_vjp_fwd, _derived_vjp = rules_via(_derived_equivalent)


def _call_rule(plain, derived):
    """The rule `plain` for calls of a program's function, `derived` for calls of .fwd/.bwd."""

    def rule(ctx, eqn_or_params, *rest):
        params = eqn_or_params if isinstance(eqn_or_params, dict) else eqn_or_params.params
        if params.get("derived") is not None:
            return derived(ctx, eqn_or_params, *rest)
        return plain(ctx, eqn_or_params, *rest)

    return rule


call_p = primitive(
    "call",
    shape=_call_shape,
    lower=_call_lower,
    kind=Kind.CALL,
    vjp_fwd=_call_rule(_call_vjp_fwd, _derived_vjp_fwd),
    vjp=_call_rule(_call_vjp, _derived_vjp),
    jvp_full=_call_rule(_call_jvp_full, _derived_jvp),
    tapes=True,
)

# Note [Unchanged arguments]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# A recursion over data passes the data on unchanged: fn f(xs, w, i) = ... f(xs, w, i + 1).
# Taping such an argument in every call's record (as any other residual) would keep depth
# copies of it: 2,000 calls over a [2000, 64] array, 2 GB. Every activation of f.bwd has it
# anyway, from its caller, down to the first caller, which has the value itself: so f.bwd
# takes it as an argument and the record holds only what changes from call to call.

# Note [Recursion accumulators]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The cotangent of an argument passed on unchanged that needs one (the gradient w.r.t. the data
# a recursion reads, fn go(w, xs, i, h) = ... go(w, xs, i + 1, tanh(w @ h + xs[i]))) is the
# sum of every call's contribution. Returned by each call's reverse and added by its caller, it
# is an array per call: 2,000 calls over a [2000, 64] array wrote 2,000 arrays of 1 MB (12 s).
# Instead f.bwd makes one zeroed heap buffer per such argument (acc_new, prims/tape.py), passes
# its handle down the reverse recursion f.bwdacc, whose calls add their contributions into it
# in place (acc_add; acc_add_at for an index's cotangent, one row), and reads it back at the
# end (acc_take). To build f.bwdacc, f's body gets the handles as extra parameters that each
# recursive call passes on (`acc` trailing inputs, `_with_handles`), so the reverse rule of
# the call sees them; then each cotangent output of the body is sunk into its buffer
# (`_sink_out`): sums split, an index's scatter becomes a row update, an `if` adds in its
# branches. f.bwd keeps its interface, so a derivative of it (See Note [Differentiating a
# tape] in ad/via.py) is unchanged. The same model as a `fold` carries one accumulator in its
# backward loop (Note [Threaded accumulators] in ad/vjp.py): both now cost a few times the
# forward pass at any depth.
