"""The LLVM worker process (lower/llvm_worker.py, Note [The LLVM worker]): the object code it
makes is the bytes this process makes; a process that compiles hundreds of modules stays
within a bounded memory; a worker that dies is replaced; Ctrl-C while it compiles interrupts
the compile and no worker is left behind; threads compile at once."""

from __future__ import annotations

import math
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from support.native import in_threads

import diffc
from diffc.errors import InternalError
from diffc.lower import jit, llvm_worker
from diffc.lower.llvm import lower_program
from diffc.pipeline import to_ir
from diffc.runtime.values import type_of

SOURCE = """
fn f(x) = sum(sin(x) * 2.0 + x)
fn loop(x, n) = while(fn(s) => s.i < n, fn(s) => {i: s.i + 1, y: tanh(s.y) * x}, {i: 0, y: 1.0}).y
fn mm(a, b) = a @ b
"""
ENV = dict(os.environ, DIFFC_OPT=str(jit.OPT_LEVEL))


def _ir(fn_name: str, *args, transform: tuple = ()) -> str:
    module = diffc.compile(SOURCE, name="w.dfl").ast
    prog, out_tree = to_ir(module, fn_name, tuple(type_of(np.asarray(a)) for a in args), transform=transform)
    return str(lower_program(prog, out_tree).module)


@pytest.fixture(scope="module")
def ir_f():
    return _ir("f", np.ones(5))


@pytest.mark.parametrize(
    "fn_name, args, transform",
    [
        ("f", (np.ones(5),), ()),
        ("loop", (0.5, 3), ("grad", (0,), False)),
        ("mm", (np.ones((40, 30)), np.ones((30, 20))), ()),
    ],
)
def test_the_worker_makes_the_bytes_made_here(fn_name, args, transform):
    text = _ir(fn_name, *args, transform=transform)
    assert llvm_worker.compile(text, ENV) == jit.object_code_here(text)


def test_modules_go_to_the_worker_after_the_first_n(monkeypatch, ir_f):
    monkeypatch.setattr(jit, "_here", 0)
    monkeypatch.setenv("DIFFC_LLVM_WORKER", "2")
    calls = []
    monkeypatch.setattr(llvm_worker, "compile", lambda text, env: calls.append(env["DIFFC_OPT"]) or b"")
    for _ in range(4):
        jit.object_code(ir_f)
    assert calls == [str(jit.OPT_LEVEL)] * 2
    monkeypatch.setenv("DIFFC_LLVM_WORKER", "off")
    jit.object_code(ir_f)
    assert len(calls) == 2


@pytest.mark.parametrize("name, value", [("DIFFC_LLVM_WORKER", "-1"), ("DIFFC_LLVM_WORKER_MODULES", "0")])
def test_bad_knobs_are_usage_errors(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(diffc.UsageError, match=name):
        jit.modules_here() if name == "DIFFC_LLVM_WORKER" else llvm_worker.modules_per_worker()


def test_a_killed_worker_is_replaced(ir_f):
    expected = llvm_worker.compile(ir_f, ENV)
    first = llvm_worker._worker.proc
    first.kill()
    first.wait()
    assert llvm_worker.compile(ir_f, ENV) == expected  # tried again in a new worker
    assert llvm_worker._worker.proc.pid != first.pid


def _new_worker():
    """The next compile starts a worker (with the environment it is given)."""
    if llvm_worker._worker is not None:
        llvm_worker._worker.close()
        llvm_worker._worker = None


def test_a_worker_that_cannot_work_is_an_internal_error(ir_f):
    _new_worker()
    with pytest.raises(InternalError, match="exited with status 1 .*ValueError"):
        llvm_worker.compile(ir_f, dict(ENV, DIFFC_OPT="two"))  # (OPT_LEVEL fails to parse)
    assert llvm_worker.compile(ir_f, ENV)  # and the next worker works


def test_a_worker_out_of_memory_is_a_memory_error(ir_f):
    """Under `ulimit -v` LLVM's allocations abort the worker (or Python's fail in it): the compile
    is a MemoryError (a located DiffcMemoryError in the API), and the next worker works."""
    expected = llvm_worker.compile(ir_f, ENV)
    pid = llvm_worker._worker.proc.pid
    with open(f"/proc/{pid}/status") as f:
        size = next(int(line.split()[1]) << 10 for line in f if line.startswith("VmSize"))
    resource.prlimit(pid, resource.RLIMIT_AS, (size, size))  # no room for one more mapping
    n = 100_000
    chain = "".join(f"  %x{i + 1} = fadd double %x{i}, 1.0\n" for i in range(n))
    with pytest.raises(MemoryError):
        llvm_worker.compile(f"define double @f(double %x0) {{\n{chain}  ret double %x{n}\n}}\n", ENV)
    assert llvm_worker.compile(ir_f, ENV) == expected


def test_without_a_worker_the_module_is_compiled_here(monkeypatch, ir_f):
    _new_worker()
    monkeypatch.setenv("DIFFC_LLVM_WORKER", "0")
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")  # (it cannot be started)
    assert jit.object_code(ir_f) == jit.object_code_here(ir_f)
    assert llvm_worker._worker is None


def test_a_worker_under_ulimit_v():
    """The worker inherits the parent's address-space limit, and works within it."""
    script = "import numpy as np, diffc; m = diffc.compile('fn f(x) = sum(x * 2.0)'); print(m.f(np.ones(3)))"
    r = subprocess.run(
        ["bash", "-c", 'ulimit -v 1500000; exec "$@"', "bash", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, DIFFC_LLVM_WORKER="0", DIFFC_CACHE="0"),
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "6.0\n", "")


def test_an_error_in_the_worker_is_the_error_raised_here():
    with pytest.raises(RuntimeError, match="expected instruction opcode"):
        jit.object_code_here("define void @f() {\n  nonsense\n}\n")
    with pytest.raises(RuntimeError, match="expected instruction opcode"):
        llvm_worker.compile("define void @f() {\n  nonsense\n}\n", ENV)


def test_threads_compile_at_once(monkeypatch):
    monkeypatch.setenv("DIFFC_LLVM_WORKER", "0")
    m = diffc.compile(SOURCE, name="w.dfl")
    results = {}

    def work(n):
        results[n] = m.f(np.arange(float(n)))

    in_threads(work, [(n,) for n in range(20, 26)])
    assert results == {n: pytest.approx(np.sum(np.sin(np.arange(float(n))) * 2 + np.arange(float(n)))) for n in results}
    assert len(results) == 6


def _run(script: str, env: dict, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **env),
    )


