"""Lowering helpers the loops (map, scan, while, and the tapes' loops) share: homes for
loop-carried values, in-place accumulation, rows, and how much work a loop's step does."""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from ..ir.core import Body
from ..ir.prim import const_p
from ..ir.walk import uses_and_producers
from .emit import ERR_BOUNDS, PTR, Arr, Lazy, Site, contiguous_strides, reg_type, scalar_add


def row(em, x, i):
    """x[i] along the leading axis, unchecked (loop indices are in range by construction). A
    uniform Lazy x (a broadcast scalar: a loop's seeds of a summed result) stays unmaterialised."""
    t = x.type.with_shape(x.type.shape[1:])
    if isinstance(x, Lazy):
        assert x.uniform, "a row of a Lazy array that is not uniform"
        zero = em.i64(0)
        return x.at([zero] * x.type.rank) if t.rank == 0 else Lazy(t, lambda idx: x.at([zero] + idx), uniform=True)
    off = em.b.add(x.offset, em.b.mul(i, em.i64(x.strides[0]))) if x.strides[0] else x.offset
    view = Arr(x.ptr, off, x.strides[1:], t)
    return em.load(view, []) if t.rank == 0 else view


class Slots:
    """Mutable homes for loop-carried values: scalars in allocas (promoted to registers by
    mem2reg); arrays in two arena buffers swapped each iteration (the body reads one while its
    result is written to the other), or, for the carries in `inplace`, in one buffer that the
    body updates in place (adopting the initial value's buffer when that is donated to it)."""

    def __init__(self, em, types, init, inplace=frozenset(), destinations=None, unwritten=frozenset()):
        """destinations: per carry, an output buffer its final value is wanted in, or None.
        unwritten: the carries whose initial value the caller writes itself."""
        self.em, self.types, self.inplace = em, types, inplace
        self.spares: dict[int, Arr] = {}  # carry k -> its spare buffer, given to be written (`spare`)
        self.homes = []
        for k, (t, v) in enumerate(zip(types, init)):
            dest = destinations[k] if destinations else None
            if t.rank == 0:
                self.homes.append(em.alloca(reg_type(t.dtype)))
            elif k in inplace:
                donated = isinstance(v, Arr) and v.owned and v.contiguous
                if dest is not None and dest.contiguous:
                    self.homes.append(em.start_ptr(dest))
                else:
                    self.homes.append(em.start_ptr(v) if donated else em.alloc(t).ptr)
            else:
                cur, nxt = em.alloca(PTR), em.alloca(PTR)
                scope = em.new_scope()  # the two buffers' (See Note [Alias scopes] in lower/emit.py)
                em.b.store(em.alloc(t, scope).ptr, cur)
                em.b.store(em.alloc(t, scope).ptr, nxt)
                self.homes.append((cur, nxt, scope))
        self.write([None if k in unwritten else v for k, v in enumerate(init)])

    def read(self):
        em, out = self.em, []
        for k, (t, h) in enumerate(zip(self.types, self.homes)):
            if t.rank == 0:
                out.append(em.b.load(h))
            elif k in self.inplace:
                out.append(Arr(h, em.i64(0), _strides(t), t, owned=True))
            else:
                out.append(Arr(self._loaded(h[0], h[2]), em.i64(0), _strides(t), t))
        return out

    def _loaded(self, slot, scope):
        """The buffer pointer a carry slot holds now, in the carry's alias scope."""
        p = self.em.b.load(slot)
        self.em.in_scope(p, scope)
        return p

    def spare(self, k) -> Arr:
        """The buffer the next value of array carry k (not updated in place) goes to: a loop
        body's function may compute it there, and `write` then copies nothing."""
        t, (_, nxt, scope) = self.types[k], self.homes[k]
        self.spares[k] = Arr(self._loaded(nxt, scope), self.em.i64(0), _strides(t), t)
        return self.spares[k]

    def accumulator(self, k) -> Arr:
        """The buffer of carry k, one that `plan` adds to in place."""
        t, h = self.types[k], self.homes[k]
        return Arr(h if k in self.inplace else self._loaded(h[0], h[2]), self.em.i64(0), _strides(t), t)

    def write(self, values, plan=None, operands=(), deferred=(), stored=()):
        """Store new values (None: leave the carry as it is); array results go to the spare
        buffer, which then becomes current. Carries in `plan` (see `accumulators`) are added to
        in place instead, but for the terms (k, j) in `deferred`: returns their values, (k, j)
        -> the value to add; and those in `stored` are stored, not added."""
        em = self.em
        plan = plan or {}
        ops_ = iter(operands)
        held = {}
        for k, (t, h, v) in enumerate(zip(self.types, self.homes, values)):
            if v is None:
                continue
            if k in plan:
                cur = h if k in self.inplace else self._loaded(h[0], h[2])
                add_terms(em, k, Arr(cur, em.i64(0), _strides(t), t), plan[k], v, ops_, deferred, stored, held)
            elif t.rank == 0:
                em.b.store(v, h)
            elif k in self.inplace:
                if not (isinstance(v, Arr) and v.ptr is h):  # an inner loop updated it in place
                    em.copy_into(Arr(h, em.i64(0), _strides(t), t), v)
            else:
                cur, nxt, scope = h
                given = self.spares.pop(k, None)
                spare = given.ptr if given is not None else self._loaded(nxt, scope)
                if v is not given:  # (else computed there)
                    em.copy_into(Arr(spare, em.i64(0), _strides(t), t), v)
                em.b.store(em.b.load(cur), nxt)
                em.b.store(spare, cur)
        return held


