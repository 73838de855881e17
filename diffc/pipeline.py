"""The compiler as a list of stages, from a loaded module to callable native code.

PASSES are the IR -> IR passes in order; their names drive `diffc show --ir --after NAME`."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import threading
import time

import llvmlite.binding as llvm

from .ir.verify import verify
from .lower import gemm, jit
from .lower.llvm import ENTRY_SYMBOL, SPLIT_ABOVE, lower_program, module_units
from .lower.pyentry import PYALLOCS_SYMBOL, PYCALL_SYMBOL, PYCTX_SYMBOL, PYSTACK_SYMBOL
from .optimise import accumulate, dce, guards, licm
from .prims.io import PRINT_BASE
from .pytree import flatten
from .runtime import cache, cache_format
from .runtime.call import NativeFunction, register_symbols
from .specialise import specialise_static, static_leaves, with_static
from .typesys import DType, TensorType

PASSES = [
    ("guards", guards.run),
    ("licm", licm.run),
    ("accumulate", accumulate.run),
    ("dce", dce.run),
]


def to_ir(module, fn_name: str, arg_types: tuple, after: str | None = None, transform: tuple = (), values=None):
    """Specialise and optimise: (Program, output TreeDef)."""
    prog, out_tree, _ = to_ir_static(module, fn_name, arg_types, after, transform, values)
    return prog, out_tree


def to_ir_static(module, fn_name: str, arg_types: tuple, after=None, transform: tuple = (), values=None):
    """to_ir, which also returns the signature specialised for: given the arguments' `values`,
    the int and bool arguments tracing needs at compile time are Static leaves of it."""
    prog, out_tree, arg_types = specialise_static(module, fn_name, arg_types, transform=transform, values=values)
    if os.environ.get("DIFFC_VERIFY"):
        verify(prog)
    for name, run in PASSES:
        if after == "specialise":
            break
        prog = run(prog)
        if os.environ.get("DIFFC_VERIFY"):
            verify(prog)
        if after == name:
            break
    return prog, out_tree, arg_types


_collection_lock = threading.Lock()
_compiling = 0  # compiles running with the collector off
_collector_was_on = False  # whether it was on when the first of them began


@contextlib.contextmanager
def no_cycle_collection():
    """Python's cycle collector off while a compile builds its IR and LLVM's (See Note [No cycle
    collection while compiling]), as it was when the last compile running leaves."""
    global _compiling, _collector_was_on
    with _collection_lock:
        if _compiling == 0:
            _collector_was_on = gc.isenabled()
            gc.disable()
        _compiling += 1
    try:
        yield
    finally:
        with _collection_lock:
            _compiling -= 1
            if _compiling == 0 and _collector_was_on:
                gc.enable()


# the stage of the collection of a compile's garbage in the time this process would wait for the
# LLVM worker (See Note [No cycle collection while compiling])
COLLECT_STAGE = "collect garbage (idle)"


class Timings(dict):
    def add(self, stage: str, t0: float) -> float:
        t = time.perf_counter()
        self[stage] = self.get(stage, 0.0) + (t - t0)
        return t


def compile_native(
    module, fn_name: str, arg_types: tuple, timings: Timings | None = None, transform: tuple = (), values=None
):
    """Compile `fn_name` (differentiated by `transform`, see specialise) for the argument
    types, or load it from the disk cache: (NativeFunction, output TreeDef). Given the flat
    arguments' `values`, int and bool arguments may be taken as compile-time values: the
    NativeFunction's `static` lists those leaves (its code is for their values only)."""
    timings = timings if timings is not None else Timings()
    t = time.perf_counter()
    k = cache.key(module, fn_name, arg_types, transform)
    register_symbols()
    found = cache.load(k)
    while values is not None and (leaves := _static_redirect(found, arg_types)) is not None:
        arg_types = with_static(arg_types, leaves, values)
        k = cache.key(module, fn_name, arg_types, transform)
        found = cache.load(k)
    loaded = _load_program(k, found)
    if loaded is not None:
        entry, compiled = loaded
        timings.add("load from cache", t)
    else:
        with no_cycle_collection():
            prog, out_tree, static_types = to_ir_static(module, fn_name, arg_types, transform=transform, values=values)
            if static_types != arg_types:  # remember, for the next process, which leaves became static
                label = json.dumps({"static": static_leaves(static_types)}).encode()
                cache.store(k, label, b"")
                arg_types, k = static_types, cache.key(module, fn_name, static_types, transform)
            t = timings.add("specialise+optimise", t)
            if len(prog.main.body.eqns) > SPLIT_ABOVE:  # a long module, likely compiled as units
                jit.start_worker()
            ms = lower_program(prog, out_tree)
            t = timings.add("lower", t)
            units = module_units(ms.module)
            t = timings.add("module text", t)
            kernels, sites, arena, prints = ms.kernels, ms.sites, ms.entry_arena, ms.prints
            del ms  # (its LLVM module is garbage now)

            def collect():  # See Note [No cycle collection while compiling]
                start = time.perf_counter()
                gc.collect(0)
                timings.add(COLLECT_STAGE, start)

            object_code = jit.object_code_units(units, timings, idle=collect)
        t = time.perf_counter()
        load_kernels(kernels)
        compiled = jit.Compiled(object_code=object_code)
        t = timings.add("load code", t)
        f = prog.main
        entry = cache_format.ProgramEntry(
            object=compiled.object,
            sites=sites,
            in_types=[p.type for p in f.body.params],
            out_types=[o.type for o in f.body.outs],
            arena=arena,
            prints=prints,
            out_tree=out_tree,
            kernels=sorted(kernels),
            span=f.span,
        )
        cache.store(k, cache_format.encode(entry), entry.object)
        timings.add("store in cache", t)
    native = NativeFunction(
        compiled, entry.sites, entry.in_types, entry.out_types, entry.arena, entry.prints, name=fn_name, span=entry.span
    )
    native.static = tuple(static_leaves(arg_types))
    return native, entry.out_tree


