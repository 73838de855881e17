"""IR -> LLVM IR (an llvmlite ir.Module).

Native ABI of every lowered Func:  void f(ptr ctx, ptr out_0, ..., in_0, ...)
scalar inputs by value, array inputs as pointers to contiguous buffers, every output written
through a pointer. `diffc_entry(ptr ctx, ptr ins, ptr outs)` unpacks pointer arrays for the
runtime and calls the entry Func."""

from __future__ import annotations

import re

from llvmlite import ir

from ..ir.core import Body, Eqn, Func, Program, Var
from ..ir.printer import body_text
from ..ir.walk import all_eqns, uses_and_producers
from ..pytree import TreeDef
from . import pyentry
from .emit import (
    CTX_DEPTH,
    CTX_STACK,
    ERR_DEPTH,
    ERR_INTERRUPT,
    ERR_STACK,
    I8,
    I64,
    PTR,
    VOID,
    Arr,
    Emitter,
    Site,
    contiguous_strides,
    enter_float_mode,
    free_records_left,
    fusable_values,
    leave_float_mode,
    mem_type,
    reg_type,
    start_interrupts,
)

ENTRY_SYMBOL = "diffc_entry"
MAX_DEPTH = 10_000


class ModuleState:
    """What lowering one program shares across functions: the module, failure sites, decls."""

    def __init__(self, name: str):
        self.module = ir.Module(name)
        self.sites: list[Site] = []
        self.entry_arena = 0  # bytes of the entry function's arena, which the runtime provides
        self.prints: list[tuple] = []  # (label, tree, types) of each print site, numbered from 0
        self.funcs: dict[str, ir.Function] = {}
        self.kernels: set[str] = set()  # kernels compiled apart that this module calls (lower/gemm.py)
        self.not_unrolled = None  # the metadata of loops LLVM must not unroll (lower/emit.py)
        self.vector_loop_free = None  # and of the vector loop made of one, which it may (lower/emit.py)
        self.not_vectorised = None  # the metadata of loops LLVM must not vectorise (lower/emit.py)
        self.thread_safe: set[str] = set()  # loop bodies' functions a parallel loop may call (lower/bodies.py)
        self.loop_functions: dict = {}  # id(body) -> (body, its function or None), lower/bodies.py

    def declare(self, name: str, ret: ir.Type, arg_types) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, list(arg_types)), name)
        return fn

    def add_site(self, site: Site) -> int:
        self.sites.append(site)
        return len(self.sites) - 1


def native_arg_type(t) -> ir.Type:
    return reg_type(t.dtype) if t.rank == 0 else PTR


# An entry function of more top-level equations than SPLIT_ABOVE is lowered as calls of parts
# of about PART_EQNS equations each, and none of more than MAX_PART_EQNS if a cut can end it
# (See Note [Parts])
SPLIT_ABOVE = 64
PART_EQNS = 32
MAX_PART_EQNS = 4 * PART_EQNS
MIN_PERIOD = 2  # equations of the shortest run that repeats and is made one function (See Note [Repeated parts])


def lower_program(prog: Program, out_tree: TreeDef | None = None) -> ModuleState:
    """The program's LLVM module; with the output tree, also the direct entry for Python calls
    when the function takes numbers and arrays and returns them in tuples (lower/pyentry.py)."""
    ms = ModuleState(prog.entry)
    for name, f in prog.funcs.items():
        ms.funcs[name] = declare_func(ms, f, f"dfl.{name}")
    for name, f in prog.funcs.items():
        parts = body_parts(f.body) if name == prog.entry and not f.recursive else []
        if parts:
            _lower_parts(ms, f, ms.funcs[name], parts)
            continue
        em = _lower_func(ms, f, ms.funcs[name], external_arena=name == prog.entry and not f.recursive)
        if em.external_arena:
            ms.entry_arena = em.arena_size
    recursive = any(f.recursive for f in prog.funcs.values())
    # tape records (of recursions and `while` loops) that a failure may leave behind
    records = any(e.prim.taped is not None for f in prog.funcs.values() for e in all_eqns(f.body))
    _lower_entry(ms, prog.main, ms.funcs[prog.entry], records)
    if pyentry.eligible(prog.main, out_tree, bool(ms.prints)):
        for fn in pyentry.lower_pycall(ms.module, prog.main, ms.funcs[prog.entry], out_tree, recursive, records):
            glue(fn)
    return ms