def add_terms(em, k, cur: Arr, terms, first, ops_, deferred=(), stored=(), held=None):
    """Add the terms of carry k (its `plan`, from `accumulators`) to its buffer cur in place:
    the first term is `first`, the others and their indices come from the iterator ops_; the
    terms (k, j) in `deferred` are put in held instead, those in `stored` stored."""
    for j, how in enumerate(terms):
        v = first if j == 0 else next(ops_)
        extra = [next(ops_) for _ in range(how[1] - 1)]
        if (k, j) in deferred:
            held[k, j] = v
        elif how[0] != "base":
            accumulate(em, cur, how, v, extra, (k, j) in stored)
        elif not (isinstance(v, Arr) and v.ptr is cur.ptr):  # (not updated in place)
            em.copy_into(cur, v)


def added(em, carries, types, plan, results, n_out: int) -> list:
    """The results of a loop body made by `accumulators` (its first n_out results, then the
    terms' values), with each carry of `plan` (carries[k], the body's param: an owned buffer,
    or a scalar; types[k] its type) added its terms as Slots.write adds them: in place, the
    result the carry's buffer; a scalar's sum in registers. The terms' values are then no results (None). For a
    loop body lowered as a function (See Note [Loop functions] in lower/bodies.py), which adds
    its terms itself: a term fused into its addition stays so."""
    out = list(results[:n_out]) + [None] * (len(results) - n_out)
    ops_ = iter(results[n_out:])
    for k in sorted(plan):  # (the order Slots.write takes them in)
        c = carries[k]
        if isinstance(c, Arr):
            add_terms(em, k, c, plan[k], results[k], ops_)
            out[k] = c
            continue
        for j, how in enumerate(plan[k]):
            assert how == ("add", 1, None), "a scalar carry's term that is not a sum"
            c = scalar_add(em, types[k].dtype, c, results[k] if j == 0 else next(ops_))
        out[k] = c
    return out


POLL_WORK = 1024  # scalar ops per iteration from which a loop checks for Ctrl-C each time


def cheap_steps(body: Body, first: int = 0, n: int = 0) -> bool:
    """Whether a loop's steps are too short to check for Ctrl-C in each (See Note [Interrupts]
    in lower/emit.py): a check per iteration would cost a measurable share of the time and
    keep LLVM from unrolling and vectorising the loop. first, n: the body's carries, as for
    `accumulators`."""
    return step_work(body, first, n) < POLL_WORK


def step_work(body: Body, first: int = 0, n: int = 0) -> int:
    """The work of one step of a loop body whose n carries from param `first` on are added to
    in place where they can be (`accumulators`): an index's cotangent then touches one
    element, not the whole accumulator."""
    inner, plan = accumulators(body, first, n) if n else (body, {})
    added = sum(
        0
        if how[0] == "base"
        else how[2].inputs[0].type.size
        if how[2] is not None
        else body.params[first + k].type.size
        for k, terms in plan.items()
        for how in terms
    )
    return work(inner) + added


