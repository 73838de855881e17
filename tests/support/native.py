"""Helpers that compile programs for tests: DFL text compiled once per source, and IR built
by hand with diffc.ir.build.Builder lowered and run as native code without the front end."""

from __future__ import annotations

import functools
import textwrap
import threading

import numpy as np
import pytest

import diffc
from diffc.ir.build import Builder
from diffc.ir.core import Func, Program
from diffc.ir.verify import verify


@pytest.fixture(autouse=True)
def restore_threads():
    """The runtime's count of threads as it was before the test (a module that imports this
    fixture gets it for each of its tests)."""
    before = diffc.get_threads()
    yield
    diffc.set_threads(before)


def on_each_count(fn, counts=(1, 2, 3)) -> list:
    """fn() with the runtime on each count of threads in turn; the count before is restored."""
    before = diffc.get_threads()
    try:
        results = []
        for n in counts:
            diffc.set_threads(n)
            results.append(fn())
        return results
    finally:
        diffc.set_threads(before)


def in_threads(target, args_each) -> None:
    """target(*args) on a Python thread of its own for each args of args_each, all at once;
    returns when every one has."""
    threads = [threading.Thread(target=target, args=args) for args in args_each]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@functools.cache
def module(source: str) -> diffc.Module:
    """diffc.compile(source), once per distinct text (compiled functions are cached per shape)."""
    return diffc.compile(textwrap.dedent(source))


def ir_of(mod: diffc.Module, fn: str, *args) -> Program:
    """The optimised IR of `fn` specialised to the types of `args` (Python/NumPy values)."""
    from diffc.pipeline import to_ir
    from diffc.pytree import unflatten
    from diffc.runtime.values import flatten_args, type_of

    arrays, tree = flatten_args(args)
    prog, _ = to_ir(mod.ast, fn, unflatten(tree, [type_of(a) for a in arrays]))
    return prog


def prim_names(prog: Program) -> set[str]:
    """The names of every primitive used anywhere in a program, nested bodies included."""
    from diffc.ir.walk import all_eqns

    return {e.prim.name for f in prog.funcs.values() for e in all_eqns(f.body)}


def build_program(param_types, build) -> Program:
    """A one-function Program: build(builder, *params) returns the output values."""
    b = Builder()
    params = [b.param(t) for t in param_types]
    outs = build(b, *params)
    body, captured = b.finish(list(outs))
    assert not captured
    return Program({"main": Func("main", body)}, "main")


def run_program(prog: Program, args) -> list[np.ndarray]:
    """Verify, lower, JIT-compile and run a hand-built Program on NumPy arguments."""
    from diffc.lower import jit
    from diffc.lower.llvm import lower_program
    from diffc.pipeline import load_kernels
    from diffc.runtime.call import NativeFunction, register_symbols

    verify(prog)
    body = prog.main.body
    register_symbols()
    ms = lower_program(prog)
    mod = jit.optimise(str(ms.module))
    load_kernels(ms.kernels)
    native = NativeFunction(jit.Compiled(mod), ms.sites, body.in_types, body.out_types, ms.entry_arena, ms.prints)
    arrays = [np.ascontiguousarray(a, dtype=p.type.dtype.np) for a, p in zip(args, body.params)]
    return native(arrays)
