"""Structured ops that own bodies: map, scan, while, cond, and call (recursion).

fold, unfold, iterate and comprehensions are built on map and scan by the specialiser.
Conventions (the specialiser builds bodies to match):
  map   inputs [*xs, *consts]           body (i, *x_rows, *consts) -> ys      outs: stacked ys
  scan  inputs [*init, *xs, *consts]    body (i, *carry, *x_rows, *consts) -> (*carry, *ys)
                                         outs: (*final carry, *stacked ys); `reverse` walks back
  while inputs [*init, *consts]         cond (*state, *consts) -> bool; body -> state
  cond  inputs [pred, *operands]        branches (then, else), each (*operands) -> outs
  call  inputs args                     params func (a Program's Func name), out_types
"""

from __future__ import annotations

from ..errors import ShapeError, TypeError_
from ..lower.emit import I8, PTR, Arr, Lazy, contiguous_strides, reg_type
from ..typesys import DType, TensorType
from .core import primitive
from .shape import row


def stacked(t: TensorType, n: int) -> TensorType:
    return t.with_shape((n,) + t.shape)


def tape_note(types, n) -> str:
    """What a loop's tape holds: `types` per iteration, n iterations (None: known at run time)."""
    per = sum(t.nbytes for t in types)
    what = ", ".join(map(str, types)) or "nothing"
    total = (
        f"x {n} iterations = {per * n} B" if n is not None else "x the iterations the loop runs (a tape that doubles)"
    )
    return f"tape: {len(types)} residual{'s' * (len(types) != 1)} per iteration ({what}) = {per} B, {total}"


# --- helpers shared by the loop lowerings --------------------------------------------------------


class Slots:
    """Mutable homes for loop-carried values: scalars in allocas (promoted to registers by
    mem2reg); arrays in two arena buffers swapped each iteration (the body reads one while its
    result is written to the other), or, for the carries in `inplace`, in one buffer that the
    body updates in place (adopting the initial value's buffer when that is donated to it)."""

    def __init__(self, em, types, init, inplace=frozenset()):
        self.em, self.types, self.inplace = em, types, inplace
        self.homes = []
        for k, (t, v) in enumerate(zip(types, init)):
            if t.rank == 0:
                self.homes.append(em.alloca(reg_type(t.dtype)))
            elif k in inplace:
                donated = isinstance(v, Arr) and v.owned and v.contiguous
                self.homes.append(v.ptr if donated else em.alloc(t).ptr)
            else:
                cur, nxt = em.alloca(PTR), em.alloca(PTR)
                em.b.store(em.alloc(t).ptr, cur)
                em.b.store(em.alloc(t).ptr, nxt)
                self.homes.append((cur, nxt))
        self.write(init)

    def read(self):
        em, out = self.em, []
        for k, (t, h) in enumerate(zip(self.types, self.homes)):
            if t.rank == 0:
                out.append(em.b.load(h))
            elif k in self.inplace:
                out.append(Arr(h, em.i64(0), _strides(t), t, owned=True))
            else:
                out.append(Arr(em.b.load(h[0]), em.i64(0), _strides(t), t))
        return out

    def write(self, values, plan=None, operands=()):
        """Store new values; array results go to the spare buffer, which then becomes current.
        Carries in `plan` (see `accumulators`) are added to in place instead."""
        em = self.em
        plan = plan or {}
        ops_ = iter(operands)
        for k, (t, h, v) in enumerate(zip(self.types, self.homes, values)):
            if k in plan:
                how = plan[k]
                extra = [next(ops_) for _ in range(how[1] - 1)] if how[0] != "add" else []
                cur = h if k in self.inplace else em.b.load(h[0])
                accumulate(em, Arr(cur, em.i64(0), _strides(t), t), how, v, extra)
            elif t.rank == 0:
                em.b.store(v, h)
            elif k in self.inplace:
                if not (isinstance(v, Arr) and v.ptr is h):  # an inner loop updated it in place
                    em.copy_into(Arr(h, em.i64(0), _strides(t), t), v)
            else:
                cur, nxt = h
                spare = em.b.load(nxt)
                em.copy_into(Arr(spare, em.i64(0), _strides(t), t), v)
                em.b.store(em.b.load(cur), nxt)
                em.b.store(spare, cur)