def work(body: Body) -> int:
    """A rough count of the scalar operations one run of `body` does: its loops' trip counts
    times their bodies' work, and each other op the elements it writes (reads, for a
    reduction). A while loop or a call counts as one run of its body: they check for Ctrl-C
    themselves."""
    total = 0
    for e in body.eqns:
        loop = e.prim.loop
        trips = loop.trips(e.params) if loop is not None and loop.trips is not None else 1
        if loop is not None and loop.carries is not None:
            _, first, nc = loop.carries(e.params)
            total += trips * step_work(e.params["body"], first, nc)
        elif e.bodies():
            total += trips * sum(work(b) for b in e.bodies())
        elif e.prim.reads_all:
            total += max(x.type.size for x in e.inputs)
        else:  # (an index of an array reads one element of it)
            total += max([o.type.size for o in e.outs] + [1])
    return total


def inplace_carries(body: Body, first: int, n: int, plan) -> set[int]:
    """The array carries a loop body updates in place: accumulators (`plan`), and carries whose
    only use is to be the carry of an inner loop that updates it in place and returns it as
    this body's result (a cotangent threaded through nested loops: See Note [Threaded
    accumulators] in ad/vjp.py)."""
    uses, made_by = uses_and_producers(body)
    found = set()
    for k in range(n):
        p, out = body.params[first + k], body.outs[k]
        if p.type.rank == 0:
            continue
        if k in plan:
            found.add(k)
            continue
        e = made_by.get(out.id)
        loop = e.prim.loop if e is not None else None
        if loop is None or loop.carries is None or uses.get(p.id) != 1 or uses.get(out.id) != 1:
            continue
        base, inner_first, nc = loop.carries(e.params)
        j = e.outs.index(out)
        inner = e.params["body"]
        if j < nc and e.inputs[base + j] is p:
            if j in inplace_carries(inner, inner_first, nc, accumulators(inner, inner_first, nc)[1]):
                found.add(k)
    return found


def _strides(t):
    return contiguous_strides(t.shape)


def accumulators(body: Body, first: int, n: int):
    """Find the carries a loop body only adds to: body.outs[k] = add(...add(param[first + k],
    x1)..., xm) where the param and each partial sum are read nowhere else (the cotangent
    accumulators of tied weights that derivative loops carry; a body that reads a captured
    array m times adds m terms). Returns (body', plan): body' returns the terms in place of
    the sum, and for each such carry plan[k] is a tuple of the terms, in the order they were
    added, each saying how to add it in place, so no new carry is built per iteration:
      ("base", 1, None)    cur = x                (x was made by an inner loop adding to cur in place: no copy)
      ("add", 1, None)     cur += x               (x may be Lazy: fused, no temporary)
      ("gather", m, e)     cur[ids] += g          (x was e = gather_add(g, ids): touches only those rows)
      ("index", m, e)      cur[i...] += g         (x was e = index_scatter(g, i...))
    m counts the values of body' outputs a term takes: the first term's first value is outs[k],
    all the others are appended after the original outputs, in order (g and the indices). e's
    span and params place and skip the bounds checks, as e itself would."""
    uses, made_by = uses_and_producers(body)
    user = {x.id: e for e in body.eqns for x in e.inputs}  # (the only one, for a value used once)
    drop, outs, extra, plan = set(), list(body.outs), [], {}
    for k in range(n):
        p, out = body.params[first + k], body.outs[k]
        if p.type.rank == 0 or uses.get(p.id) != 1 or uses.get(out.id) != 1:
            continue
        chain = _sum_chain(p, out, user, uses)
        if chain is None:
            continue
        adds, xs, base = chain
        drop.update(id(e) for e in adds)
        terms, values = ([("base", 1, None)], [base]) if base is not None else ([], [])
        for x in xs:
            src = made_by.get(x.id)
            if src is not None and src.prim.accumulate_as in ("gather", "index") and uses.get(x.id) == 1:
                drop.add(id(src))
                terms.append((src.prim.accumulate_as, len(src.inputs), src))
                values += src.inputs
            else:
                terms.append(("add", 1, None))
                values.append(x)
        plan[k] = tuple(terms)
        outs[k] = values[0]
        extra += values[1:]
    if not plan:
        return body, {}
    return Body(body.params, [e for e in body.eqns if id(e) not in drop], outs + extra), plan


