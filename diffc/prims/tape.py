"""Residual storage whose size is only known at run time (see Note [While tape]):

tape_pack(values) -> i64 handle        one heap record (a recursive call's residuals), in the
                                       call's list of live records (See Note [Tape records])
tape_unpack[types](handle) -> values   read the record back and free it
acc_new, acc_add, acc_add_at, acc_take the cotangent buffer that the calls of a recursion add to
                                       (See Note [Recursion accumulators] in prims/call.py)
while_tape   a while loop that also appends each iteration's residuals to a tape that grows
             by doubling; outputs (*state, tape handle, iteration count)
while_untape runs a body once per taped record, last record first, then frees the tape

while_tape and while_untape are declared, with their derivatives, in prims/while_.py (See Note
[Differentiating a tape] in ad/via.py); tape_pack and tape_unpack have none: a recursive
function's .fwd and .bwd are differentiated as calls (prims/call.py), never their bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from ..ir.core import Body
from ..lower.bodies import body_function, loop_body_lowering
from ..lower.emit import CTX_RECORDS, ERR_MEMORY, I8, I64, PTR, VOID, Arr, Site, contiguous_strides
from ..lower.loops import Slots, accumulate, accumulators, added, cheap_steps, inplace_carries
from ..typesys import MAX_BYTES, DType, TensorType
from .core import primitive

HANDLE = TensorType(DType.I64, ())


def record_layout(types) -> tuple[list[int], int]:
    """Byte offsets of each value in a record, and the record's size (8-byte aligned)."""
    offs, size = [], 0
    for t in types:
        offs.append(size)
        size += (max(t.nbytes, 1) + 7) // 8 * 8
    return offs, max(size, 8)


def _at(em, base, off: int, t):
    p = em.b.gep(base, [em.i64(off)], source_etype=I8) if off else base
    return Arr(p, em.i64(0), contiguous_strides(t.shape), t)


def _write_record(em, base, types, values):
    offs, _ = record_layout(types)
    for off, t, v in zip(offs, types, values):
        dst = _at(em, base, off, t)
        if t.rank == 0:
            em.store(dst, [], v)
        else:
            em.copy_into(dst, v)


def _read_record(em, base, types, copy: bool):
    offs, _ = record_layout(types)
    out = []
    for off, t in zip(offs, types):
        src = _at(em, base, off, t)
        if t.rank == 0:
            out.append(em.load(src, []))
        elif copy:
            buf = em.alloc(t)
            em.copy_into(buf, src)
            out.append(buf)
        else:
            out.append(src)
    return out


def _site(eqn, what: str) -> Site:
    return Site(eqn.span, ERR_MEMORY, what)


# --- one record --------------------------------------------------------------------------------


HEADER = 16  # a record's links in the call's list of live records: next, and where it is pointed at


def _link(em, p):
    """Put the heap block p (HEADER bytes of links first) in the list ctx[CTX_RECORDS] of the
    call's live records (See Note [Tape records]): p->next = head, p->at = &ctx[CTX_RECORDS],
    head->at = &p->next, head = p."""
    b = em.b
    head_at = em.ctx_ptr(CTX_RECORDS)
    head = b.load(head_at, typ=PTR)
    b.store(head, p)
    b.store(head_at, _at_field(em, p))
    with b.if_then(b.icmp_unsigned("!=", head, ir.Constant(PTR, None))):
        b.store(p, _at_field(em, head))
    b.store(p, head_at)


def _relink(em, q):
    """After realloc moved a record to q: *q->at = q, q->next->at = &q->next."""
    b = em.b
    b.store(q, b.load(_at_field(em, q), typ=PTR))
    nxt = b.load(q, typ=PTR)
    with b.if_then(b.icmp_unsigned("!=", nxt, ir.Constant(PTR, None))):
        b.store(q, _at_field(em, nxt))


def _unlink_and_free(em, p):
    """*p->at = p->next, p->next->at = p->at; free(p)."""
    b = em.b
    nxt, at = b.load(p, typ=PTR), b.load(_at_field(em, p), typ=PTR)
    b.store(nxt, at)
    with b.if_then(b.icmp_unsigned("!=", nxt, ir.Constant(PTR, None))):
        b.store(at, _at_field(em, nxt))
    em.call_extern("free", VOID, [p], [PTR])


def _at_field(em, p):
    return em.b.gep(p, [em.i64(8)], source_etype=I8)


def _data(em, p):
    return em.b.gep(p, [em.i64(HEADER)], source_etype=I8)


def _pack_lower(em, eqn, ins):
    """A record of the call's values, in the list of live records."""
    types = [x.type for x in eqn.inputs]
    _, size = record_layout(types)
    p = em.malloc(em.i64(HEADER + size), _site(eqn, "the tape of a recursive call"))
    _write_record(em, _data(em, p), types, ins)
    _link(em, p)
    return [em.b.ptrtoint(p, I64)]