def _static_redirect(found, arg_types) -> list[int] | None:
    """The leaves a cache entry says must be static for this signature (an entry of no code
    that compile_native stores under the key of the signature as called), or None."""
    if found is None or not found[0].startswith(b'{"static"'):
        return None
    try:
        leaves = json.loads(found[0])["static"]
    except (ValueError, KeyError):
        return None
    types = flatten(arg_types)[0]
    ok = (
        isinstance(leaves, list)
        and leaves
        and all(isinstance(i, int) and 0 <= i < len(types) and types[i] in _STATIC_TYPES for i in leaves)
    )
    return leaves if ok else None


_STATIC_TYPES = (TensorType(DType.I64, ()), TensorType(DType.BOOL, ()))


def _load_program(k: str, found):
    """(ProgramEntry, Compiled) from the disk cache entry `found` of key k, or None; an entry
    found wrong (its metadata, or machine code without the symbols the runtime uses) is removed."""
    if found is None or found[0].startswith(b'{"static"'):
        return None
    try:
        entry = cache_format.decode(*found)
    except cache.Damaged:
        cache.remove(k)
        return None
    load_kernels(entry.kernels)
    try:
        compiled = jit.Compiled(object_code=entry.object)
    except ValueError:  # (a blob of several objects of the wrong size, jit.unpack_objects)
        cache.remove(k)
        return None
    needed = [compiled.address(ENTRY_SYMBOL)]
    if entry.prints:
        needed.append(compiled.global_address(PRINT_BASE))
    if compiled.address(PYCALL_SYMBOL):
        needed += [compiled.global_address(s) for s in (PYCTX_SYMBOL, PYALLOCS_SYMBOL, PYSTACK_SYMBOL)]
    if not all(needed):
        cache.remove(k)
        return None
    return entry, compiled


_KERNELS: dict[str, jit.Compiled] = {}  # the kernels loaded in this process, kept alive


def load_kernels(names) -> None:
    """Make the kernels a program calls (lower/gemm.py) callable by name: from the disk cache,
    or compiled once per process and cached on disk."""
    for name in names:
        if name in _KERNELS:
            continue
        k = cache.kernel_key(name)
        label = f'{{"kernel":"{name}"}}'.encode()
        found = cache.load(k)
        compiled = jit.Compiled(object_code=found[1]) if found is not None and found[0] == label else None
        if compiled is None or not compiled.address(name):
            if found is not None:
                cache.remove(k)
            compiled = jit.Compiled(gemm.optimised(name))
            cache.store(k, label, compiled.object)
        _KERNELS[name] = compiled
        llvm.add_symbol(name, compiled.address(name))


def llvm_text(module, fn_name: str, arg_types: tuple, values=None) -> tuple[str, str, str]:
    """(unoptimised LLVM IR, optimised LLVM IR, assembly) of one specialisation."""
    prog, _ = to_ir(module, fn_name, arg_types, values=values)
    ms = lower_program(prog)
    raw = str(ms.module)
    mod = jit.optimise(raw)
    return raw, str(mod), jit.assembly(mod)


# Note [No cycle collection while compiling]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# A compile makes hundreds of thousands of Python objects (the IR, llvmlite's instructions and
# their text), most of them alive until the module text is made. Each 700 allocations start a
# collection of the young objects, and every tenth of those an older one, which walks all that
# survived: with the cycle collector on, 150 collections took a third of diffc's own time for
# an MLP of 32 layers written out (0.10 of 0.30 s) and half for 64 layers (0.34 of 0.68 s,
# two full collections), more in a process with a large heap of its own. So compile_native
# turns it off from specialisation to the module text, and back on as it found it when the
# last compile running (several threads may compile at once) leaves; the objects made are
# then looked at once. llvmlite's objects refer to each other (a function to its module and
# back), so they are freed by a collection, not when the compile drops them. That collection
# (6-16 ms for the examples' training steps on a quiet machine, 20-50 on a loaded one: all the
# objects the compile made are young) came on the way to LLVM, before the units were handed
# out. A long module's compile now keeps the collector off until its object code is made, and
# drops its LLVM module once it has the units' text; when this process is done with its unit
# while the LLVM worker still compiles the other (the usual case: the worker starts on its
# unit a little later), it collects the young objects then, in time it would have spent
# waiting (lower/jit.py, object_code_units' idle; the stage COLLECT_STAGE of Timings).