def inplace_carries(body: Body, first: int, n: int, plan) -> set[int]:
    """The array carries a loop body updates in place: accumulators (`plan`), and carries whose
    only use is to be the carry of an inner loop that updates it in place and returns it as
    this body's result (a cotangent threaded through nested loops: See Note [Threaded
    accumulators] in ad/vjp.py)."""
    uses: dict[int, int] = {}
    made_by = {}
    for e in body.eqns:
        for x in e.inputs:
            uses[x.id] = uses.get(x.id, 0) + 1
        for o in e.outs:
            made_by[o.id] = e
    for o in body.outs:
        uses[o.id] = uses.get(o.id, 0) + 1
    found = set()
    for k in range(n):
        p, out = body.params[first + k], body.outs[k]
        if p.type.rank == 0:
            continue
        if k in plan:
            found.add(k)
            continue
        e = made_by.get(out.id)
        if e is None or uses.get(p.id) != 1 or uses.get(out.id) != 1 or e.prim.name not in ("scan", "while_untape"):
            continue
        j = e.outs.index(out)
        nc = e.params["num_carry"]
        base = 0 if e.prim.name == "scan" else 2
        inner = e.params["body"]
        inner_first = 1 if e.prim.name == "scan" else e.params["num_res"]
        if j < nc and e.inputs[base + j] is p:
            if j in inplace_carries(inner, inner_first, nc, accumulators(inner, inner_first, nc)[1]):
                found.add(k)
    return found


def _strides(t):
    return contiguous_strides(t.shape)


def accumulators(body: Body, first: int, n: int):
    """Find the carries a loop body only adds to: body.outs[k] = add(param[first + k], x) where
    the param is read nowhere else (the cotangent accumulators of tied weights that derivative
    loops carry). Returns (body', plan): body' returns x in place of the sum, and for each such
    carry plan[k] says how to add it in place, so no new carry is built per iteration:
      ("add",)             cur += x               (x may be Lazy: fused, no temporary)
      ("gather", extra)    cur[ids] += g          (x was gather_add(g, ids): touches only those rows)
      ("index", extra)     cur[i...] += g         (x was index_scatter(g, i...))
    `extra` counts body' outputs appended after the original ones (g and the indices)."""
    uses: dict[int, int] = {}
    made_by = {}
    for e in body.eqns:
        for x in e.inputs:
            uses[x.id] = uses.get(x.id, 0) + 1
        for o in e.outs:
            made_by[o.id] = e
    for o in body.outs:
        uses[o.id] = uses.get(o.id, 0) + 1
    drop, outs, extra, plan = set(), list(body.outs), [], {}
    for k in range(n):
        p, out = body.params[first + k], body.outs[k]
        e = made_by.get(out.id)
        if p.type.rank == 0 or e is None or e.prim.name != "add" or uses.get(p.id) != 1 or uses.get(out.id) != 1:
            continue
        a, b = e.inputs
        x = b if a is p else a if b is p else None
        if x is None or x.type != p.type:
            continue
        drop.add(id(e))
        src = made_by.get(x.id)
        if src is not None and src.prim.name in ("gather_add", "index_scatter") and uses.get(x.id) == 1:
            drop.add(id(src))
            plan[k] = ("gather" if src.prim.name == "gather_add" else "index", len(src.inputs))
            outs[k] = src.inputs[0]
            extra += src.inputs[1:]
        else:
            plan[k] = ("add",)
            outs[k] = x
    if not plan:
        return body, {}
    return Body(body.params, [e for e in body.eqns if id(e) not in drop], outs + extra), plan