def _unpack_lower(em, eqn, ins):
    """Read the record, then unlink and free it."""
    p = em.b.inttoptr(ins[0], PTR)
    vals = _read_record(em, _data(em, p), list(eqn.params["types"]), copy=True)
    _unlink_and_free(em, p)
    return vals


# No derivative rules: they appear only in the bodies of a recursive function's .fwd and .bwd,
# which are never differentiated (a derivative of a call of them is made from the function).
_RECURSION = "a recursive function"  # what these tapes belong to, for the message refusing a second derivative
tape_pack_p = primitive("tape_pack", shape=lambda ts: [HANDLE], lower=_pack_lower, effect=True, taped=_RECURSION)
tape_unpack_p = primitive(
    "tape_unpack", shape=lambda ts, types: list(types), lower=_unpack_lower, effect=True, taped=_RECURSION
)

# --- an accumulator shared by the calls of a recursion (See Note [Recursion accumulators]) ------
#
# acc_new[type]() -> handle            a zeroed heap buffer of that type
# acc_add(handle, x)                   buffer += x, in place
# acc_add_at[safe](handle, g, *idx)    buffer[idx...] += g, in place (an index's cotangent)
# acc_take[type](handle) -> value      read the buffer back and free it


def _acc_buffer(em, h, t) -> Arr:
    return Arr(_data(em, em.b.inttoptr(h, PTR)), em.i64(0), contiguous_strides(t.shape), t, owned=True)


def _acc_new_lower(em, eqn, ins):
    t = eqn.params["type"]
    site = _site(eqn, "the cotangent of an argument passed along a recursion")
    p = em.call_extern("calloc", PTR, [em.i64(HEADER + t.nbytes), em.i64(1)], [I64, I64])
    em.fail_if(em.b.icmp_unsigned("==", p, ir.Constant(PTR, None)), site, em.i64(t.nbytes), unlikely=True)
    _link(em, p)  # a live record until its acc_take (the recursion's reverse runs in between)
    return [em.b.ptrtoint(p, I64)]


def _acc_add_lower(em, eqn, ins):
    accumulate(em, _acc_buffer(em, ins[0], eqn.inputs[1].type), ("add", 1, None), ins[1], [])
    return []


def _acc_add_at_lower(em, eqn, ins):
    t = eqn.params["type"]
    accumulate(em, _acc_buffer(em, ins[0], t), ("index", len(ins) - 1, eqn), ins[1], ins[2:])
    return []


def _acc_take_lower(em, eqn, ins):
    t = eqn.params["type"]
    out = em.alloc(t)
    em.copy_into(out, _acc_buffer(em, ins[0], t))
    _unlink_and_free(em, em.b.inttoptr(ins[0], PTR))
    return [out]


acc_new_p = primitive("acc_new", shape=lambda ts, type: [HANDLE], lower=_acc_new_lower, effect=True, taped=_RECURSION)
acc_add_p = primitive(
    "acc_add", shape=lambda ts: [], lower=_acc_add_lower, effect=True, reads_lazy=True, taped=_RECURSION
)
acc_add_at_p = primitive(
    "acc_add_at", shape=lambda ts, type, safe: [], lower=_acc_add_at_lower, effect=True, taped=_RECURSION
)
acc_take_p = primitive("acc_take", shape=lambda ts, type: [type], lower=_acc_take_lower, effect=True, taped=_RECURSION)

# --- the growing tape of a while loop ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WhileOrigin:
    """The while loop a tape op was made from, kept for the tape op's own derivative: its
    condition and body, its state count, and which of its inputs get cotangents."""

    cond: Body
    body: Body
    num_state: int
    needs: tuple

    def __str__(self) -> str:
        return "<its while>"


def while_tape_shape(in_types, cond, body, num_state, origin):
    return list(in_types[:num_state]) + [HANDLE, HANDLE]