def _sum_chain(p, out, user, uses):
    """(the adds, the terms x1..xm in the order they are added, the base) if out = add(...add(
    base, x1)..., xm), each partial sum used once and each term of p's type, where the base is
    p or the result of an inner loop that adds to p in place (p its carry, used nowhere else: a
    comprehension's body reading x both itself and in an inner comprehension); else None.
    Walks up from p (used once) through the equation that reads each partial sum (`user`)."""
    adds, xs, v, base = [], [], p, None
    e = user.get(p.id)
    loop = e.prim.loop if e is not None else None
    if loop is not None and loop.carries is not None:
        first, inner_first, nc = loop.carries(e.params)
        j = e.inputs.index(p) - first
        inner = e.params["body"]
        if 0 <= j < nc and uses.get(e.outs[j].id) == 1:
            if j in inplace_carries(inner, inner_first, nc, accumulators(inner, inner_first, nc)[1]):
                v = base = e.outs[j]
    while v is not out:
        e = user.get(v.id)
        if e is None or e.prim.accumulate_as != "add" or uses.get(e.outs[0].id) != 1:
            return None
        a, b = e.inputs
        x = b if a is v else a
        if x is v or x.type != p.type or e.outs[0].type != p.type:
            return None
        adds.append(e)
        xs.append(x)
        v = e.outs[0]
    return (adds, xs, base) if adds else None


def sum_carries(body: Body, first: int, n: int) -> dict[int, list[int]]:
    """The float scalar carries that a loop body only adds terms to (out = add(...add(param,
    x1)..., xm), the param and each partial sum read nowhere else: the cotangents a backward
    loop sums over its iterations), each with the place of the partial sum among the inputs of
    each add, last add first; their sums may be reassociated (See Note [Reassociated sums])."""
    uses, _ = uses_and_producers(body)
    user = {x.id: e for e in body.eqns for x in e.inputs}
    found = {}
    for k in range(n):
        p, out = body.params[first + k], body.outs[k]
        if p.type.rank or not p.type.dtype.is_float or uses.get(p.id) != 1 or uses.get(out.id) != 1:
            continue
        chain = _sum_chain(p, out, user, uses)
        if chain is not None and chain[2] is None:
            adds, v = chain[0], p
            places = []
            for e in adds:
                places.append(0 if e.inputs[0] is v else 1)
                v = e.outs[0]
            found[k] = places[::-1]
    return found


def reassociate(carries, results, sums: dict[int, list[int]]):
    """Let LLVM reassociate the additions of each carry's sum (`sum_carries`) in the lowered
    body: the flag on every fadd of the chain from the result back to the carry, so that the
    loop vectorises with partial sums in its lanes (See Note [Reassociated sums])."""
    for k, places in sums.items():
        chain, v = [], results[k]
        for place in places:
            if not (isinstance(v, ir.Instruction) and v.opname == "fadd"):
                break
            chain.append(v)
            v = v.operands[place]
        if v is carries[k] and len(chain) == len(places):
            for add in chain:
                add.flags.append("reassoc")


def accumulate(em, cur: Arr, how, value, operands, store=False):
    """cur += value in place, as `accumulators` planned (operands: the indices); cur[i...] =
    value for an index term when `store`."""
    dt = cur.type.dtype
    if how[0] == "add":
        em.loop_nest(
            cur.type.shape,
            lambda idx: em.store(cur, idx, scalar_add(em, dt, em.load(cur, idx), em.read(value, idx))),
            "acc",
        )
        return
    src = how[2]
    site = Site(src.span, ERR_BOUNDS, "index")
    if how[0] == "gather":
        (ids,) = operands
        ids_t = ids.type if isinstance(ids, Arr) else None
        row_shape = cur.type.shape[1:]

        def per_id(idx):
            j = em.checked_index(em.read(ids, idx), cur.type.shape[0], site)
            em.loop_nest(
                row_shape,
                lambda r: em.store(cur, [j] + r, scalar_add(em, dt, em.load(cur, [j] + r), em.read(value, idx + r))),
                "acr",
            )

        em.loop_nest(ids_t.shape if ids_t else (), per_id, "aci")
    else:  # index
        safe = src.params.get("safe")
        offs = [i if safe else em.checked_index(i, n, site) for i, n in zip(operands, cur.type.shape)]
        rest = cur.type.shape[len(offs) :]

        def at(r):
            v = em.read(value, r)
            em.store(cur, offs + r, v if store else scalar_add(em, dt, em.load(cur, offs + r), v))

        em.loop_nest(rest, at, "acx")