def glue(fn: ir.Function) -> None:
    """Mark a function that only checks and passes values (no loops, no arithmetic worth
    optimising) so that LLVM's optimiser skips it, and keep the functions it calls out of it:
    inlined there, they would not be optimised (See Note [Glue functions])."""
    fn.attributes.update(("optnone", "noinline", "noimplicitfloat"))
    for block in fn.blocks:
        for instr in block.instructions:
            if isinstance(instr, ir.CallInstr) and isinstance(instr.callee, ir.Function) and instr.callee.blocks:
                instr.attributes.add("noinline")


def declare_func(ms: ModuleState, f: Func, symbol: str, first: int = 1) -> ir.Function:
    """The internal LLVM function of a Func, with the native ABI (see the module docstring);
    its outputs start at argument `first`, after ctx and `first - 1` more pointers."""
    ins = [native_arg_type(p.type) for p in f.body.params]
    fn = ir.Function(ms.module, ir.FunctionType(VOID, [PTR] * (first + len(f.body.outs)) + ins), symbol)
    fn.linkage = "internal"
    for a in fn.args[1:]:
        if isinstance(a.type, ir.PointerType):
            # outputs are fresh buffers and inputs are never written: no pointer aliases another
            # that is written, which lets LLVM vectorise loops without runtime overlap checks
            a.add_attribute("noalias")
    return fn


def _lower_func(ms: ModuleState, f: Func, fn: ir.Function, external_arena: bool = False) -> Emitter:
    em = Emitter(ms, fn, f.span, recursive=f.recursive, external_arena=external_arena)
    if f.recursive:
        _depth_guard(em, f)
        em.poll_interrupt(f.span)
    args, em.destinations = params_and_destinations(em, f, fn)
    em.own_outs = frozenset(o.id for o in f.body.outs)
    outs = em.lower_body(f.body, args, lazy_outs=True)  # a fused result is computed straight into its output
    finish_func(em, f, fn, outs)
    return em


def params_and_destinations(em: Emitter, f: Func, fn: ir.Function, first: int = 1):
    """The lowered values of f's params, and its output buffers by value id (the outputs
    start at argument `first`)."""
    n_out = len(f.body.outs)
    args = []
    for p, a in zip(f.body.params, fn.args[first + n_out :]):
        args.append(a if p.type.rank == 0 else Arr(a, em.i64(0), contiguous_strides(p.type.shape), p.type))
    destinations = {
        o.id: Arr(ptr, em.i64(0), contiguous_strides(o.type.shape), o.type)
        for o, ptr in zip(f.body.outs, fn.args[first : first + n_out])
        if o.type.rank
    }
    return args, chained_destinations(f.body, destinations)


def chained_destinations(body: Body, destinations: dict[int, Arr]) -> dict[int, Arr]:
    """`destinations` (value id -> the buffer it is wanted in) and, following each back to the
    value it is made from, that value's: the operand of a reshape (a gradient ending in the
    reshape that undoes the forward's), or the initial value of a loop's carry (a cotangent
    accumulated in place, seeded by a gradient computed before the loop), when that value is
    read nowhere else. It is then computed straight into the buffer, and the reshape or the
    loop that updates it there copies nothing."""
    destinations = dict(destinations)
    uses, made_by = uses_and_producers(body)
    params = {p.id for p in body.params}
    todo = list(destinations.items())
    while todo:
        vid, dest = todo.pop()
        e = made_by.get(vid)
        y = _source(e, vid) if e is not None else None
        if y is None or y.id in params or y.id in destinations or uses[y.id] != 1:
            continue
        if y.type.rank and y.type.size == dest.type.size:
            destinations[y.id] = Arr(dest.ptr, dest.offset, contiguous_strides(y.type.shape), y.type)
            todo.append((y.id, destinations[y.id]))
    return destinations


def _source(e: Eqn, vid: int) -> Var | None:
    """The input of e whose buffer can hold e's output `vid` (see chained_destinations)."""
    if e.prim.keeps_all_zeros and e.inputs:  # (reshapes and broadcasts)
        return e.inputs[0]
    carries = e.prim.loop.carries if e.prim.loop is not None else None
    if carries is None:
        return None
    base, _, nc = carries(e.params)
    j = next(k for k, o in enumerate(e.outs) if o.id == vid)
    return e.inputs[base + j] if j < nc else None


def finish_func(em: Emitter, f: Func, fn: ir.Function, outs: list, first: int = 1, skip=frozenset()):
    """Write the results into the output pointers (from argument `first` on), but those in
    `skip`, and close the function."""
    em.destinations = {}
    for k, (o, v, ptr) in enumerate(zip(f.body.outs, outs, fn.args[first : first + len(f.body.outs)])):
        if (isinstance(v, Arr) and v.ptr is ptr) or k in skip:  # computed in place (a loop's carry)
            continue
        if o.type.rank == 0:
            em.store_scalar_ptr(ptr, o.type.dtype, v)
        else:
            em.copy_into(Arr(ptr, em.i64(0), contiguous_strides(o.type.shape), o.type), v)
    em.finish()


