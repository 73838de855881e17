"""Long loop bodies lowered as functions of their own, called once per iteration, so that LLVM
optimises each on its own (See Note [Loop functions])."""

from __future__ import annotations

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
LONG_LINES = 800
FIRST_OUT = 2  # the arguments of a body's function: ctx, its arena, its outputs, its params


def body_function(em: Emitter, body: Body, span: Span, after=None, key: Body | None = None) -> BodyFunction | None:
    """The function of a long loop body, or None for a body lowered inline, decided once per
    `key` (the loop's own body, of which `body` may be a form made for lowering): the same body
    lowered again (in a body lowered inline after all) calls the same function."""
    ms = em.m
    key = body if key is None else key
    known = ms.loop_functions.get(id(key))
    if known is not None:
        return known[1]
    fn = None
    if sum(1 for _ in all_eqns(body)) >= MIN_EQNS:
        before = set(ms.module.globals)
        fn = BodyFunction(em, body, span, after)
        if fn.lines <= LONG_LINES:
            _drop(ms, set(ms.module.globals) - before)
            fn = None
    ms.loop_functions[id(key)] = (key, fn)  # (the body kept alive: its id names no other)
    return fn


def _drop(ms, names: set[str]):
    """Remove the definitions `names` from the module (a body's function found short, and what
    its lowering made), but for those of the inner bodies' functions that are kept; the
    declarations stay (a kept function may call them)."""
    kept = {n for _, fn in ms.loop_functions.values() if fn is not None for n in fn.owned}
    for name in names - kept:
        if _defines(ms.module.globals[name]):
            del ms.module.globals[name]


def _lines(v) -> int:
    """The lines of LLVM IR of a function's definition (0 for anything else)."""
    if not isinstance(v, ir.Function):
        return 0
    return sum(1 + len(blk.instructions) for blk in v.blocks)


def _defines(v) -> bool:
    return bool(v.blocks) if isinstance(v, ir.Function) else v.initializer is not None


def loop_body_lowering(em: Emitter, body: Body, span: Span, lazy_outs: bool = False, key: Body | None = None):
    """args -> the results of one run of a loop's body: a call of its function when it is
    long, else its equations lowered where the run is (`lazy_outs` as Emitter.lower_body's)."""
    fn = body_function(em, body, span, key=key)
    if fn is None:
        return lambda args: em.lower_body(body, args, lazy_outs)
    return lambda args: fn.call(em, args)


class BodyFunction:
    """A loop body as an internal, never inlined function: void f(ctx, arena, outs..., params...)
    with the native ABI of lower/llvm.py otherwise. Its temporaries come from `arena`, which
    the caller carves out of its own (the iterations run in turn: every call reuses it)."""

    def __init__(self, em: Emitter, body: Body, span: Span, after=None):
        """after(params, results): called on the lowered results before they are stored (a
        scan's reassociated sums mark the additions there)."""
        ms = em.m
        self.body = body
        before = set(ms.module.globals)
        f = Func(em.name, body, span)
        self.fn = declare_func(ms, f, ms.module.get_unique_name(f"{em.fn.name}.loop"), FIRST_OUT)
        self.fn.attributes.add("noinline")
        sites, prints = len(ms.sites), len(ms.prints)
        inner = Emitter(ms, self.fn, span, arena_arg=self.fn.args[1])
        args, destinations = params_and_destinations(inner, f, self.fn, FIRST_OUT)
        inner.destinations = chained_destinations(body, destinations)
        outs = inner.lower_body(body, args, lazy_outs=True)
        if after is not None:
            after(args, outs)
        finish_func(inner, f, self.fn, outs, FIRST_OUT)
        self.arena = inner.arena_size
        self.owned = set(ms.module.globals) - before  # what its lowering defined (and declared)
        nested = {
            n for _, fn in ms.loop_functions.values() if fn is not None and fn.fn.name in self.owned for n in fn.owned
        }
        # its lines of IR and its parallel loops' (See Note [Parallel loops] in lower/emit.py)
        self.lines = sum(_lines(ms.module.globals[n]) for n in self.owned - nested)
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
            if o.type.rank == 0:
                homes.append(em.alloca(mem_type(o.type.dtype)))
            else:
                homes.append(dest if dest is not None and dest.contiguous else em.alloc(o.type))
        ptrs = [em.start_ptr(h) if isinstance(h, Arr) else h for h in homes]
        values = [v if p.type.rank == 0 else em.start_ptr(em.materialise(v)) for p, v in zip(self.body.params, args)]
        # (carved where the call is: in a parallel loop's piece, from the piece's own scratch)
        arena = em.alloc_bytes(self.arena) if self.arena else ir.Constant(PTR, None)
        em.b.call(self.fn, [em.ctx, arena, *ptrs, *values])
        if self.fails:
            em.check_failed(self.interrupt_only)
        return [h if isinstance(h, Arr) else em.load_scalar_ptr(h, o.type.dtype) for h, o in zip(homes, self.body.outs)]


# Note [Loop functions]
# ~~~~~~~~~~~~~~~~~~~~~
# TODO