def test_memory_stays_bounded_over_many_compiles():
    """230 modules: compiled here the last 190 would add 75-95 KB each (llvmlite's leak), about
    16 MB; through workers replaced every 80 modules the process grows by much less. No child
    is left unreaped."""
    r = _run(
        f"""
        import os, numpy as np, diffc
        from diffc.lower import jit
        from diffc.lower.llvm import lower_program
        from diffc.pipeline import to_ir
        from diffc.runtime.values import type_of
        def rss():
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
        prog, out_tree = to_ir(diffc.compile({SOURCE!r}).ast, "f", (type_of(np.ones(5)),))
        text = str(lower_program(prog, out_tree).module)
        for _ in range(40):
            jit.object_code(text)
        before = rss()
        for _ in range(190):
            jit.object_code(text)
        assert os.waitpid(-1, os.WNOHANG) == (0, 0)  # a worker, and no zombie
        print(rss() - before)
        """,
        {"DIFFC_LLVM_WORKER": "0", "DIFFC_LLVM_WORKER_MODULES": "80"},
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) < 8000, f"grew by {r.stdout.strip()} KB"


def test_the_worker_ends_with_its_parent():
    """A parent killed outright runs no exit handler: the worker ends on the end of its stdin."""
    r = _run(
        """
        import os, signal, numpy as np, diffc
        from diffc.lower import llvm_worker
        diffc.compile("fn f(x) = sum(x)").f(np.ones(3))
        print(llvm_worker._worker.proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        {"DIFFC_LLVM_WORKER": "0", "DIFFC_CACHE": "0"},
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    worker = int(r.stdout)
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(worker)


def _slow_program(tmp_path) -> str:
    """A program whose LLVM compile takes a while (the worker starts, then optimises it)."""
    lets = [f"    let a{i} = sin(a{i - 1} * {1 + i / 1000}) + x[{i % 7}];" for i in range(1, 120)]
    body = "\n".join(["fn main() {", "    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];", "    let a0 = x[0];", *lets])
    prog = tmp_path / "slow.dfl"
    prog.write_text(body + "\n    a119\n}\n")
    return str(prog)


def _children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_while_the_worker_compiles(tmp_path):
    """SIGINT once the worker is started (the compile waits for it): `diffc run` says it was
    interrupted and exits 130, and the worker does not outlive it."""
    env = dict(os.environ, DIFFC_LLVM_WORKER="0", DIFFC_CACHE="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffc", "run", _slow_program(tmp_path)], stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    while not _children(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert workers, "no worker was started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "diffc: interrupted"
    time.sleep(0.2)
    assert not any(_alive(w) for w in workers)


def test_ctrl_c_in_python_leaves_the_function_usable(tmp_path):
    r = _run(
        f"""
        import os, signal, threading, time, diffc
        m = diffc.load({_slow_program(tmp_path)!r})

        def worker_started():
            tasks = f"/proc/{{os.getpid()}}/task"
            for tid in os.listdir(tasks):
                try:
                    if open(f"{{tasks}}/{{tid}}/children").read():
                        return True
                except OSError:
                    pass
            return False

        def interrupt():
            while not worker_started():
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt, daemon=True).start()
        try:
            m.main()
            print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted")
        print(m.main())
        """,
        {"DIFFC_LLVM_WORKER": "0", "DIFFC_CACHE": "0"},
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    a, x = 1.0, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    for i in range(1, 120):
        a = math.sin(a * (1 + i / 1000)) + x[i % 7]
    assert lines[0] == "interrupted" and float(lines[1]) == pytest.approx(a, rel=1e-12)


def test_ctrl_c_on_the_thread_that_waits_for_the_worker():
    """Compiled on the main thread (no compile thread to outlive the interrupt), the wait for the
    worker raises KeyboardInterrupt; the worker, whose reply would come late, is killed, and the
    next compile has a new one."""
    r = _run(
        """
        import os, signal, threading, time
        from diffc.lower import jit, llvm_worker
        n = 10000
        chain = "".join(f"  %x{i + 1} = fadd double %x{i}, 1.0\\n" for i in range(n))
        text = f"define double @f(double %x0) {{\\n{chain}  ret double %x{n}\\n}}\\n"
        expected = jit.object_code(text)
        first = llvm_worker._worker.proc

        def interrupt():
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt).start()
        try:
            jit.object_code(text)
            print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted", first.returncode)
        print(jit.object_code(text) == expected, llvm_worker._worker.proc.pid != first.pid)
        """,
        {"DIFFC_LLVM_WORKER": "0"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["interrupted", str(-signal.SIGKILL), "True", "True"]
