"""Long loop bodies lowered as functions of their own, called once per iteration, so that LLVM
optimises each on its own (See Note [Loop functions])."""

from __future__ import annotations

from dataclasses import replace

from llvmlite import ir

from ..ir.core import Body, Func
from ..ir.walk import all_eqns
from ..source import Span
from .emit import ERR_INTERRUPT, PTR, Arr, Emitter, callable_anywhere, mem_type
from .llvm import chained_destinations, declare_func, finish_func, params_and_destinations

# a loop body of MIN_EQNS equations or more (its inner bodies' included) is lowered as a
# function, which is kept when it has more than LONG_LINES lines of LLVM IR (its own, without
# its inner bodies' functions), else dropped, the body lowered inline
MIN_EQNS = 32
LONG_LINES = 1050
FIRST_OUT = 2  # the arguments of a body's function: ctx, its arena, its outputs, its params


def body_function(
    em: Emitter, body: Body, span: Span, after=None, key: Body | None = None, carries: dict | None = None
) -> BodyFunction | None:
    """The function of a long loop body, or None for a body lowered inline, decided once per
    `key` (the loop's own body, of which `body` may be a form made for lowering): the same body
    lowered again (in a body lowered inline after all) calls the same function. after,
    carries: as BodyFunction's."""
    ms = em.m
    key = body if key is None else key
    known = ms.loop_functions.get(id(key))
    if known is not None:
        return known[1]
    fn = None
    if sum(1 for _ in all_eqns(body)) >= MIN_EQNS:
        before = set(ms.module.globals)
        fn = BodyFunction(em, body, span, after, carries or {})
        if fn.lines <= LONG_LINES:
            _drop(ms, set(ms.module.globals) - before)
            fn = None
    ms.loop_functions[id(key)] = (key, fn)  # (the body kept alive: its id names no other)
    return fn


def _drop(ms, names: set[str]):
    """Remove the functions defined as `names` from the module (a body's function found short,
    its parallel pieces), but for the kept functions of its inner bodies and what they made;
    the declarations, global variables and the module's own functions (named `diffc...`: the
    copy loop, libm's wrappers) stay: a kept function may use them, and one with a name of its
    own, such as the print base or the copy loop, is looked up by name; what nothing reads
    costs LLVM nothing."""
    kept = {n for _, fn in ms.loop_functions.values() if fn is not None for n in fn.made}
    for name in names - kept:
        v = ms.module.globals[name]
        if isinstance(v, ir.Function) and v.blocks and not name.startswith("diffc"):
            del ms.module.globals[name]


def _lines(v) -> int:
    """The lines of LLVM IR of a function's definition (0 for anything else)."""
    if not isinstance(v, ir.Function):
        return 0
    return sum(1 + len(blk.instructions) for blk in v.blocks)


def loop_body_lowering(em: Emitter, body: Body, span: Span):
    """args -> the results of one run of a loop's body (in memory or registers): a call of
    its function when it is long, else its equations lowered where the run is."""
    fn = body_function(em, body, span)
    if fn is None:
        return lambda args: em.lower_body(body, args)
    return lambda args: fn.call(em, args)


class BodyFunction:
    """A loop body as an internal, never inlined function: void f(ctx, arena, outs..., params...)
    with the native ABI of lower/llvm.py otherwise. Its temporaries come from `arena`, which
    the caller carves out of its own (the iterations run in turn: every call reuses it)."""

    def __init__(self, em: Emitter, body: Body, span: Span, after=None, carries: dict | None = None):
        """after(inner, params, results) -> results: what the function does with its lowered
        results before they are stored, in its Emitter `inner` (a scan marks its reassociated
        sums there, and adds its accumulators' terms); a result None is no result.
        carries: result k -> param j for the array carries the loop updates in place (Slots'
        `inplace`): the caller's buffer is passed, the body may update it there (an inner
        loop adopts it), and when it does, result k is that buffer, not written anywhere."""
        ms = em.m
        self.body = body
        before = set(ms.module.globals)
        f = Func(em.name, body, span)
        self.fn = declare_func(ms, f, ms.module.get_unique_name(f"{em.fn.name}.loop"), FIRST_OUT)
        self.fn.attributes.add("noinline")
        sites, prints = len(ms.sites), len(ms.prints)
        inner = Emitter(ms, self.fn, span, arena_arg=self.fn.args[1])
        args, destinations = params_and_destinations(inner, f, self.fn, FIRST_OUT)
        carries = {k: j for k, j in (carries or {}).items() if body.params[j].type.rank}
        for k, j in carries.items():
            args[j] = replace(args[j], owned=True)
            destinations.pop(body.outs[k].id, None)  # (its inner loop adopts the carry instead)
        inner.destinations = chained_destinations(body, destinations)
        outs = inner.lower_body(body, args, lazy_outs=True)
        if after is not None:
            outs = after(inner, args, outs)
        # results left in their carry's buffer: not written (the output's pointer is not used)
        self.in_place = {k: j for k, j in carries.items() if isinstance(outs[k], Arr) and outs[k].ptr is args[j].ptr}
        self.unused = {k for k, v in enumerate(outs) if v is None}
        finish_func(inner, f, self.fn, outs, FIRST_OUT, skip=set(self.in_place) | self.unused)
        self.arena = inner.arena_size
        self.made = set(ms.module.globals) - before  # what its lowering defined (and declared)
        nested = {
            n for _, fn in ms.loop_functions.values() if fn is not None and fn.fn.name in self.made for n in fn.made
        }
        # its lines of IR and its parallel loops' (See Note [Parallel loops] in lower/emit.py)
        self.lines = sum(_lines(ms.module.globals[n]) for n in self.made - nested)
        safe = ms.kernels | ms.thread_safe
        calls_safe = all(
            callable_anywhere(i.callee.name, safe)
            for blk in self.fn.blocks
            for i in blk.instructions
            if isinstance(i, ir.CallInstr) and isinstance(i.callee, ir.Function)
        )
        kinds = {s.kind for s in ms.sites[sites:]}
        # a call of another function of the program (a recursive one) may fail too
        self.fails = bool(kinds) or not calls_safe
        self.interrupt_only = calls_safe and kinds <= {ERR_INTERRUPT}
        if self.interrupt_only and len(ms.prints) == prints:
            ms.thread_safe.add(self.fn.name)  # (it writes nothing but its outputs and arena)

    def call(self, em: Emitter, args: list, dests: dict | None = None) -> list:
        """The body's results for these lowered arguments, computed by a call from em: an
        array result into dests[k] when that is a contiguous view (returned as it is), else
        into a fresh buffer of em's arena; a scalar one through a slot of em's frame. After a
        failure in the body, em leaves (the message names the body's line)."""
        homes = []
        for k, o in enumerate(self.body.outs):
            dest = (dests or {}).get(k)
            if k in self.unused:
                homes.append(None)
            elif k in self.in_place:
                homes.append(args[self.in_place[k]])
            elif o.type.rank == 0:
                homes.append(em.alloca(mem_type(o.type.dtype)))
            else:
                homes.append(dest if dest is not None and dest.contiguous else em.alloc(o.type))
        ptrs = [
            ir.Constant(PTR, None) if k in self.in_place or h is None else em.start_ptr(h) if isinstance(h, Arr) else h
            for k, h in enumerate(homes)
        ]
        values = [v if p.type.rank == 0 else em.start_ptr(em.materialise(v)) for p, v in zip(self.body.params, args)]
        # (carved where the call is: in a parallel loop's piece, from the piece's own scratch)
        arena = em.alloc_bytes(self.arena) if self.arena else ir.Constant(PTR, None)
        em.b.call(self.fn, [em.ctx, arena, *ptrs, *values])
        if self.fails:
            em.check_failed(self.interrupt_only)
        return [
            h if h is None or isinstance(h, Arr) else em.load_scalar_ptr(h, o.type.dtype)
            for h, o in zip(homes, self.body.outs)
        ]