DEFER_BLOCK = 256  # the iterations whose deferred scatter-adds are done together


@dataclass
class Deferral:
    """How a loop adds its accumulators' terms (See Note [Deferred scatters])."""

    # (k, j) -> a Body (the loop index, the loop's constants) -> the indices of carry k's term j,
    # which the loop adds after each block of iterations
    terms: dict
    # carry k -> (j, c): of a rank-1 carry whose every term adds at index i + c_j in iteration
    # i, the term of the largest c, which a forward loop from zero may store instead of add
    first_writes: dict
    offsets: dict  # carry k of first_writes -> {j: c_j}, for all its terms


def deferred_scatters(body: Body, plan, first_const: int) -> Deferral:
    """The terms of `plan` (from `accumulators`) that add a scalar at an index affine in the
    loop index (a step of 1 or -1), but for one per carry, added in the loop. Only
    indices proven in range (`safe`): a bounds check must fail in the iteration it belongs to.
    The loop's constants are body.params[first_const:]."""
    made_by = {o.id: e for e in body.eqns for o in e.outs}
    i, consts = body.params[0], body.params[first_const:]
    terms, first_writes, all_offsets = {}, {}, {}
    for k, carry_terms in plan.items():
        found, offsets = {}, {}
        for j, (kind, _, src) in enumerate(carry_terms):
            if kind != "index" or not src.params.get("safe") or src.inputs[0].type.rank:
                continue
            idx = src.inputs[1:]
            if len(idx) != src.outs[0].type.rank:
                continue
            used: set[int] = set()
            kinds = [_affine(x, i, consts, made_by, used) for x in idx]
            if None not in kinds and "affine" in kinds:
                found[j] = Body([i, *consts], [e for e in body.eqns if id(e) in used], list(idx))
                offsets[j] = _offset(idx[0], i, made_by) if len(idx) == 1 else None
        if not found:
            continue
        kept = next(iter(found))
        if len(found) == len(carry_terms) and None not in offsets.values():
            kept = max(offsets, key=offsets.get)
            first_writes[k] = (kept, offsets[kept])
            all_offsets[k] = offsets
        terms.update(((k, j), b) for j, b in found.items() if j != kept)
    return Deferral(terms, first_writes, all_offsets)


def _offset(v, i, made_by):
    """c if integer v is i + c, c a constant, else None."""
    if v is i:
        return 0
    e = made_by.get(v.id)
    if e is None or e.prim.linear is None or v.type.dtype.is_float:
        return None
    c, unknown = 0, []
    for x, a in zip(e.inputs, e.prim.linear):
        if x.known is not None and x.type.rank == 0:
            c += a * int(x.known)
        else:
            unknown.append((x, a))
    if len(unknown) != 1 or unknown[0][1] != 1:
        return None
    inner = _offset(unknown[0][0], i, made_by)
    return None if inner is None else inner + c


def _affine(v, i, consts, made_by, used):
    """ "affine" if integer v is a linear combination of i and loop-invariant values (i with
    a coefficient of +1 or -1: `i + 1`, `n - i`), "invariant" if it does not depend on i, else
    None; `used` collects the equations that compute v."""
    if v is i:
        return "affine"
    if any(v is c for c in consts):
        return "invariant"
    e = made_by.get(v.id)
    if e is None or v.type.dtype.is_float or v.type.rank:
        return None
    if e.prim is const_p:
        used.add(id(e))
        return "invariant"
    if e.prim.linear is None:
        return None
    kinds = [_affine(x, i, consts, made_by, used) for x in e.inputs]
    if None in kinds or kinds.count("affine") > 1:  # (i + i: a step of 2, left out)
        return None
    used.add(id(e))
    return "affine" if "affine" in kinds else "invariant"


