"""IR -> LLVM IR (an llvmlite ir.Module).

Native ABI of every lowered Func:  void f(ptr ctx, ptr out_0, ..., in_0, ...)
scalar inputs by value, array inputs as pointers to contiguous buffers, every output written
through a pointer. `diffc_entry(ptr ctx, ptr ins, ptr outs)` unpacks pointer arrays for the
runtime and calls the entry Func."""

from __future__ import annotations

from llvmlite import ir

from ..ir.core import Func, Program
from ..ir.walk import all_eqns
from ..pytree import TreeDef
from . import pyentry
from .emit import (
    CTX_DEPTH,
    CTX_STACK,
    ERR_DEPTH,
    ERR_STACK,
    I8,
    I64,
    PTR,
    VOID,
    Arr,
    Emitter,
    Site,
    contiguous_strides,
    free_records_left,
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


def lower_program(prog: Program, out_tree: TreeDef | None = None) -> ModuleState:
    """The program's LLVM module; with the output tree, also the direct entry for Python calls
    when the function takes numbers and arrays and returns them in tuples (lower/pyentry.py)."""
    ms = ModuleState(prog.entry)
    for name, f in prog.funcs.items():
        ftype = ir.FunctionType(
            VOID, [PTR] + [PTR] * len(f.body.outs) + [native_arg_type(p.type) for p in f.body.params]
        )
        fn = ir.Function(ms.module, ftype, f"dfl.{name}")
        fn.linkage = "internal"
        for a in fn.args[1:]:
            if isinstance(a.type, ir.PointerType):
                # outputs are fresh buffers and inputs are never written: no pointer aliases another
                # that is written, which lets LLVM vectorise loops without runtime overlap checks
                a.add_attribute("noalias")
        ms.funcs[name] = fn
    for name, f in prog.funcs.items():
        _lower_func(ms, f, ms.funcs[name], entry=name == prog.entry)
    recursive = any(f.recursive for f in prog.funcs.values())
    # tape records (of recursions and `while` loops) that a failure may leave behind
    records = any(e.prim.taped is not None for f in prog.funcs.values() for e in all_eqns(f.body))
    _lower_entry(ms, prog.main, ms.funcs[prog.entry], records)
    if pyentry.eligible(prog.main, out_tree, bool(ms.prints)):
        pyentry.lower_pycall(ms.module, prog.main, ms.funcs[prog.entry], out_tree, recursive, records)
    return ms


def _lower_func(ms: ModuleState, f: Func, fn: ir.Function, entry: bool = False):
    em = Emitter(ms, fn, f.span, recursive=f.recursive, external_arena=entry and not f.recursive)
    n_out = len(f.body.outs)
    if f.recursive:
        _depth_guard(em, f)
        em.poll_interrupt(f.span)
    args = []
    for p, a in zip(f.body.params, fn.args[1 + n_out :]):
        args.append(a if p.type.rank == 0 else Arr(a, em.i64(0), contiguous_strides(p.type.shape), p.type))
    em.destinations = {
        o.id: Arr(ptr, em.i64(0), contiguous_strides(o.type.shape), o.type)
        for o, ptr in zip(f.body.outs, fn.args[1 : 1 + n_out])
        if o.type.rank
    }
    outs = em.lower_body(f.body, args, lazy_outs=True)  # a fused result is computed straight into its output
    em.destinations = {}
    for o, v, ptr in zip(f.body.outs, outs, fn.args[1 : 1 + n_out]):
        if isinstance(v, Arr) and v.ptr is ptr:  # computed in place (a loop's carry)
            continue
        if o.type.rank == 0:
            em.store_scalar_ptr(ptr, o.type.dtype, v)
        else:
            em.copy_into(Arr(ptr, em.i64(0), contiguous_strides(o.type.shape), o.type), v)
    em.finish()
    if em.external_arena:
        ms.entry_arena = em.arena_size


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
    b.call(target, [ctx] + [slot(outs, k) for k in range(len(f.body.outs))] + args)
    if records:
        free_records_left(b, ms.module, ctx)
    b.ret_void()