# Note [Loop functions]
# ~~~~~~~~~~~~~~~~~~~~~
# LLVM's time grows faster than the function it optimises, and the parts of a long entry (Note
# [Parts] in lower/llvm.py) cannot cut a loop: the training step of examples/ode/fit.py, a map
# over trajectories of an RK4 scan and its backward, was one part of 3,053 lines of IR, 0.45 s
# of LLVM's CPU alone. So the body of a map, a scan, a while (its condition too) or a while's
# tapes is lowered as an internal `noinline` function of its own, called once per iteration,
# when it is long: LLVM optimises it apart, and module_units spreads such functions over the
# units like parts. Nested loops give nested functions.
#
# Long is measured, not estimated: equations say little of the IR (a scan body of 39
# equations on matrices gave 879 lines, one of 83 on numbers 91). A body of MIN_EQNS
# equations or more (inner bodies included) is lowered as a function, which is kept if it has
# more than LONG_LINES lines (its own and its parallel pieces', not its inner bodies'
# functions); else its definitions are dropped from the module and the body is lowered inline
# as before (the inner bodies' functions it made are kept, and called from there: the choice is
# made once per body, ms.loop_functions). LONG_LINES is above every benchmark workload's
# bodies (the largest, ode_rk4's backward scan, 704 lines), whose IR is unchanged, and the
# call has a cost: the reverse model's scan bodies (807-1,014 lines, 17 steps a sequence) as
# functions made its training step 5% slower, for no compile time (its two parts were already
# balanced over the units), so its map bodies (1,310 and 1,574 lines, once a sequence) are the
# functions. Kept in the examples: those and the ODE's two RK4 steps (1,071 and 1,337 lines).
#
# The function's ABI is the native one with an arena: void f(ctx, arena, outs..., params...).
# Its temporaries come from `arena`, carved from the caller's arena where the call is: the
# iterations run in turn and each reuses it, and inside a parallel map's piece the carving is
# one of the piece's arena loads, which parallel_range moves to the piece's own scratch (Note
# [Parallel loops] in lower/emit.py): every thread has its own. A body that can fail (a
# bounds check, an allocation, a call of a recursive function) leaves the failure in ctx, and
# the caller leaves after the call (check_failed) with the message of the body's line. A body
# that can fail only by Ctrl-C, prints nothing and calls only what any thread may call is in
# ms.thread_safe, and a parallel loop may call it: the caller's check says ERR_INTERRUPT again,
# which a piece may do.
#
# What the loop did around its body is done as before, without copies: the results are
# computed straight into a map's rows, a scan's spare carry buffers and the rows of its
# outputs; a carry updated in place (an accumulator, a cotangent threaded through inner loops)
# is passed as the caller's buffer, which the body updates there; and the function adds its
# accumulators' terms itself (loops.added), so that a term fused into its addition stays fused
# (as results, the ODE's weight gradients were computed into buffers and added by the caller:
# the step 12% slower). The values are those of the body inline: the examples' steps give the
# same bits, and so do bodies without matrix products whatever their loops
# (tests/lower/test_loop_functions.py); a product's dot sums may be reassociated by LLVM
# (prims/linalg.py, _madd) and can differ in the last bits with what LLVM sees around them.
