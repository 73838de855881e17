"""Ctrl-C interrupts native code (See Note [Interrupts] in lower/emit.py): the CLI exits 130
with one line, a Python call raises KeyboardInterrupt and the process stays usable, on the
direct entry and on the ctypes path. Each case runs in a subprocess that prints a marker
before its endless call; SIGINT is sent once the native loop runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = """
fn spin(n) = while(fn(x) => x != n, fn(x) => x + 1, 0)
fn fib(n) = if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
fn halve(x) = if x > 0.0 { iterate(fn(s) => s * 0.5 + x, x, 10000000000) } else { x }
fn halve_rows(v) = if v[0] > 0.0 { iterate(fn(s) => s * 0.5 + v, v, 10000000000) } else { v }
fn grow(x) = while(fn(s) => s > 1e-300, fn(s) => s * x, 1.0)
fn grow_then_spin(x, n) {
    let y = while(fn(s) => s > 1e-300, fn(s) => s * x, 1.0);
    let k = while(fn(k) => k != n, fn(k) => k + 1, 0);
    y * f64(k)
}
fn deep(h, i) = if i == 0 { sum(h) } else { deep(sin(h) * 0.5 + h * 0.1, i - 1) }
fn deep_then_spin(x, n) {
    let y = deep(full([2048], x), 2500);
    let k = while(fn(k) => k != n, fn(k) => k + 1, 0);
    y * f64(k)
}
"""

# (a call with {} for its argument, an argument that makes it endless, one that does not, the
# result of that one); the calls of lists and of NumPy scalars of other dtypes (converted)
# take the ctypes path
CASES = {
    "while": ("m.spin({})", "-1", "12", "12"),
    "recursion": ("m.fib({})", "200", "11", "89"),
    "iterate": ("m.halve({})", "1.0", "-2.0", "-2.0"),
    "iterate-rows": ("m.halve_rows(np.array([{}, 1.0]))", "1.0", "-2.0", "array([-2.,  1.])"),
    "while-ctypes": ("m.spin(np.int32({}))", "-1", "12", "12"),
    "recursion-ctypes": ("m.fib(np.int32({}))", "200", "11", "89"),
    "iterate-ctypes": ("m.halve(np.longdouble({}))", "1.0", "-2.0", "-2.0"),
    "iterate-rows-ctypes": ("m.halve_rows([{}, 1.0])", "1.0", "-2.0", "array([-2.,  1.])"),
}


def _env():
    return {**os.environ, "PYTHONPATH": ROOT, "DIFFC_CACHE": "0"}


def _interrupt(args):
    """Run args, send SIGINT a moment after its first line "ready": (exit code, stdout, stderr)."""
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        first = p.stdout.readline()
        assert first == "ready\n", first + p.stderr.read()
        time.sleep(0.3)  # the endless call is running (the outcome does not depend on how long)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return p.returncode, out, err


def _script(body: str) -> list[str]:
    """A Python process that loads PROGRAM as `m`, then runs body."""
    setup = f"import diffc, signal, time\nimport numpy as np\nm = diffc.compile({PROGRAM!r})\n"
    return [sys.executable, "-c", setup + textwrap.dedent(body)]


@pytest.mark.parametrize("case", CASES)
def test_python_call_raises_keyboard_interrupt_and_stays_usable(case):
    call, endless, finite, expected = CASES[case]
    direct = "ctypes" not in case
    script = _script(f"""
        {call.format(finite)}
        assert (type({call.split("(")[0]}._entry).__name__ == "builtin_function_or_method") == {direct}
        print("ready", flush=True)
        try:
            {call.format(endless)}
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print(repr({call.format(finite)}))
        print(repr({call.format(finite)}))
    """)
    code, out, err = _interrupt(script)
    assert (code, out.splitlines()) == (0, ["interrupted", expected, expected]), err


def test_cli_exits_130_with_one_line(tmp_path):
    prog = tmp_path / "endless.dfl"
    prog.write_text('fn main() = {\n    print("ready");\n    while(fn(x) => true, fn(x) => x + 1, 0)\n}\n')
    code, out, err = _interrupt([sys.executable, "-m", "diffc", "run", str(prog)])
    assert (code, out, err) == (130, "", "diffc: interrupted\n")


def test_ctrl_c_of_python_code_still_raises_and_spares_the_next_call():
    code, out, err = _interrupt(
        _script("""
            m.spin(3)
            print("ready", flush=True)
            try:
                while True:
                    time.sleep(0.001)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
            print(m.spin(12), m.spin(-12 + 24))
        """)
    )
    assert (code, out) == (0, "interrupted\n12 12\n"), err


def test_a_handler_of_ones_own_runs_when_the_call_returns():
    code, out, err = _interrupt(
        _script("""
            signal.signal(signal.SIGINT, lambda *_: print("handled", flush=True))
            m.spin(3)
            print("ready", flush=True)
            print(m.spin(2000000000), flush=True)
        """)
    )
    assert (code, out) == (0, "handled\n2000000000\n"), err


@pytest.mark.parametrize(
    "fn, finite, endless",
    [
        ("grow", "0.5", "np.longdouble(1.0)"),  # interrupted in the taped loop
        ("grow_then_spin", "0.9999, 5", "np.longdouble(0.9999), np.int32(-1)"),  # ... after it, before its backward
        # a recursion's 2,500 tape records (40 MB), made before the endless loop
        ("deep_then_spin", "0.5, 5", "np.longdouble(0.5), np.int32(-1)"),
    ],
)
def test_an_interrupted_derivative_of_while_or_recursion_frees_its_tape(fn, finite, endless):
    """The tape of a while loop or a recursion is on the heap until the backward pass reads it;
    SIGINT comes (from a thread, the ctypes path not holding the GIL) while it is: after three interrupted
    calls the process holds no more memory than after the first, though each tape took much
    more than what is allowed to remain."""
    script = _script(f"""
        import os, resource, threading
        g = diffc.grad(m.{fn})
        first = g({finite})

        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        base, after = rss(), []
        for _ in range(3):
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            try:
                g({endless})
            except KeyboardInterrupt:
                after.append(rss())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(len(after), peak - base, after[-1] - after[0], g({finite}) == first)
    """)
    out = subprocess.run(script, capture_output=True, text=True, env=_env(), timeout=120)
    calls, tape, kept, value = out.stdout.split()
    assert (calls, value) == ("3", "True"), out.stderr
    assert int(tape) > 32 << 20 and int(kept) < int(tape) // 4, out.stdout


def test_ctrl_c_interrupts_the_calls_of_every_thread():
    code, out, err = _interrupt(
        _script("""
            import threading
            m.spin(np.int32(3))
            stopped = []

            def work():
                try:
                    m.spin(np.int32(-1))
                except KeyboardInterrupt:
                    stopped.append(True)

            workers = [threading.Thread(target=work) for _ in range(3)]
            for w in workers:
                w.start()
            print("ready", flush=True)
            try:
                while any(w.is_alive() for w in workers):
                    time.sleep(0.01)
            except KeyboardInterrupt:
                print("main interrupted", flush=True)
            for w in workers:
                w.join()
            print(len(stopped), m.spin(np.int32(7)))
        """)
    )
    assert (code, out) == (0, "main interrupted\n3 7\n"), err


def test_ctrl_c_while_printing_exits_130_with_one_line(tmp_path):
    """SIGINT often lands while the print callback runs Python code: its KeyboardInterrupt
    stops the call instead of being printed and dropped by ctypes."""
    prog = tmp_path / "chatty.dfl"
    prog.write_text('fn main() = {\n    print("ready");\n    while(fn(x) => true, fn(x) => { print(x); x + 1 }, 0)\n}')
    code, _, err = _interrupt([sys.executable, "-m", "diffc", "run", str(prog)])
    assert (code, err) == (130, "diffc: interrupted\n")


def test_the_handler_comes_back_after_python_reinstalls_its_own():
    """signal.signal puts Python's C handler back in place of diffc's: the next call on the
    general path puts diffc's in front again."""
    code, out, err = _interrupt(
        _script("""
            m.spin(3)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print("ready", flush=True)
            try:
                m.spin(np.int32(-1))
            except KeyboardInterrupt:
                print("interrupted", flush=True)
        """)
    )
    assert (code, out) == (0, "interrupted\n"), err