def body_parts(body: Body) -> list[list[Eqn]]:
    """The top-level equations of a long body as parts, in order: each run of equations that
    repeats (the same equations on values of the same types: the layers of a network written
    out, their gradients) one part per repetition (See Note [Repeated parts]), the equations
    between them in runs of at least PART_EQNS (the last one may be shorter), cut only where no
    value that stays lazy (emit.fusable_values: computed where it is read) is read across the
    cut, unless the run has grown to MAX_PART_EQNS: then the lazy values read across are
    computed into buffers; [] for a body of SPLIT_ABOVE equations or fewer."""
    eqns = body.eqns
    if len(eqns) <= SPLIT_ABOVE:
        return []
    fusable = fusable_values(body, lazy_outs=True)
    last_read = {x.id: k for k, e in enumerate(eqns) for x in e.inputs}
    # lazy_reach[k]: the last reader of a lazy value that equation k makes, or -1
    lazy_reach = [max([-1] + [last_read.get(o.id, -1) for o in e.outs if o.id in fusable]) for e in eqns]
    parts, at = [], 0
    for start, period, count in _repeats(eqns, lazy_reach):
        parts += _runs(eqns[at:start], fusable, last_read, at)
        parts += [eqns[start + j * period : start + (j + 1) * period] for j in range(count)]
        at = start + period * count
    parts += _runs(eqns[at:], fusable, last_read, at)
    return _views_where_read(parts, body.outs) if len(parts) > 1 else []


def _views_where_read(parts: list[list[Eqn]], outs: list[Var]) -> list[list[Eqn]]:
    """parts with each view (Prim.view) that later parts read made again by each of them, at
    its start, from its operand, and gone from its own part where nothing there reads it (See
    Note [Views across parts]); as they were if that would give fewer parts one function."""
    moved = [list(eqns) for eqns in parts]
    keep = {o.id for o in outs}
    made_by = {o.id: e for eqns in parts for e in eqns for o in e.outs}
    readers: dict[int, set[int]] = {}  # value id -> the parts that read it and do not make it
    for j, eqns in enumerate(moved):
        made = {o.id for e in eqns for o in e.outs}
        for x in {x.id for e in eqns for x in e.inputs} - made:
            readers.setdefault(x, set()).add(j)
    for k in reversed(range(len(moved))):
        for e in reversed(list(moved[k])):
            later = readers.pop(e.outs[0].id, None) if e.prim.view and not _copies(e, made_by) else None
            if not later:
                continue
            for j in later:
                moved[j].insert(0, e)
                readers.setdefault(e.inputs[0].id, set()).add(j)
            y = e.outs[0]
            if y.id not in keep and not any(y in f.inputs for f in moved[k]):
                moved[k].remove(e)
                x = e.inputs[0]
                if not any(x in f.inputs for f in moved[k]) and not any(x in f.outs for f in moved[k]):
                    readers[x.id].discard(k)
    if len(set(_part_keys(moved))) > len(set(_part_keys(parts))):
        return parts
    return moved


def _copies(e: Eqn, made_by: dict[int, Eqn]) -> bool:
    """Whether view e copies its operand: a reshape of a view that is strided (a transpose's,
    such as attention's heads split from the projections, which its backward reads again)."""
    src = made_by.get(e.inputs[0].id)
    return e.prim.copies_strided and src is not None and src.prim.view and not src.prim.copies_strided


def _runs(eqns: list[Eqn], fusable: set[int], last_read: dict[int, int], offset: int) -> list[list[Eqn]]:
    """Consecutive equations (the first at `offset` in the body) in runs of at least PART_EQNS,
    cut as body_parts says: where a run has grown to MAX_PART_EQNS with no clean cut, at the
    cut that computes the fewest bytes of lazy values into buffers."""
    parts, start, k, reach = [], 0, 0, -1  # reach: the last reader of a lazy value of this run
    while k < len(eqns):
        cut = None
        if k - start >= PART_EQNS and len(eqns) - k >= PART_EQNS // 2:
            if reach < k + offset:
                cut = k
            elif k - start >= MAX_PART_EQNS:
                cut = min(
                    range(start + PART_EQNS, k + 1),
                    key=lambda c: (_lazy_bytes_across(eqns[start:c], c + offset, fusable, last_read), -c),
                )
        if cut is not None:
            parts.append(eqns[start:cut])
            start, k, reach = cut, cut, -1
            continue
        reach = max([reach] + [last_read.get(o.id, -1) for o in eqns[k].outs if o.id in fusable])
        k += 1
    return parts + [eqns[start:]] if eqns else parts