def while_tape_lower(em, eqn, ins):
    p = eqn.params
    ns = p["num_state"]
    body = p["body"]
    res_types = body.out_types[ns:]
    _, rsize = record_layout(res_types)
    init, consts = ins[:ns], ins[ns:]
    slots = Slots(em, [o.type for o in eqn.outs[:ns]], init)
    tape, cap, count = em.alloca(PTR), em.alloca(I64), em.alloca(I64)
    b = em.b
    site = _site(eqn, "the tape of a `while` loop")
    # a live record of the call until its while_untape frees it: a failure anywhere before
    # (in this loop, or in a later step of a loop around it) leaves it to the call's entry
    first = em.malloc(em.i64(HEADER + 16 * rsize), site)
    _link(em, first)
    b.store(first, tape)
    b.store(em.i64(16), cap)
    b.store(em.i64(0), count)
    head, loop_body, done = em.block("wt.head"), em.block("wt.body"), em.block("wt.end")
    b.branch(head)
    b.position_at_end(head)
    (c,) = loop_body_lowering(em, p["cond"], eqn.span)(slots.read() + consts)
    b.cbranch(c, loop_body, done)
    b.position_at_end(loop_body)
    em.poll_interrupt(eqn.span)
    res = loop_body_lowering(em, body, eqn.span)(slots.read() + consts)
    n = b.load(count)
    grow, write = em.block("wt.grow"), em.block("wt.write")
    b.cbranch(b.icmp_signed("==", n, b.load(cap)), grow, write)
    b.position_at_end(grow)
    new_cap = b.mul(b.load(cap), em.i64(2))
    nbytes = b.mul(new_cap, em.i64(rsize))
    # refused beyond MAX_BYTES, long before the byte count could overflow (malloc may promise
    # more memory than there is)
    em.fail_if(b.icmp_signed(">", new_cap, em.i64(MAX_BYTES // rsize)), site, nbytes, unlikely=True)
    moved = em.realloc(b.load(tape), b.add(nbytes, em.i64(HEADER)), site)  # (on failure the old one stays linked)
    _relink(em, moved)
    b.store(moved, tape)
    b.store(new_cap, cap)
    b.branch(write)
    b.position_at_end(write)
    n = b.load(count)
    rec = b.gep(_data(em, b.load(tape)), [b.mul(n, em.i64(rsize))], source_etype=I8)
    _write_record(em, rec, res_types, res[ns:])
    b.store(b.add(n, em.i64(1)), count)
    slots.write(res[:ns])
    b.branch(head)
    b.position_at_end(done)
    return slots.read() + [b.ptrtoint(b.load(tape), I64), b.load(count)]


def while_untape_shape(in_types, body, num_res, num_carry, origin):
    return list(in_types[2 : 2 + num_carry])


def while_untape_lower(em, eqn, ins):
    """for k = count-1 down to 0: carry = body(record k, carry, consts); then free the tape.
    The loop's inputs after the consts (its origin) are there for derivatives only."""
    p = eqn.params
    body, nr, nc = p["body"], p["num_res"], p["num_carry"]
    res_types = body.in_types[:nr]
    _, rsize = record_layout(res_types)
    b = em.b
    tape = b.inttoptr(ins[0], PTR)
    count = ins[1]
    n_consts = len(body.params) - nr - nc
    carry, consts = ins[2 : 2 + nc], ins[2 + nc : 2 + nc + n_consts]
    body2, plan = accumulators(body, nr, nc)
    homes = [em.destinations.get(o.id) for o in eqn.outs]
    slots = Slots(em, [o.type for o in eqn.outs], carry, inplace_carries(body, nr, nc, plan), homes)

    data = _data(em, tape)

    def in_function(inner, params, res):  # (a long body's function adds its own terms)
        return added(inner, params[nr : nr + nc], slots.types, plan, res, nc)

    # a long body: a call (See Note [Loop functions] in lower/bodies.py)
    fn = body_function(em, body2, eqn.span, in_function, key=body, carries={k: nr + k for k in slots.inplace})

    def step(i):
        k = b.sub(b.sub(count, em.i64(1)), i)
        rec = b.gep(data, [b.mul(k, em.i64(rsize))], source_etype=I8)
        res = _read_record(em, rec, res_types, copy=False)
        if fn is not None:
            slots.write(fn.call(em, res + slots.read() + consts)[:nc])  # (its terms added)
        else:
            vals = em.lower_body(body2, res + slots.read() + consts, lazy_outs=True)
            slots.write(vals[:nc], plan, vals[nc:])

    em.polled_loop(count, step, "untape", eqn.span, cheap_steps(body, nr, nc))
    _unlink_and_free(em, tape)  # (after a failure in the loop, the call's entry frees it)
    return slots.read()


# Note [While tape]
# ~~~~~~~~~~~~~~~~~~~
# A while loop's trip count is known only when it ends, so its residuals cannot go in a
# preallocated stack as a scan's do. The forward loop appends one record per iteration to a
# heap tape that doubles when full (amortised O(1) per iteration), in the one forward run of
# the loop: the loop is neither run twice (as Futhark does) nor refused (as JAX's
# while_loop is). The backward loop reads the records last to first and frees the tape.
#
# Note [Tape records]
# ~~~~~~~~~~~~~~~~~~~~~
# A recursion's tape is a tree of per-call records (tape_pack), each freed when the reverse
# reads it (tape_unpack). A call that fails partway (an index out of range, Ctrl-C, no memory)
# leaves records that no reverse will read: those its forward made before the failure, or all
# of them when the failure comes between the forward and the reverse. Their handles are in
# registers and records that are gone, so each record is also linked into a list of the live
# records of the call, ctx[CTX_RECORDS] (16 bytes of links before its values; unlinking is
# O(1): each record holds the address of the pointer to it). The entry of the call (the ctypes
# entry and the direct one, lower/llvm.py and lower/pyentry.py) frees whatever the list still
# holds when the native code returns: nothing after a success, everything left after a failure.
# The growing tape of a `while` loop and a recursion's accumulator are records of that list
# too: a tape that a loop's step returns (a `while` inside a map, taped once per element) would
# otherwise be lost when a later step fails, as each was, once per element and failing call.
# A tape that realloc moves is relinked where it now is.