def term_values(plan, firsts, extra) -> dict:
    """(k, j) -> the value that term j of carry k adds, from a body' of `accumulators`: its
    outputs for the carries (`firsts`) and the values after the original outputs (`extra`)."""
    found, rest = {}, iter(extra)
    for k, terms in plan.items():
        for j, (_, m, _) in enumerate(terms):
            found[k, j] = firsts[k] if j == 0 else next(rest)
            for _ in range(m - 1):
                next(rest)  # (the indices)
    return found


def gathered_loop(em, n: int, values_at, offsets: dict, cur: Arr, init, span):
    """cur[p] = init[p] + the sum over terms j of value_j(p - c_j), for each element p of cur
    (rank 1), where value_j(t) exists for t in 0..n only: values_at(t) -> {j: value_j(t)} and
    offsets: j -> c_j. init None: zero. Each element is written once, by a loop that
    vectorises (See Note [Deferred scatters])."""
    b, dt = em.b, cur.type.dtype
    size = cur.type.shape[0]
    shifts = sorted(set(offsets.values()))

    def at(p, guarded):
        total = em.read(init, [p]) if init is not None else None
        for c in shifts:
            t = b.sub(p, em.i64(c))
            if guarded:  # (near the ends: only the terms whose iteration exists)
                home = em.alloca(reg_type(dt))
                b.store(total if total is not None else em.const(dt, 0), home)
                inside = b.and_(b.icmp_signed(">=", t, em.i64(0)), b.icmp_signed("<", t, em.i64(n)))
                with b.if_then(inside):
                    values = values_at(t)
                    b.store(_sum(em, dt, b.load(home), [values[j] for j, cj in offsets.items() if cj == c]), home)
                total = b.load(home)
            else:
                values = values_at(t)
                total = _sum(em, dt, total, [values[j] for j, cj in offsets.items() if cj == c])
        em.store(cur, [p], total)

    lo, hi = shifts[-1], n + shifts[0]  # the elements every term reaches
    if hi > lo:
        em.polled_loop(hi - lo, lambda q: at(b.add(q, em.i64(lo)), False), "gather", span, cheap=True)
    for start, stop in ((0, min(lo, size)), (max(hi, lo, 0), size)):
        if stop > start:
            em.loop(stop - start, lambda q, start=start: at(b.add(q, em.i64(start)), True), "ends")


def _sum(em, dt, total, values):
    for v in values:
        total = v if total is None else scalar_add(em, dt, total, v)
    return total


def zero_outside(em, cur: Arr, lo: int, hi: int):
    """cur[:lo] = 0 and cur[hi:] = 0 (cur of rank 1)."""
    n = cur.type.shape[0]
    zero = em.const(cur.type.dtype, 0)
    for start, stop in ((0, min(lo, n)), (max(hi, 0), n)):
        if stop > start:
            em.loop(stop - start, lambda j, start=start: em.store(cur, [em.b.add(j, em.i64(start))], zero), "zero")