def accumulate(em, cur: Arr, how, value, operands):
    """cur += value in place, as `accumulators` planned (operands: the indices)."""
    from .elementwise import _add

    dt = cur.type.dtype
    if how[0] == "add":
        em.loop_nest(
            cur.type.shape, lambda idx: em.store(cur, idx, _add(em, dt, em.load(cur, idx), em.read(value, idx))), "acc"
        )
    elif how[0] == "gather":
        (ids,) = operands
        ids_t = ids.type if isinstance(ids, Arr) else None
        n = cur.type.shape[0]
        row_shape = cur.type.shape[1:]

        def per_id(idx):
            i = em.read(ids, idx)
            j = em.b.select(em.b.icmp_signed("<", i, em.i64(0)), em.b.add(i, em.i64(n)), i)
            em.loop_nest(
                row_shape,
                lambda r: em.store(cur, [j] + r, _add(em, dt, em.load(cur, [j] + r), em.read(value, idx + r))),
                "acr",
            )

        em.loop_nest(ids_t.shape if ids_t else (), per_id, "aci")
    else:  # index
        offs = []
        for k, i in enumerate(operands):
            n = cur.type.shape[k]
            offs.append(em.b.select(em.b.icmp_signed("<", i, em.i64(0)), em.b.add(i, em.i64(n)), i))
        rest = cur.type.shape[len(offs) :]
        em.loop_nest(
            rest, lambda r: em.store(cur, offs + r, _add(em, dt, em.load(cur, offs + r), em.read(value, r))), "acx"
        )


def store_row(em, out: Arr, i, v):
    """out[i] = v."""
    r = row(em, out, i)
    if isinstance(r, Arr):
        em.copy_into(r, v)
    else:
        em.store(
            Arr(out.ptr, em.b.add(out.offset, em.b.mul(i, em.i64(out.strides[0]))), (), out.type.with_shape(())), [], v
        )


# --- map ----------------------------------------------------------------------------------------


def _map_shape(in_types, body, n, num_xs):
    for t in in_types[:num_xs]:
        if t.rank == 0 or t.shape[0] != n:
            raise ShapeError(f"map over arrays of different lengths: expected {n} rows, got {t}")
    return [stacked(t, n) for t in body.out_types]


def _map_lower(em, eqn, ins):
    body, n, num_xs = eqn.params["body"], eqn.params["n"], eqn.params["num_xs"]
    xs, consts = ins[:num_xs], ins[num_xs:]
    if em.fuse_next:  # read by a reduction: evaluate the body where each element is read

        def at(idx):
            (v,) = em.lower_body(body, [idx[0]] + [row(em, x, idx[0]) for x in xs] + consts, lazy_outs=True)
            return em.read(v, idx[1:])

        return [Lazy(eqn.outs[0].type, at)]
    outs = [em.alloc(o.type) for o in eqn.outs]

    def step(i):
        res = em.lower_body(body, [i] + [row(em, x, i) for x in xs] + consts)
        for o, r in zip(outs, res):
            store_row(em, o, i, r)

    em.loop(n, step, "map")
    return outs


map_p = primitive("map", shape=_map_shape, lower=_map_lower)

# --- scan ---------------------------------------------------------------------------------------


def _scan_shape(in_types, body, length, num_carry, num_xs, reverse):
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
    init, xs, consts = ins[:nc], ins[nc : nc + nx], ins[nc + nx :]
    carry_types = [o.type for o in eqn.outs[:nc]]
    ys = [em.alloc(o.type) for o in eqn.outs[nc:]]
    body, plan = accumulators(body, 1, nc)
    slots = Slots(em, carry_types, init, inplace_carries(eqn.params["body"], 1, nc, plan))
    n_out = len(eqn.params["body"].outs)

    def step(i):
        t = em.b.sub(em.i64(n - 1), i) if reverse else i
        res = em.lower_body(body, [t] + slots.read() + [row(em, x, t) for x in xs] + consts, lazy_outs=True)
        slots.write(res[:nc], plan, res[n_out:])
        for y, r in zip(ys, res[nc:n_out]):
            store_row(em, y, t, r)

    em.loop(n, step, "scan")
    return slots.read() + ys


scan_p = primitive("scan", shape=_scan_shape, lower=_scan_lower)

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
    slots.write(em.lower_body(p["body"], slots.read() + consts))
    em.b.branch(head)
    em.b.position_at_end(done)
    return slots.read()


while_p = primitive("while", shape=_while_shape, lower=_while_lower)

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


cond_p = primitive("cond", shape=_cond_shape, lower=_cond_lower)

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


# --- checkpoint and custom_vjp: bodies with their own derivative behaviour --------------------------