def _lazy_bytes_across(run: list[Eqn], cut: int, fusable: set[int], last_read: dict[int, int]) -> int:
    """Bytes of the lazy values that `run` makes and equations from `cut` on read."""
    return sum(o.type.nbytes for e in run for o in e.outs if o.id in fusable and last_read.get(o.id, -1) >= cut)


def _repeats(eqns: list[Eqn], lazy_reach: list[int]) -> list[tuple[int, int, int]]:
    """(start, period, count) of the runs of equations that repeat, in order and apart: `count`
    times the same `period` equations (the same part_key), PART_EQNS // 2 equations or more in
    all, cut where no lazy value made by the `period` equations before the cut is read after it
    (lazy_reach: the last reader of each equation's lazy value)."""
    numbers: dict = {}  # each token as a small number: compared many times, at one hash each
    tokens = [numbers.setdefault(_token(e), len(numbers)) for e in eqns]
    n, found = len(eqns), []
    for period in range(MIN_PERIOD, min(MAX_PART_EQNS, n // 2) + 1):
        k = 0
        while k < n - period:  # a stretch where tokens[k] == tokens[k + period] repeats them
            if tokens[k] != tokens[k + period]:
                k += 1
                continue
            start = k
            while k < n - period and tokens[k] == tokens[k + period]:
                k += 1
            if k - start >= period:
                found.append((start, k + period, period))
    found.sort(key=lambda r: (r[0] - r[1], r[2]))  # the longest first, then the shortest period

    def clean(cut: int, period: int) -> bool:
        return max(lazy_reach[max(cut - period, 0) : cut], default=-1) < cut

    taken: list[tuple[int, int, int]] = []
    for lo, hi, period in found:
        best = (0, 0)
        for start in range(lo, lo + period):  # the first start that gives the most clean cuts
            count = (hi - start) // period
            if count > best[1] and all(clean(start + j * period, period) for j in range(count + 1)):
                best = (start, count)
        start, count = best
        end = start + count * period
        if count < 2 or count * period < PART_EQNS // 2 or any(start < s + p * c and s < end for s, p, c in taken):
            continue
        key = part_key(eqns[start : start + period])
        if all(part_key(eqns[start + j * period : start + (j + 1) * period]) == key for j in range(1, count)):
            taken.append((start, period, count))
    return sorted(taken)


def _token(e: Eqn):
    """What two equations that repeat one another have alike (what part_key compares, but
    for the values they read and make): cheap to compare, and equal when their keys are."""
    params = []
    for k, v in e.params.items():
        try:
            hash(v)
        except TypeError:
            v = type(v).__name__
        params.append((k, v if not isinstance(v, Body) else "body"))
    return e.prim.name, tuple(x.type for x in e.inputs), tuple(o.type for o in e.outs), tuple(params)


def part_key(eqns: list[Eqn]) -> str:
    """The text of a part whose values are named by first appearance, its inputs first: two
    parts with the same key compute the same from their inputs, and may be one function."""
    made = {o.id for e in eqns for o in e.outs}
    ins = list({x.id: x for e in eqns for x in e.inputs if x.id not in made}.values())
    return body_text(Body(ins, eqns, []), "part")


def _part_keys(parts: list[list[Eqn]]) -> list[str]:
    """Each part's part_key, or for a part whose equations' tokens no other part has, a key of
    its own: no other part could have its text (printing a part with a loop's long body took
    a twentieth of diffc's own time for the reverse model's training step)."""
    tokens = [tuple(_token(e) for e in eqns) for eqns in parts]
    count: dict[tuple, int] = {}
    for t in tokens:
        count[t] = count.get(t, 0) + 1
    return [part_key(eqns) if count[t] > 1 else f"part {k}" for k, (eqns, t) in enumerate(zip(parts, tokens))]


def _lower_parts(ms: ModuleState, f: Func, fn: ir.Function, parts: list[list[Eqn]]):
    """The entry function f as a call of one internal, never inlined function per part of its
    body, each given the values it reads and computing the ones read after it; the parts of
    one part_key are one function (See Note [Repeated parts])."""
    em = Emitter(ms, fn, f.span, external_arena=True)
    args, destinations = params_and_destinations(em, f, fn)
    env = dict(zip(f.body.params, args))
    read_after: set[Var] = set(f.body.outs)  # the values read after the part being lowered
    needed = []
    for eqns in reversed(parts):
        needed.append(set(read_after))
        made = {o for e in eqns for o in e.outs}  # (a view may be made again by a later part)
        read_after.update(x for e in eqns for x in e.inputs if x not in made)
    keys = _part_keys(parts)
    results: dict[str, set[int]] = {}  # key -> the values of its parts read after any of them
    for eqns, later, key in zip(parts, reversed(needed), keys):
        made = [o for e in eqns for o in e.outs]
        results.setdefault(key, set()).update(j for j, o in enumerate(made) if o in later)
    shared: dict[str, ir.Function] = {}
    part_arena = 0
    for k, (eqns, key) in enumerate(zip(parts, keys)):
        made = [o for e in eqns for o in e.outs]
        ins = list(dict.fromkeys(x for e in eqns for x in e.inputs if x not in made))
        outs = [made[j] for j in sorted(results[key])]
        pfn = shared.get(key)
        if pfn is None:
            part = Func(f"{f.name}.part{k}", Body(ins, eqns, outs), f.span)
            pfn = declare_func(ms, part, f"dfl.{part.name}")
            pfn.attributes.add("noinline")
            sites, prints = len(ms.sites), len(ms.prints)
            part_arena = max(part_arena, _lower_func(ms, part, pfn, external_arena=True).arena_size)
            # a part that can fail names its own lines in the message: it is not shared
            if len(ms.prints) == prints and all(s.kind == ERR_INTERRUPT for s in ms.sites[sites:]):
                shared[key] = pfn
        # a value wanted in an output buffer but read by a later part (a reshape's operand, a
        # loop's initial carry) gets its own: a part's inputs and outputs must not overlap
        homes = [
            em.alloca(mem_type(o.type.dtype))
            if o.type.rank == 0
            else (destinations.get(o.id) if o in f.body.outs else None) or em.alloc(o.type)
            for o in outs
        ]
        ptrs = [h.ptr if isinstance(h, Arr) else h for h in homes]
        values = [env[x] if x.type.rank == 0 else em.base_ptr(em.materialise(env[x])) for x in ins]
        em.b.call(pfn, [em.ctx] + ptrs + values)
        em.check_failed()
        env.update((o, h if isinstance(h, Arr) else em.load_scalar_ptr(h, o.type.dtype)) for o, h in zip(outs, homes))
    # the parts run one after another: they share the start of the arena, the entry's own
    # buffers (the parts' results) follow
    em.arena_offset = (part_arena + 63) // 64 * 64
    finish_func(em, f, fn, [env[o] for o in f.body.outs])
    ms.entry_arena = em.arena_offset + em.arena_size
    if not any(isinstance(i, ir.PhiInstr) for blk in fn.blocks for i in blk.instructions):
        glue(fn)  # calls of the parts and nothing else (no loop: no copy of 256 bytes or less)


# A module of more lines of LLVM IR than UNITS_ABOVE is given to LLVM as UNITS modules, optimised
# and code-generated at the same time, in this process and in the LLVM worker process
# (See Note [Units])
UNITS_ABOVE = 1500
UNITS = 2


def module_units(module: ir.Module, units: int = UNITS) -> list[str]:
    """The LLVM IR text of the module, as one text, or as `units` texts of about the same size
    when it is long and has functions that may be compiled apart (the parts of a long entry
    function, which are never inlined, and the glue of diffc_pycall): the first unit holds the
    other functions, each function is defined in one unit and declared in the others that
    call it, each global variable likewise, and the metadata is in all of them."""
    texts = {name: str(v) for name, v in module.globals.items()}
    defined = [n for n, v in module.globals.items() if _is_definition(v)]
    if sum(texts[n].count("\n") + 1 for n in defined) <= UNITS_ABOVE:
        return [str(module)]
    weight = {n: _weight(module.globals[n], texts[n]) for n in defined}
    movable = sorted((n for n in defined if _movable(module.globals[n])), key=lambda n: -weight[n])
    unit_of = {n: 0 for n in defined}
    loads = [sum(weight[n] for n in defined if n not in movable)] + [0] * (units - 1)
    for n in movable:  # the heaviest first, each into the lightest unit
        k = loads.index(min(loads))
        unit_of[n], loads[k] = k, loads[k] + weight[n]
    if max(unit_of.values()) == 0:
        return [str(module)]
    refs = {n: set(_REFERENCE.findall(texts[n])) for n in defined}  # the globals each one names
    shared = {
        n for n in defined if any(_name(module.globals[n]) in refs[m] for m in defined if unit_of[m] != unit_of[n])
    }
    head = [f'; ModuleID = "{module.name}"', f'target triple = "{module.triple}"']
    head += [f'target datalayout = "{module.data_layout}"']
    head += [t.get_declaration() for t in module.get_identified_types().values()]
    named = module.namedmetadata.items()
    metadata = [f"!{k} = !{{ {', '.join(o.get_reference() for o in v.operands)} }}" for k, v in named]
    metadata += [str(md) for md in module.metadata]
    out = []
    for k in range(max(unit_of.values()) + 1):
        body = []
        for name, v in module.globals.items():
            # a declaration, or a weak_odr definition that each unit has its own copy of (the
            # vector variants of lower/vmath.py's _libm_pure, which each unit's vectoriser must
            # find: they are named in an attribute only)
            if name not in unit_of or v.linkage == "weak_odr":
                body.append(texts[name])
            elif unit_of[name] == k:
                body.append(_external(v, texts[name]) if name in shared else texts[name])
            elif name in shared:
                body.append(_declaration(v, texts[name]))
        out.append("\n".join(head + body + metadata))
    return out


# lines of IR that LLVM takes as long for as for a loop (See Note [Units])
LOOP_LINES = 40


def _weight(v, text: str) -> int:
    """About how long LLVM takes for a function or global variable, in lines of plain IR: glue
    (no optimiser, no vectorisers) a quarter of its lines, a function its lines and LOOP_LINES
    per loop (its phis, the counters of its loops and their carried values), which the loop
    passes and the vectoriser work on (See Note [Units])."""
    lines = text.count("\n") + 1
    if "noimplicitfloat" in getattr(v, "attributes", ()):
        return lines // 4
    return lines + LOOP_LINES * text.count(" = phi ")


_REFERENCE = re.compile(r'@("(?:[^"\\]|\\.)*"|[-\w.$]+)')


def _name(v) -> str:
    """A global's name as _REFERENCE finds it in the text."""
    return v.get_reference()[1:]


def _is_definition(v) -> bool:
    if isinstance(v, ir.Function):
        return bool(v.blocks)
    return v.initializer is not None


def _movable(v) -> bool:
    """A function that may be compiled in a unit of its own: no caller could inline it."""
    return isinstance(v, ir.Function) and ("noinline" in v.attributes or v.name == pyentry.PYCALL_SYMBOL)


def _external(v, text: str) -> str:
    """The definition of a function or global variable, visible from the other units."""
    if v.linkage in ("internal", "private"):
        return text.replace(f" {v.linkage} ", " ", 1)
    return text


def _declaration(v, text: str) -> str:
    """What another unit needs to refer to a function or global variable defined apart."""
    if isinstance(v, ir.Function):
        return re.sub(r"^define (?:internal |private )?", "declare ", text.split("\n", 1)[0])
    return f"{v.get_reference()} = external {'constant' if v.global_constant else 'global'} {v.value_type}"


def _depth_guard(em: Emitter, f: Func):
    """A recursive function fails at entry when it is nested more than MAX_DEPTH deep, or when
    its frame is below ctx[CTX_STACK], near the end of the thread's native stack (frames grow
    down; an unsigned compare, so that a limit of 0 never fails)."""
    b = em.b
    p = em.ctx_ptr(CTX_DEPTH)
    depth = b.add(b.load(p, typ=I64), em.i64(1))
    b.store(depth, p)
    em.fail_if(b.icmp_signed(">", depth, em.i64(MAX_DEPTH)), Site(f.span, ERR_DEPTH, f.name), depth, em.i64(MAX_DEPTH))
    frame = b.ptrtoint(em.alloca(I8, "frame"), I64)
    limit = b.load(em.ctx_ptr(CTX_STACK), typ=I64)
    em.fail_if(b.icmp_unsigned("<", frame, limit), Site(f.span, ERR_STACK, f.name), depth)


def _lower_entry(ms: ModuleState, f: Func, target: ir.Function, records: bool):
    fn = ir.Function(ms.module, ir.FunctionType(VOID, [PTR, PTR, PTR]), ENTRY_SYMBOL)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx, ins, outs = fn.args

    def slot(arr, k):
        return b.load(b.gep(arr, [ir.Constant(ir.IntType(64), k)], source_etype=PTR), typ=PTR)

    args = []
    for k, p in enumerate(f.body.params):
        ptr = slot(ins, k)
        if p.type.rank == 0:
            v = b.load(ptr, typ=mem_type(p.type.dtype))
            args.append(b.trunc(v, ir.IntType(1)) if p.type.dtype.name == "BOOL" else v)
        else:
            args.append(ptr)
    start_interrupts(b, ms.module, ctx)
    entered = enter_float_mode(b, ms.module)
    b.call(target, [ctx] + [slot(outs, k) for k in range(len(f.body.outs))] + args)
    leave_float_mode(b, ms.module, entered)
    if records:
        free_records_left(b, ms.module, ctx)
    b.ret_void()


# Note [Parts]
# ~~~~~~~~~~~~
# LLVM's optimiser takes time that grows faster than the function it optimises: a program
# written out at length (an MLP of L layers, its gradient) was one function, dfl.main, whose
# O2 pipeline took 0.33 CPU s for 4 layers and 5.4 s for 32 (about 400 lines of IR a layer;
# every loop pass grew alike, alias scopes or not). So an entry function of more than
# SPLIT_ABOVE top-level equations is lowered as a chain of internal `noinline` functions,
# dfl.main.part0, part1, ..., each of PART_EQNS equations or more, called one after another
# by dfl.main: each is optimised on its own and the whole grows linearly (32 layers in 3.1 s,
# 64 in 6.7). A part takes the values it reads as arguments and writes the values read after
# it through output pointers (the native ABI): into the entry's output buffers when they are
# the entry's results, else into buffers of the entry's arena. The parts run in turn and leave
# nothing in their temporaries, so their arenas share the start of the entry's arena and the
# entry's own buffers come after the largest. A cut falls between a fused (lazy) value and
# its reader only when a part has grown to MAX_PART_EQNS without a better place (a value
# recomputed where it is read, read again far later: the convolution's output in the training
# step of examples/digits/convnet.dfl, read by the ReLU and by its gradient, held 302
# equations, half the module's IR, in one part); the value is then computed into a buffer by
# the part that makes it, as a part's result is. That cut is the one, from PART_EQNS
# equations on, that computes the fewest bytes into buffers: in a transformer block's
# value-and-grad (b8 t256 d256), whose layer norm's output is read again by the backward, the
# cut at MAX_PART_EQNS fell inside GELU's derivative, whose two terms, [2048, 1024] each, were
# written by one part and added by the next; the cheapest cut crosses one [8, 256, 256] value
# and made the value-and-grad 2-4% faster (f32, in turns). So no loop nest is split by a cut; a strided
# view read across a cut is copied into a contiguous buffer. A failure in a part is left in
# ctx, and dfl.main leaves after the call as after any call. Programs of SPLIT_ABOVE equations or fewer (every
# benchmark workload) are lowered as one function, as before.


# Note [Views across parts]
# ~~~~~~~~~~~~~~~~~~~~~~~~~
# Each value that a part of a long body makes and a later part reads is written into a buffer
# of its own, which the later part is given. A value computed by its op straight into that
# buffer costs nothing more; a view of another value (a reshape, a transpose, a broadcast) was
# copied there, and so was the result of an elementwise op, computed into a buffer of its own:
# in the value-and-grad of a transformer block (b8 t128 d128 f64), 7 copies of a MiB per call
# (the reshapes of the layer's input and of the projections' sums, the residual sums) and the
# transposes of the weights, made into [128, 128] buffers and copied. The view is now made by
# each part that reads it, from its operand, which crosses instead: a value computed into its
# buffer, or the body's input as it is (a transposed weight is then read by its product in
# place); an elementwise result of the function is computed into its output buffer
# (Emitter.own_outs; not in a loop body's function, whose outputs may be a sum's running
# total). The block's value-and-grad went 37.6-39.2 -> 37.0-37.8 ms, attention's 12.1-12.6 ->
# 11.9-12.0 ms (min of 3 s, in turns). A reshape of a strided view is a copy, not a view
# (`copies_strided`): it crosses in its buffer instead of being copied again where it is read
# (attention's heads, split from the projections for the forward's map and read again by
# its backward: three copies of [b, t, d] a call).

# Note [Repeated parts]
# ~~~~~~~~~~~~~~~~~~~~~~
# A network written out layer by layer repeats itself: the forward of each layer is the same
# equations on values of the same types, and so is the backward of each. Lowered as parts of
# PART_EQNS equations, each part was new code for LLVM, and the compile grew with the layers
# (32 layers of an MLP's value_and_grad: 2.0 s). body_parts finds runs that repeat: equations
# whose tokens (primitive, parameters, types) repeat with a period of MIN_PERIOD to
# MAX_PART_EQNS, at least twice and PART_EQNS // 2 equations in all, cut where no lazy value
# is read across (the phase of the cuts chosen for it); each repetition is a part, and
# _lower_parts lowers the parts of one part_key (the part's text, its values named by first
# appearance) as one function, called once per part. Its results are the values any of those
# parts has read after it (z3 of the third layer, read again at the end, is computed by every
# layer's call), each call writing them to buffers of its own. A part whose code can fail
# (a bounds check, an allocation) or print is not shared: the failure site and the print label
# are compiled into it, and each repetition must name its own line. 32 layers: 2.0 -> 0.66 s,
# most of what is left being diffc_pycall; the machine code of a part is that of the same
# equations in any part, so the program runs as fast.


# Note [Glue functions]
# ~~~~~~~~~~~~~~~~~~~~~
# diffc_pycall only checks and passes values: it was a branch per argument, dimension and result,
# 5000 lines of IR for the 65 arrays of an MLP of 32 layers (now calls of a helper per kind of
# argument, See Note [Argument helpers] in lower/pyentry.py). LLVM's SLP vectoriser found nothing
# to pack in it and took most of its optimisation time (that diffc_pycall: 0.60 s of optimiser,
# 0.24 s without it, the same object code). Glue is now not optimised at all (`optnone`, which
# needs `noinline`; `noimplicitfloat` keeps vector registers out of the copies the code
# generator makes): diffc_pycall, its helpers, and dfl.main when it is only the calls of its
# parts (Note [Parts]; no loop in it). The 32-layer MLP's LLVM time: 0.194 -> 0.147 CPU s (pycall
# 0.024 of it, dfl.main's 857 lines 0.026); a direct call 1-2 ns slower of about 100.
# A function inlined into glue would not be optimised either (a small entry Func is inlined
# into its callers), so glue's calls of the functions of the module are marked `noinline`: the
# entry Func is compiled once, with the whole pipeline, and the glue calls it. diffc_entry (the
# ctypes path) is a tenth of its size and keeps the whole pipeline, the entry Func inlined into
# it as before.


# Note [Units]
# ~~~~~~~~~~~~
# llvmlite runs LLVM under one process-wide lock, so LLVM's work on one module cannot be spread
# over threads; the LLVM worker process (lower/llvm_worker.py) can take a share of it. A long
# module (UNITS_ABOVE lines of IR: the training step of every example, examples/mlp.dfl's main,
# an MLP written out with 8 layers or more) is given to LLVM as two units: the functions no
# caller can inline (the parts of Note [Parts], and diffc_pycall) are spread to balance the
# units' weights, the rest stays in the first unit (a benchmark workload's module, which has
# no parts, sends only diffc_pycall's glue to the second). A function's weight (_weight) is its
# lines of IR and LOOP_LINES more per phi (a loop's counter or carried value): a loop costs LLVM
# more than straight code (the loop passes, the vectoriser and the code it makes); glue counts
# a quarter of its lines (it is not optimised: diffc_pycall takes 0.045 ms a line, the parts
# 0.1-0.25). Weighed by lines alone, with glue at half, the worker's unit was the heavier by
# 10-60% on every example's training step, and it starts later (LLVM CPU of each unit alone,
# on a loaded machine: convnet 0.36 + 0.45 s, vae 0.16 + 0.28, reverse 0.38 + 0.50); with the
# loops counted, 0.38 + 0.38, 0.23 + 0.21 and 0.36 + 0.44 (the reverse model's two long loop
# bodies, one function each, cannot be split further). At 3000 lines, examples/mlp.dfl's
# main (2800) was one unit, 0.86-0.93 s wall on a loaded machine, 0.62-0.66 as two. Each unit is optimised
# and code-generated on its own, the first here and the second by the worker at the same time
# (lower/jit.py, object_code_units), and the runtime loads both objects into one engine, which
# links their calls. The worker is started when specialisation finds a long entry, so that its
# start (0.15-0.2 s on a loaded machine: Python, llvmlite's library, diffc's modules) overlaps
# lowering; the second unit is sent once it has started (its first byte says so), and if this
# process is done with the first unit before that, it compiles the second too: it is then
# done sooner than a worker still starting would be (the 8-layer MLP's lowering takes less),
# and does not wait for it. What a function refers to in another unit (a part's definition,
# dfl.main called by diffc_pycall, the globals of diffc_pycall) is external there and declared
# here; the optimiser could not inline across those calls anyway. Each part is optimised exactly as
# in one module; what is lost is what LLVM infers about a callee it sees (that a part reads
# only its inputs), which dfl.main, a sequence of calls, has no use for.
