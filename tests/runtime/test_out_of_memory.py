"""Out of memory is a located DiffcMemoryError that names the size, never a dereferenced NULL
(SIGSEGV): the arena of a native function, the tape of a `while` loop, the runtime's result
arrays and entry arena, and the direct entry's result arrays. Each case runs in a process of
its own whose address space is limited after compiling (llvmlite needs some), and the process
must live on: the next call works."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

LIMIT = 2 << 30  # bytes of address space once compiled: each case below asks for more

SOURCE = """
fn twice(x) = x * 2.0
fn big(x) = full([300000000], x)
fn arena(x) { let y = full([300000000], x); y[0] + y[1] + sum(y) }
fn f(n, x) = if n == 0 { x } else {
    let y = full([100000000], x);
    f(n - 1, x) + y[n] + y[2 * n]
}
fn rec(x) = f(3, x)
fn loop(x, n) {
    let s = while(fn(s) => s.i < n, fn(s) => {i: s.i + 1, y: sin(s.y) * 1.0001 + x}, {i: 0, y: full([64], x)});
    sum(s.y)
}
"""

SCRIPT = f"""
import resource
import numpy as np
import diffc

m = diffc.compile({SOURCE!r}, name="oom.dfl")
g = diffc.grad(m.loop)
m.big(1.0)  # compiled, and its direct entry made, while there is memory
expected = g(0.5, 10), m.twice(np.ones(2)).tolist()
resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}))
for name, call in [
    ("big", lambda: m.big(1.0)),
    ("big", lambda: m.big(1.0)),
    ("arena", lambda: m.arena(1.0)),
    ("rec", lambda: m.rec(1.0)),
    ("loop", lambda: g(0.5, 100000000)),
]:
    try:
        call()
        print(name, "no error")
    except diffc.DiffcMemoryError as e:
        print(e.location, e.message)
    assert (g(0.5, 10), m.twice(np.ones(2)).tolist()) == expected
"""


def test_out_of_memory_is_located_and_the_process_lives_on():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:4] == [
        "oom.dfl:3:1 out of memory: cannot allocate 2.4 GB for the result of `big`",  # the direct entry
        "oom.dfl:3:1 out of memory: cannot allocate 2.4 GB for the result of `big`",
        "oom.dfl:4:1 out of memory: cannot allocate 4.8 GB for the arrays of `arena`",  # the entry arena
        "oom.dfl:5:1 out of memory: cannot allocate 1.6 GB for the arrays of `f`",  # malloc per call
    ]
    # the tape's size when it fails depends on its record's layout
    tape = r"oom.dfl:11:13 out of memory: cannot allocate [\d.]+ GB for the tape of a `while` loop"
    assert re.fullmatch(tape, lines[4])
    assert len(lines) == 5


def test_cli_reports_out_of_memory(tmp_path):
    prog = tmp_path / "tape.dfl"
    prog.write_text(
        textwrap.dedent("""
        fn f(x) {
            let s = while(fn(s) => s.i < 100000000, fn(s) => {i: s.i + 1, y: sin(s.y) + x}, {i: 0, y: full([64], x)});
            sum(s.y)
        }
        fn main(x) = grad(f)(x)
        """)
    )
    cmd = f"ulimit -v {LIMIT >> 10}; exec {sys.executable} -m diffc run tape.dfl --arg x=0.5"
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    # (the size at which the tape's doubling fails depends on what else the process maps: its
    # threads' stacks, OpenBLAS's buffers)
    expected = r"tape.dfl:3:13: error: out of memory: cannot allocate [12]\.\d GB for the tape"
    assert re.match(expected, run.stderr), run.stderr


def test_out_of_memory_while_compiling_is_located(monkeypatch):
    """Python's MemoryError while the compiler runs (its IR, llvmlite's text of the module) is a
    DiffcMemoryError at the function compiled."""
    import diffc
    from diffc import api

    def no_memory(*args):
        raise MemoryError

    m = diffc.compile("fn f(x) = x * 2.0\n", name="c.dfl")
    monkeypatch.setattr(api, "compile_native", no_memory)
    try:
        m.f(1.0)
    except diffc.DiffcMemoryError as e:
        assert (e.location, e.message) == ("c.dfl:1:1", "out of memory while compiling `f`")
    else:
        raise AssertionError("no DiffcMemoryError")