def _inline_lower(body_key):
    def lower(em, eqn, ins):
        return em.lower_body(eqn.params[body_key], ins[: len(eqn.params[body_key].params)])

    return lower


checkpoint_p = primitive("checkpoint", shape=lambda ts, body: list(body.out_types), lower=_inline_lower("body"))


def _custom_vjp_lower(em, eqn, ins):
    n, nc = eqn.params["counts"][:2]
    return em.lower_body(eqn.params["fun"], ins[: n + nc])


custom_vjp_p = primitive(
    "custom_vjp", shape=lambda ts, fun, fwd, bwd, counts: list(fun.out_types), lower=_custom_vjp_lower
)

# --- derivative rules of the structured ops ---------------------------------------------------------
# See Note [Loop derivatives] at the bottom of this module.

from ..ad.jvp import jvp_body  # noqa: E402
from ..ad.vjp import is_float, residual_values, vjp_split  # noqa: E402
from ..ir.build import Builder  # noqa: E402
from ..ir.core import Body  # noqa: E402
from ..ir.walk import inline  # noqa: E402
from . import ops  # noqa: E402


def _seed(b, ct, t):
    return ct if ct is not None else ops.zeros(b, t)


def _closed(param_types, fn) -> Body:
    """A closed body built by fn(builder, params) -> outs."""
    b = Builder()
    params = [b.param(t) for t in param_types]
    return b.finish(list(fn(b, params)))[0]


# checkpoint: the forward keeps no residuals; the backward runs the body's forward again.


def _checkpoint_vjp_fwd(b, eqn, ins, act):
    outs = b.emit(checkpoint_p, ins, eqn.span, body=eqn.params["body"])
    return outs, (ins, act)