def deferred_loop(em, n, step, deferred, accumulator, consts, order, span):
    """for i in 0..n: step(i), where step returns the values of the `deferred` terms
    ((k, j) -> a scalar; see `deferred_scatters`), added to their accumulators
    (accumulator(k), an Arr) after each block of DEFER_BLOCK iterations, one loop per term.
    order(i): the loop's index in iteration i (the reverse of i for a reversed scan)."""
    b = em.b
    n = em.i64(n) if isinstance(n, int) else n
    dtypes = {key: accumulator(key[0]).type.dtype for key in deferred}
    held = {}  # term -> its block buffer on the stack (terms adding the same value share one)

    def block(c):
        start, m = em.block_of(c, DEFER_BLOCK, n)

        def one(j):
            stored = []  # (value, buffer): one store per distinct value
            for key, v in step(b.add(start, j)).items():
                buf = next((p for w, p in stored if w is v), None)
                if buf is None:
                    buf = em.alloca(reg_type(dtypes[key]), f"held{key[0]}.{key[1]}", DEFER_BLOCK)
                    buf.align = 64  # (whole vectors: no store across two cache lines)
                    b.store(v, b.gep(buf, [j], source_etype=reg_type(dtypes[key])))
                    stored.append((v, buf))
                held[key] = buf

        em.loop(m, one, "blk")
        for key, index_body in deferred.items():
            cur, ty = accumulator(key[0]), reg_type(dtypes[key])

            def add(j, key=key, cur=cur, ty=ty, index_body=index_body):
                idx = em.lower_body(index_body, [order(b.add(start, j))] + list(consts))
                v = b.load(b.gep(held[key], [j], source_etype=ty), typ=ty)
                em.store(cur, idx, scalar_add(em, cur.type.dtype, em.load(cur, idx), v))

            em.loop(m, add, "dfr")

    # a check for Ctrl-C per block (none when there are few blocks)
    if isinstance(n, ir.Constant):
        blocks = -(-n.constant // DEFER_BLOCK)
    else:
        blocks = b.sdiv(b.add(n, em.i64(DEFER_BLOCK - 1)), em.i64(DEFER_BLOCK))
    em.polled_loop(blocks, block, "blocks", span, cheap=False)


def store_row(em, out: Arr, i, v):
    """out[i] = v."""
    r = row(em, out, i)
    if isinstance(r, Arr):
        em.copy_into(r, v)
    else:
        em.store(
            Arr(out.ptr, em.b.add(out.offset, em.b.mul(i, em.i64(out.strides[0]))), (), out.type.with_shape(())), [], v
        )


# Note [Deferred scatters]
# ~~~~~~~~~~~~~~~~~~~~~~~~
# The backward loop of `for i in 0..n - 1 => (x[i + 1] - x[i]) ** 2` adds, in iteration i,
# -g to ct[i] and g to ct[i + 1]; iteration i + 1 adds to ct[i + 1] again. Each iteration then
# depends on the one before through memory, and LLVM keeps the loop scalar: about 2 ns per
# element, where the forward is one vectorised reduction. Since nothing in the body reads the
# accumulator, its additions may be made in any order:
# - A term that adds a scalar at indices affine in the loop index (`deferred_scatters`) is
#   held in a stack buffer for a block of DEFER_BLOCK iterations and added after the block, one
#   loop per term: each of those loops, like the one computing the body, writes each element
#   once, and vectorises. The first such term of a carry stays in the loop (it alone writes
#   each element once per iteration: no buffer, no extra pass), and terms adding the same
#   value share one buffer (the stencil's four neighbours).
# - When every term of a rank-1 accumulator adds at i + c (c a constant) in a forward loop, the
#   term of the largest c is the first to write each element it reaches: from zero, it stores
#   instead of adding, and only the elements it does not reach are zeroed (`zero_outside`):
#   no pass that zeroes the whole cotangent, no load of it in the loop.
# - When such an accumulator is the loop's only carry and the body cannot fail
#   (`gathered_loop`), each element p is computed at once as the sum of the terms that reach
#   it, the body evaluated at p - c for each distinct c: one vectorised loop writing each
#   element once, the gradient of the difference loss as fast as `x * 2.0`.
# Only indices proven in range are deferred, so that a failed bounds check still stops the
# loop in the iteration it belongs to. The sums are the same but for the order of the
# additions into an element (the last digits). Measured with benchmarks/gradient_cost.py (CPU
# time): the difference loss's gradient/forward 7-15 -> 2.9-3.9, the 2-D stencil's 3.9-6.0
# -> 2.7-3.8.


# Note [Reassociated sums]
# ~~~~~~~~~~~~~~~~~~~~~~~~
# The backward of a comprehension over pairs (for i, j => f(x[i], x[j])) is a scan over j
# inside a scan over i whose scalar carries sum the cotangent of x[i] over j: c = c + term,
# each addition waiting for the one before, 3 or 4 cycles each, and LLVM may not vectorise a
# float sum whose order it would change. Those sums have no order of their own: the program
# asked for a derivative, and the derivative of a value used at n places is the sum of n terms
# in whatever order. So a scan made by differentiation (`derived`, ad/loops.py reverse_loop,
# and the scans made from one) marks the fadds of each float scalar carry it only adds terms
# to (`sum_carries`: the carry and each partial sum read nowhere else) `reassoc`, and LLVM
# vectorises the loop with partial sums in its lanes. The gradient of the Gaussian energy of
# 512 points (benchmarks/families.py, comprehension): f32 594 -> 162 us, f64 786 -> 421; the
# sums differ from the serial ones by rounding only (f64: 5e-15 relative). A scan the program
# wrote keeps its order (docs/language.md: fold runs from first to last), and the results do
# not depend on the number of threads (the loop is serial; its lanes are the machine's).
