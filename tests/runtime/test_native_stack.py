"""Recursion that would overflow the native stack is a located RecursionDepthError, whatever
the stack: the main thread's under `ulimit -s`, a Python thread's of threading.stack_size, in
the ctypes path and the direct entry, forward and in gradients; recursion that fits still runs.
Each case runs in a process of its own (an overflow is a SIGSEGV)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# 9,999 nested calls, each with a 32-element array: about 4 MB of native stack
SOURCE = """
fn f(n, x) = if n == 0 { sum(x) } else {
    let y = x * 0.5 + 1.0;
    f(n - 1, y) + y[0]
}
fn main(n) = f(n, full([32], 1.0))
fn loss(x) = f(9999, full([32], x))
"""

SCRIPT = f"""
import threading
import diffc

m = diffc.compile({SOURCE!r}, name="deep.dfl")
dloss = diffc.grad(m.loss)


def outcome(call):
    try:
        return repr(call())
    except diffc.RecursionDepthError as e:
        return e.location + " " + e.message


def in_thread(mib, call):
    threading.stack_size(mib << 20)
    out = []
    t = threading.Thread(target=lambda: out.append(outcome(call)))
    t.start()
    t.join()
    return out[0]


calls = [lambda: m.main(9999), lambda: m.main(100), lambda: dloss(1.0)]
print("main", *[outcome(c) for c in calls], sep="\\n")  # makes the direct entries too
for mib in (4, 128):
    print(mib, *[in_thread(mib, c) for c in calls], sep="\\n")
print("main again", *[outcome(c) for c in calls], sep="\\n")
"""

OVERFLOW = "deep.dfl:2:1 recursion too deep: {} nested calls of `f` fill the native stack (is a base case missing?)"


def run_script() -> list[str]:
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def f(n: int) -> float:
    """What the program's f(n, full([32], 1.0)) computes (every element of y is equal)."""
    y, total = 1.0, 0.0
    for _ in range(n):
        y = y * 0.5 + 1.0
        total += y
    return total + 32 * y


def test_threads_and_the_main_thread():
    lines = run_script()
    fits = lines[1:4]
    assert float(fits[0]) == pytest.approx(f(9999)) and float(fits[1]) == pytest.approx(f(100)), fits
    assert float(fits[2]) > 0, fits
    assert lines[0] == "main" and lines[8] == "128" and lines[12] == "main again"
    assert lines[9:12] == fits and lines[13:16] == fits
    small = lines[4:8]
    assert small[0] == "4"
    for got in (small[1], small[3]):  # the forward recursion, and the gradient's
        depth = got.removeprefix("deep.dfl:2:1 recursion too deep: ").split()[0]
        assert got == OVERFLOW.format(depth) and 5000 < int(depth) < 9999, got
    assert small[2] == fits[1]


def test_cli_under_ulimit_s(tmp_path):
    """The command line runs the program on the compiler's thread, whose big stack does not
    depend on `ulimit -s`: 9,999 calls that overflow a 4 MiB main stack run to their value."""
    (tmp_path / "deep.dfl").write_text(textwrap.dedent(SOURCE))
    cmd = f"ulimit -s 4096; exec {sys.executable} -m diffc run deep.dfl --arg n=9999"
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) == pytest.approx(f(9999))