def _checkpoint_vjp(b, params, aux, outs, cts):
    ins, act = aux
    body = params["body"]
    fwd, bwd, kinds = vjp_split(body, act)
    vals = inline(b, fwd, ins)
    extra = vals[len(body.outs) :]
    seeds = [_seed(b, c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    ct_in = iter(inline(b, bwd, seeds + residual_values(kinds, ins, extra)))
    return [next(ct_in) if a and is_float(x) else None for x, a in zip(ins, act)]


def _body_jvp_full(key, prim):
    def jvp_full(b, eqn, ins, ts):
        jb = jvp_body(eqn.params[key], [t is not None for t in ts])
        vals = inline(b, jb, ins + [t for t in ts if t is not None])
        n = len(eqn.outs)
        touts = iter(vals[n:])
        return vals[:n], [next(touts) if is_float(o) else None for o in eqn.outs]

    return jvp_full


checkpoint_p.vjp_fwd, checkpoint_p.vjp = _checkpoint_vjp_fwd, _checkpoint_vjp
checkpoint_p.jvp_full = _body_jvp_full("body", checkpoint_p)


# custom_vjp: the user's fwd and bwd replace the derivative of fun.


def _custom_vjp_fwd(b, eqn, ins, act):
    n, nc, nf, nb = eqn.params["counts"]
    fwd = eqn.params["fwd"]
    vals = inline(b, fwd, ins[:n] + ins[n + nc : n + nc + nf])
    n_out = len(eqn.outs)
    return vals[:n_out], (ins, vals[n_out:])


def _custom_vjp_vjp(b, params, aux, outs, cts):
    ins, residuals = aux
    n, nc, nf, nb = params["counts"]
    seeds = [_seed(b, c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    bcap = ins[n + nc + nf :]
    ct_in = iter(inline(b, params["bwd"], list(residuals) + seeds + bcap))
    return [next(ct_in) if is_float(x) else None for x in ins[:n]] + [None] * (len(ins) - n)


def _custom_vjp_jvp_full(b, eqn, ins, ts):
    n, nc = eqn.params["counts"][:2]
    fun = eqn.params["fun"]
    jb = jvp_body(fun, [t is not None for t in ts[: n + nc]])
    vals = inline(b, jb, ins[: n + nc] + [t for t in ts[: n + nc] if t is not None])
    k = len(eqn.outs)
    touts = iter(vals[k:])
    return vals[:k], [next(touts) if is_float(o) else None for o in eqn.outs]


custom_vjp_p.vjp_fwd, custom_vjp_p.vjp, custom_vjp_p.jvp_full = _custom_vjp_fwd, _custom_vjp_vjp, _custom_vjp_jvp_full


# map: forward map with stacked residuals; backward is a scan whose carry accumulates the
# cotangents of the loop-invariant inputs (tied weights) and whose outputs are the rows' ones.


def _map_vjp_fwd(b, eqn, ins, act):
    p = eqn.params
    body, nx = p["body"], p["num_xs"]
    needs = [False] + list(act)
    acc = [1 + k for k in range(nx, len(ins)) if act[k] and is_float(ins[k])]
    fwd, bwd, kinds = vjp_split(body, needs, accumulate=acc)
    outs = b.emit(map_p, ins, eqn.span, body=fwd, n=p["n"], num_xs=nx)
    ny = len(body.outs)
    b.eqns[-1].note = tape_note(fwd.out_types[ny:], p["n"])
    return outs[:ny], (ins, act, bwd, kinds, outs[ny:])


def _map_vjp(b, params, aux, outs, cts, current):
    ins, act, bwd, kinds, res_stacked = aux
    n, nx = params["n"], params["num_xs"]
    xs, consts = ins[:nx], ins[nx:]
    seeds = [_seed(b, c, o.type) for c, o in zip(cts, outs) if is_float(o)]
    want = [k for k, x in enumerate(ins) if act[k] and is_float(x)]  # inputs that get cotangents
    acc_idx = [k for k in want if k >= nx]
    row_idx = [k for k in want if k < nx]
    acc_types = [ins[k].type for k in acc_idx]
    row = lambda t: t.with_shape(t.shape[1:])  # noqa: E731

    sb = Builder(b)
    i = sb.param(ops_i64())
    accs = [sb.param(t) for t in acc_types]
    seed_rows = [sb.param(row(s.type)) for s in seeds]
    res_rows = [sb.param(row(r.type)) for r in res_stacked]
    x_rows = [sb.param(row(x.type)) for x in xs]
    param_vals = [i] + x_rows + list(consts)
    res = [param_vals[k] if kind == "param" else res_rows[k] for kind, k in kinds]
    ct = dict(zip(want, inline(sb, bwd, seed_rows + accs + res)))
    body, captured = sb.finish([ct[k] for k in acc_idx] + [ct[k] for k in row_idx])
    inits = [current[k] if current[k] is not None else ops.zeros(b, ins[k].type) for k in acc_idx]
    stacks = seeds + list(res_stacked) + list(xs)
    out = b.emit(
        scan_p, inits + stacks + captured, body=body, length=n, num_carry=len(inits), num_xs=len(stacks), reverse=False
    )
    result = [None] * len(ins)
    for k, v in zip(acc_idx, out[: len(acc_idx)]):
        result[k] = v
    for k, v in zip(row_idx, out[len(acc_idx) :]):
        result[k] = v
    return result, set(acc_idx)


def ops_i64():
    from ..typesys import DType, TensorType

    return TensorType(DType.I64, ())


def _map_jvp_full(b, eqn, ins, ts):
    p = eqn.params
    body, nx = p["body"], p["num_xs"]
    has = [False] + [t is not None for t in ts]
    jb = jvp_body(body, has)
    # jb takes (i, rows, consts, row tangents, const tangents); map wants rows first
    t_rows = [t for t in ts[:nx] if t is not None]
    t_consts = [t for t in ts[nx:] if t is not None]
    n_rows = len(t_rows)

    def reorder(bb, params):
        i, rows, trows = params[0], params[1 : 1 + nx], params[1 + nx : 1 + nx + n_rows]
        consts, tconsts = (
            params[1 + nx + n_rows : 1 + nx + n_rows + len(ins) - nx],
            params[1 + nx + n_rows + len(ins) - nx :],
        )
        return inline(bb, jb, [i] + rows + consts + trows + tconsts)

    row = lambda t: t.with_shape(t.shape[1:])  # noqa: E731
    types = (
        [ops_i64()]
        + [row(x.type) for x in ins[:nx]]
        + [row(t.type) for t in t_rows]
        + [x.type for x in ins[nx:]]
        + [t.type for t in t_consts]
    )
    nb = _closed(types, reorder)
    outs = b.emit(
        map_p, list(ins[:nx]) + t_rows + list(ins[nx:]) + t_consts, eqn.span, body=nb, n=p["n"], num_xs=nx + n_rows
    )
    k = len(eqn.outs)
    touts = iter(outs[k:])
    return outs[:k], [next(touts) if is_float(o) else None for o in eqn.outs]


map_p.vjp_fwd, map_p.vjp, map_p.jvp_full = _map_vjp_fwd, _map_vjp, _map_jvp_full
map_p.threads_cotangents = True


# scan: the forward also stacks the residuals of every step (T residual records); the backward
# is a scan in the other direction carrying the carry's cotangent and the accumulated
# cotangents of the loop-invariant inputs.


def _scan_vjp_fwd(b, eqn, ins, act):
    p = eqn.params
    body, nc, nx = p["body"], p["num_carry"], p["num_xs"]
    any_act = any(act)
    needs = [False] + [any_act and is_float(x) for x in ins[:nc]] + list(act[nc:])
    acc = [1 + k for k in range(nc + nx, len(ins)) if act[k] and is_float(ins[k])]
    fwd, bwd, kinds = vjp_split(body, needs, accumulate=acc)
    # the carry a step starts from is a residual too: stack it as an extra output
    carry_res = sorted({k for kind, k in kinds if kind == "param" and 1 <= k <= nc})
    fwd = Body(fwd.params, fwd.eqns, fwd.outs + [fwd.params[k] for k in carry_res])
    outs = b.emit(scan_p, ins, eqn.span, body=fwd, length=p["length"], num_carry=nc, num_xs=nx, reverse=p["reverse"])
    ny = len(body.outs) - nc
    b.eqns[-1].note = tape_note(fwd.out_types[len(body.outs) :], p["length"])
    n_extra = len(fwd.outs) - len(body.outs) - len(carry_res)
    res_stacked = outs[nc + ny : nc + ny + n_extra]
    carry_stacked = dict(zip(carry_res, outs[nc + ny + n_extra :]))
    return outs[: nc + ny], (ins, needs, bwd, kinds, res_stacked, carry_stacked)


def _scan_vjp(b, params, aux, outs, cts, current):
    ins, needs, bwd, kinds, res_stacked, carry_stacked = aux
    n, nc, nx = params["length"], params["num_carry"], params["num_xs"]
    init, xs, consts = ins[:nc], ins[nc : nc + nx], ins[nc + nx :]
    float_carry = [k for k in range(nc) if is_float(init[k])]
    ct_carry0 = [_seed(b, cts[k], outs[k].type) for k in float_carry]
    y_seeds = [_seed(b, c, o.type) for c, o in zip(cts[nc:], outs[nc:]) if is_float(o)]
    want = [k for k in range(len(ins)) if needs[k + 1] and is_float(ins[k])]
    carry_want = [k for k in want if k < nc]
    acc_idx = [k for k in want if k >= nc + nx]
    row_idx = [k for k in want if nc <= k < nc + nx]
    row = lambda t: t.with_shape(t.shape[1:])  # noqa: E731

    sb = Builder(b)
    t = sb.param(ops_i64())
    ct_c = [sb.param(init[k].type) for k in float_carry]
    accs = [sb.param(ins[k].type) for k in acc_idx]
    y_rows = [sb.param(row(s.type)) for s in y_seeds]
    res_rows = [sb.param(row(r.type)) for r in res_stacked]
    carry_keys = sorted(carry_stacked)
    c_rows = dict(zip(carry_keys, [sb.param(row(carry_stacked[k].type)) for k in carry_keys]))
    x_rows = [sb.param(row(x.type)) for x in xs]
    param_vals = [t] + [c_rows.get(k + 1) for k in range(nc)] + x_rows + list(consts)
    res = [param_vals[k] if kind == "param" else res_rows[k] for kind, k in kinds]
    ct = dict(zip(want, inline(sb, bwd, ct_c + y_rows + accs + res)))
    new_ct_c = [ct[k] if k in ct else ops.zeros(sb, init[k].type) for k in float_carry]
    body, captured = sb.finish(new_ct_c + [ct[k] for k in acc_idx] + [ct[k] for k in row_idx])
    stacks = y_seeds + list(res_stacked) + [carry_stacked[k] for k in carry_keys] + list(xs)
    inits = ct_carry0 + [current[k] if current[k] is not None else ops.zeros(b, ins[k].type) for k in acc_idx]
    out = b.emit(
        scan_p,
        inits + stacks + captured,
        body=body,
        length=n,
        num_carry=len(inits),
        num_xs=len(stacks),
        reverse=not params["reverse"],
    )
    result = [None] * len(ins)
    for k, v in zip(float_carry, out):
        if k in carry_want:
            result[k] = v
    for k, v in zip(acc_idx, out[len(float_carry) :]):
        result[k] = v
    for k, v in zip(row_idx, out[len(float_carry) + len(acc_idx) :]):
        result[k] = v
    return result, set(acc_idx)


def _scan_jvp_full(b, eqn, ins, ts):
    p = eqn.params
    body, nc, nx = p["body"], p["num_carry"], p["num_xs"]
    any_t = any(t is not None for t in ts)
    # a float carry gets a tangent whenever anything does (it may become active in the loop)
    t_in = [
        (ts[k] if ts[k] is not None else ops.zeros(b, ins[k].type)) if any_t and is_float(ins[k]) else None
        for k in range(nc)
    ] + list(ts[nc:])
    has = [False] + [t is not None for t in t_in]
    jb = jvp_body(body, has)
    tc = [t for t in t_in[:nc] if t is not None]
    tx = [t for t in t_in[nc : nc + nx] if t is not None]
    tk = [t for t in t_in[nc + nx :] if t is not None]
    ncons = len(ins) - nc - nx

    def reorder(bb, params):
        k = 0

        def take(m):
            nonlocal k
            out = params[k : k + m]
            k += m
            return out

        i, c, t_c, xr, t_xr, cs, t_cs = (
            take(1),
            take(nc),
            take(len(tc)),
            take(nx),
            take(len(tx)),
            take(ncons),
            take(len(tk)),
        )
        outs = inline(bb, jb, i + c + xr + cs + t_c + t_xr + t_cs)
        n_out = len(body.outs)
        prim, tang = outs[:n_out], outs[n_out:]
        float_out = [is_float(o) for o in body.outs]
        tmap, it = [], iter(tang)
        for f in float_out:
            tmap.append(next(it) if f else None)
        carry_t = [tmap[k2] for k2 in range(nc) if t_in[k2] is not None]
        y_t = [x for x in tmap[nc:] if x is not None]
        return prim[:nc] + carry_t + prim[nc:] + y_t

    row = lambda t: t.with_shape(t.shape[1:])  # noqa: E731
    types = (
        [ops_i64()]
        + [x.type for x in ins[:nc]]
        + [t.type for t in tc]
        + [row(x.type) for x in ins[nc : nc + nx]]
        + [row(t.type) for t in tx]
        + [x.type for x in ins[nc + nx :]]
        + [t.type for t in tk]
    )
    nb = _closed(types, reorder)
    outs = b.emit(
        scan_p,
        list(ins[:nc]) + tc + list(ins[nc : nc + nx]) + tx + list(ins[nc + nx :]) + tk,
        eqn.span,
        body=nb,
        length=p["length"],
        num_carry=nc + len(tc),
        num_xs=nx + len(tx),
        reverse=p["reverse"],
    )
    ny = len(body.outs) - nc
    carry, carry_t = outs[:nc], iter(outs[nc : nc + len(tc)])
    ys = outs[nc + len(tc) : nc + len(tc) + ny]
    ys_t = iter(outs[nc + len(tc) + ny :])
    touts = [next(carry_t) if t_in[k] is not None else None for k in range(nc)]
    touts += [next(ys_t) if is_float(o) else None for o in body.outs[nc:]]
    return carry + ys, touts


scan_p.vjp_fwd, scan_p.vjp, scan_p.jvp_full = _scan_vjp_fwd, _scan_vjp, _scan_jvp_full
scan_p.threads_cotangents = True


# cond: each branch's forward also returns its residuals (zeros for the other branch's); the
# backward is a cond on the same predicate running the taken branch's backward only.


def _cond_vjp_fwd(b, eqn, ins, act):
    branches = eqn.params["branches"]
    splits = [vjp_split(br, list(act[1:])) for br in branches]
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

        return _closed([x.type for x in ins[1:]], build)

    outs = b.emit(cond_p, ins, eqn.span, branches=(branch(0), branch(1)))
    extras, k0 = [], n_out
    for ts in extra_types:
        extras.append(outs[k0 : k0 + len(ts)])
        k0 += len(ts)
    return outs[:n_out], (ins, act, splits, extras)


def _cond_vjp(b, params, aux, outs, cts):
    ins, act, splits, extras = aux
    operands = ins[1:]
    seeds = [_seed(b, c, o.type) for c, o in zip(cts, outs) if is_float(o)]
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
            return inline(bb, bwd, s + residual_values(kinds, ops_, mine))

        return _closed([s.type for s in seeds] + [x.type for x in flat_extras] + [x.type for x in operands], build)

    ct = b.emit(cond_p, [ins[0]] + seeds + flat_extras + list(operands), branches=(branch(0), branch(1)))
    result = [None] * len(ins)
    for k, v in zip(want, ct):
        result[k + 1] = v
    return result


def _cond_jvp_full(b, eqn, ins, ts):
    has = [t is not None for t in ts[1:]]
    jbs = [jvp_body(br, has) for br in eqn.params["branches"]]
    t_ops = [t for t in ts[1:] if t is not None]
    outs = b.emit(cond_p, list(ins) + t_ops, eqn.span, branches=tuple(jbs))
    n = len(eqn.outs)
    touts = iter(outs[n:])
    return outs[:n], [next(touts) if is_float(o) else None for o in eqn.outs]


cond_p.vjp_fwd, cond_p.vjp, cond_p.jvp_full = _cond_vjp_fwd, _cond_vjp, _cond_jvp_full

# Note [Loop derivatives]
# ~~~~~~~~~~~~~~~~~~~~~~~~~
# A loop body is split by vjp_split into a forward body (which also returns the residuals
# its backward reads) and a backward body. The forward loop stacks the residuals of each of
# its T iterations, so the tape of a loop over T steps is T residual records. Values that do
# not change across iterations (captured weights, constants) are not taped: the backward loop
# reads them directly, and their cotangents are summed in a carry of the backward loop: the one
# accumulator a tied weight gets.


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
    ct0 = [_seed(b, cts[k], outs[k].type) for k in float_state]
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
    carry0 = ct0 + [current[k] if current[k] is not None else ops.zeros(b, ins[k].type) for k in acc_idx]
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
        cond=_closed(types, cond_fn),
        body=_closed(types, body_fn),
        num_state=ns + len(ts_state),
    )
    t_out = iter(outs[ns:])
    return outs[:ns], [next(t_out) if t_in[k] is not None else None for k in range(ns)]


while_p.vjp_fwd, while_p.vjp, while_p.jvp_full = _while_vjp_fwd, _while_vjp, _while_jvp_full
while_p.threads_cotangents = True


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

    placeholder.body = _closed(f.body.in_types, fwd_fn)
    res_types = fwd.out_types[n_out:] + [f.body.params[k].type for k in res_params]
    seed_types = [t for t in f.body.out_types if t.dtype.is_float]

    def bwd_fn(bb, params):
        handle, seeds = params[0], params[1:]
        saved = bb.emit(tape_unpack_p, [handle], types=tuple(res_types))
        extra, pvals = saved[: len(fwd.outs) - n_out], dict(zip(res_params, saved[len(fwd.outs) - n_out :]))
        return inline(
            bb, bwd, list(seeds) + residual_values(kinds, [pvals.get(k) for k in range(len(f.body.params))], extra)
        )

    bwd_f.body = _closed([TensorType(DType.I64, ())] + seed_types, bwd_fn)
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
    seeds = [_seed(b, c, o.type) for c, o in zip(cts, outs) if is_float(o)]
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
