"""Dropping compiled modules must not crash the process. A regression test, run in a
subprocess so that a crash cannot take pytest down: `llvm.create_mcjit_compiler` makes each
engine the owner of its TargetMachine, and when diffc shared one machine between all engines,
the first engine garbage-collected freed it and the next compile aborted the process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import gc, diffc
for i in range(3):
    m = diffc.compile('fn main() = 1.0 + 2.0')
    assert m.main() == 3.0
    del m
    gc.collect()
print("survived")
"""


def test_dropping_compiled_modules_does_not_crash():
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"exit status {r.returncode}\n{r.stderr[-2000:]}"
    assert "survived" in r.stdout


def test_an_engine_is_freed_with_its_compiled_code():
    """Without the cycle collector: nothing refers back to a Compiled from its engine (See Note
    [Freeing machine code] in lower/jit.py)."""
    import gc
    import weakref

    from diffc.lower import jit

    gc.disable()
    try:
        compiled = jit.Compiled(jit.optimise("define i64 @seven() {\n  ret i64 7\n}\n"))
        assert compiled.address("seven") and compiled.object
        engine = weakref.ref(compiled.engine)
        del compiled
        assert engine() is None
    finally:
        gc.enable()


# Memory over many compiles, in a subprocess (its RSS is its own): `case` compiles and runs
# new programs, or one function for ever new shapes (4 kept, or all); the growth per compile after a
# warm-up must stay far under what keeping each compile's engine cost (900 KB). What still
# grows, 75 to 95 KB per compile, is llvmlite's (See Note [Freeing machine code]).
RSS_PROBE = """
import gc, sys
import numpy as np
import diffc

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

def new_program(i):
    m = diffc.compile('fn f(x) { print("v", x); sum(x * 2.0) }')
    assert m.f(np.ones(3)) == 6.0

shapes = diffc.compile("fn f(x) = sum(x * 2.0 + 1.0)")
def new_signature(i):
    assert shapes.f(np.ones(i + 1)) == 3.0 * (i + 1)

case = {"programs": new_program, "signatures": new_signature, "kept": new_signature}[sys.argv[1]]
n, warm = int(sys.argv[2]), 20
for i in range(n):
    case(i)
    gc.collect()
    if i == warm - 1:
        start = rss_kb()
print("KB per compile", (rss_kb() - start) / (n - warm), file=sys.stderr)
"""


@pytest.mark.parametrize("case", ["programs", "signatures", "kept"])
def test_memory_per_compile_is_bounded(case):
    env = dict(os.environ, DIFFC_CACHE="0", DIFFC_MAX_SIGNATURES="1000" if case == "kept" else "4")
    r = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, case, "120"], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr[-2000:]
    per_compile = float(r.stderr.split("KB per compile")[-1])
    assert per_compile < 400, r.stderr[-500:]
