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
from ..lower.emit import I8, PTR, Arr, contiguous_strides, reg_type
from ..typesys import DType, TensorType
from .core import primitive
from .shape import row


def stacked(t: TensorType, n: int) -> TensorType:
    return t.with_shape((n,) + t.shape)


# --- helpers shared by the loop lowerings --------------------------------------------------------


class Slots:
    """Mutable homes for loop-carried values: scalars in allocas (promoted to registers by
    mem2reg), arrays in two arena buffers swapped each iteration (the body reads one while its
    result is written to the other)."""

    def __init__(self, em, types):
        self.em, self.types = em, types
        self.homes = []
        for t in types:
            if t.rank == 0:
                self.homes.append(em.alloca(reg_type(t.dtype)))
            else:
                cur, nxt = em.alloca(PTR), em.alloca(PTR)
                em.b.store(em.alloc(t).ptr, cur)
                em.b.store(em.alloc(t).ptr, nxt)
                self.homes.append((cur, nxt))

    def read(self):
        em, out = self.em, []
        for t, h in zip(self.types, self.homes):
            if t.rank == 0:
                out.append(em.b.load(h))
            else:
                out.append(Arr(em.b.load(h[0]), em.i64(0), _strides(t), t))
        return out

    def write(self, values):
        """Store new values; array results go to the spare buffer, which then becomes current."""
        em = self.em
        for t, h, v in zip(self.types, self.homes, values):
            if t.rank == 0:
                em.b.store(v, h)
            else:
                cur, nxt = h
                spare = em.b.load(nxt)
                em.copy_into(Arr(spare, em.i64(0), _strides(t), t), v)
                em.b.store(em.b.load(cur), nxt)
                em.b.store(spare, cur)


def _strides(t):
    return contiguous_strides(t.shape)


def store_row(em, out: Arr, i, v):
    """out[i] = v."""
    r = row(em, out, i)
    if isinstance(r, Arr):
        em.copy_into(r, v)
    else:
        em.store(Arr(out.ptr, em.b.add(out.offset, em.b.mul(i, em.i64(out.strides[0]))), (), out.type.with_shape(())), [], v)


# --- map ----------------------------------------------------------------------------------------


def _map_shape(in_types, body, n, num_xs):
    for t in in_types[:num_xs]:
        if t.rank == 0 or t.shape[0] != n:
            raise ShapeError(f"map over arrays of different lengths: expected {n} rows, got {t}")
    return [stacked(t, n) for t in body.out_types]


def _map_lower(em, eqn, ins):
    body, n, num_xs = eqn.params["body"], eqn.params["n"], eqn.params["num_xs"]
    xs, consts = ins[:num_xs], ins[num_xs:]
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
        raise ShapeError("the step function must return a carry of the same type as the initial one: "
                         f"expected {tuple(carry)}, got {tuple(outs[:num_carry])}")
    for t in in_types[num_carry:num_carry + num_xs]:
        if t.rank == 0 or t.shape[0] != length:
            raise ShapeError(f"scan over an array of length other than {length}: {t}")
    return list(carry) + [stacked(t, length) for t in outs[num_carry:]]


def _scan_lower(em, eqn, ins):
    p = eqn.params
    body, n, nc, nx, reverse = p["body"], p["length"], p["num_carry"], p["num_xs"], p["reverse"]
    init, xs, consts = ins[:nc], ins[nc:nc + nx], ins[nc + nx:]
    carry_types = [o.type for o in eqn.outs[:nc]]
    slots = Slots(em, carry_types)
    slots.write(init)
    ys = [em.alloc(o.type) for o in eqn.outs[nc:]]

    def step(i):
        t = em.b.sub(em.i64(n - 1), i) if reverse else i
        res = em.lower_body(body, [t] + slots.read() + [row(em, x, t) for x in xs] + consts)
        slots.write(res[:nc])
        for y, r in zip(ys, res[nc:]):
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
        raise ShapeError("the body of while must return a state of the same type as the initial one: "
                         f"expected {tuple(state)}, got {tuple(body.out_types)}")
    return list(state)


def _while_lower(em, eqn, ins):
    p = eqn.params
    ns = p["num_state"]
    init, consts = ins[:ns], ins[ns:]
    slots = Slots(em, [o.type for o in eqn.outs])
    slots.write(init)
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
        raise ShapeError(f"the branches of if have different types: {tuple(then.out_types)} and {tuple(else_.out_types)}")
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
