"""What the reverse of a recursion keeps per call (prims/call.py, Note [Unchanged arguments]):
an argument every call passes on unchanged is not taped per call, an argument that needs no
cotangent gets none, and one that needs a cotangent gets one buffer that every call adds to in
place (Note [Recursion accumulators]), so a deep recursion over data costs what the same fold
costs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

import diffc

from .fd import assert_close, numerical_grad

SRC = """
fn term(xs, w, i) = sum(tanh(xs[i % 2000] * w))
fn rec(xs, w, i) = if i == 0 { 0.0 } else { rec(xs, w, i - 1) + term(xs, w, i - 1) }
fn g(xs, w, n) = grad(fn(w) => rec(xs, w, n))(w)
fn g_fold(xs, w) = grad(fn(w) => fold(fn(acc, i) => acc + term(xs, w, i), 0.0, arange(3000)))(w)
"""


def _grad_program(tmp_path):
    prog = tmp_path / "rec.dfl"
    # the data is made inside: show --grad differentiates with respect to every argument
    prog.write_text(textwrap.dedent(SRC) + "fn loss(w) = rec(ones([2000, 64]) * 0.5, w, 50)\n")
    np.save(tmp_path / "w.npy", np.zeros(64))
    return _show_grad(prog, f"w={tmp_path / 'w.npy'}")


def _show_grad(prog, arg: str) -> str:
    """What `diffc show --grad loss` prints for prog."""
    r = subprocess.run(
        [sys.executable, "-m", "diffc", "show", "--grad", "loss", str(prog), "--arg", arg],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_an_argument_passed_on_unchanged_is_not_taped_per_call(tmp_path):
    ir = _grad_program(tmp_path)
    records = [line for line in ir.splitlines() if "tape_unpack[" in line or "tape_pack " in line]
    assert records, ir
    assert not any("f64[2000, 64]" in line for line in records), "\n".join(records)


def test_data_passed_along_gets_no_cotangent_per_call(tmp_path):
    ir = _grad_program(tmp_path)
    calls = [line for line in ir.splitlines() if "call[func='rec.0.bwd" in line]
    assert calls and all("f64[2000, 64]" not in line.split(" = ")[0] for line in calls), "\n".join(calls)


def _run_in_1_5_gb(script):
    """Run a Python script in a process whose address space is limited to 1.5 GB."""
    r = subprocess.run(
        ["bash", "-c", f"ulimit -v 1500000; exec {sys.executable} {script}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_deep_recursion_over_data_runs_in_the_memory_of_the_fold(tmp_path):
    """3,000 calls over a 1 MB array: taped per call it needs 3 GB (and more for the per-call
    cotangents); under a 1.5 GB address-space limit it must still run, and agree with the fold."""
    script = tmp_path / "deep.py"
    script.write_text(
        textwrap.dedent(f"""
        import textwrap, numpy as np, diffc
        m = diffc.compile(textwrap.dedent({SRC!r}), "deep.dfl")
        rng = np.random.default_rng(0)
        xs, w = rng.normal(size=(2000, 64)), rng.normal(size=64) * 0.1
        np.save({str(tmp_path / "g.npy")!r}, m.g(xs, w, 3000))
        """)
    )
    _run_in_1_5_gb(script)
    m = diffc.compile(textwrap.dedent(SRC), "deep.dfl")
    rng = np.random.default_rng(0)
    xs, w = rng.normal(size=(2000, 64)), rng.normal(size=64) * 0.1
    assert_close(np.load(tmp_path / "g.npy"), m.g_fold(xs, w), 1e-12)


# --- the gradient with respect to the data a recursion reads (Note [Recursion accumulators]) ----

RNN = """
fn go(w, xs, i, h) = if i == n_rows(xs) { h } else { go(w, xs, i + 1, tanh(w @ h + xs[i] * 0.5) + xs[i] * h) }
fn n_rows(xs) = shape(xs)[0]
fn loss(w, xs) = sum(go(w, xs, 0, zeros([8])) ** 2) + sum(xs * xs) * 0.1
fn loss_fold(w, xs) = sum(fold(fn(h, x) => tanh(w @ h + x * 0.5) + x * h, zeros([8]), xs) ** 2) + sum(xs * xs) * 0.1
fn dxs(w, xs) = grad(loss, 1)(w, xs)
fn dxs_fold(w, xs) = grad(loss_fold, 1)(w, xs)
fn hvp(w, xs, u) = grad(fn(xs) => sum(dxs(w, xs) * u))(xs)
fn hvp_fold(w, xs, u) = grad(fn(xs) => sum(dxs_fold(w, xs) * u))(xs)
fn dw_dxs(w, xs) = grad(fn(w) => sum(dxs(w, xs)))(w)
fn dw_dxs_fold(w, xs) = grad(fn(w) => sum(dxs_fold(w, xs)))(w)
fn jvp_dxs(w, xs, u) = jvp(fn(xs) => dxs(w, xs), (xs,), (u,)).1
fn jvp_dxs_fold(w, xs, u) = jvp(fn(xs) => dxs_fold(w, xs), (xs,), (u,)).1
fn third(w, xs) = grad(fn(xs) => sum(grad(fn(xs) => sum(dxs(w, xs) ** 2))(xs)))(xs)
fn third_fold(w, xs) = grad(fn(xs) => sum(grad(fn(xs) => sum(dxs_fold(w, xs) ** 2))(xs)))(xs)
"""


def _rnn_args(rows=6):
    rng = np.random.default_rng(3)
    return rng.normal(size=(8, 8)) * 0.4, rng.normal(size=(rows, 8)) * 0.5


def test_the_gradient_wrt_data_read_by_a_recursion_matches_the_fold_and_finite_differences():
    m = diffc.compile(textwrap.dedent(RNN), "rnn.dfl")
    w, xs = _rnn_args()
    g = m.dxs(w, xs)
    assert_close(g, m.dxs_fold(w, xs), 1e-12)
    (fd,) = numerical_grad(m.loss, (w, xs), (1,))
    assert_close(g, fd, 1e-6)


def test_higher_order_through_the_accumulated_data_cotangent():
    m = diffc.compile(textwrap.dedent(RNN), "rnn.dfl")
    w, xs = _rnn_args(4)
    u = np.random.default_rng(4).normal(size=xs.shape)
    assert_close(m.hvp(w, xs, u), m.hvp_fold(w, xs, u), 1e-10)
    (fd,) = numerical_grad(lambda xs: float(np.sum(m.dxs(w, xs) * u)), (xs,), (0,))
    assert_close(m.hvp(w, xs, u), fd, 1e-6)
    assert_close(m.dw_dxs(w, xs), m.dw_dxs_fold(w, xs), 1e-10)
    assert_close(m.jvp_dxs(w, xs, u), m.jvp_dxs_fold(w, xs, u), 1e-10)
    assert_close(m.third(w, xs), m.third_fold(w, xs), 1e-10)


def test_a_recursion_adds_to_one_data_cotangent_in_place(tmp_path):
    """No call of the reverse makes or returns a cotangent the size of the data: the index's
    cotangent is added to the one buffer, a row per call."""
    prog = tmp_path / "go.dfl"
    prog.write_text(
        "fn go(w, xs, i, h) = if i == 2000 { h } else { go(w, xs, i + 1, tanh(w @ h + xs[i])) }\n"
        "fn loss(xs) = sum(go(ones([64, 64]) * 0.01, xs, 0, zeros([64])))\n"
    )
    np.save(tmp_path / "xs.npy", np.zeros((2000, 64)))
    text = _show_grad(prog, f"xs={tmp_path / 'xs.npy'}")
    funcs = text.split("\nfunc ")
    reverse = [f for f in funcs if f.startswith("go.0.bwdacc")]
    made = [line.split(" = ")[0] for f in reverse for line in f.splitlines()[1:] if " = " in line]
    assert reverse and not [m for m in made if "f64[2000, 64]" in m], text
    assert all("acc_add_at" in f and "index_scatter" not in f for f in reverse)


def test_a_deep_recursion_differentiated_wrt_its_data_runs_in_the_memory_of_the_fold(tmp_path):
    """3,000 calls over a [3000, 64] array (1.5 MB): a cotangent of it per call would need
    4.5 GB; under a 1.5 GB address-space limit the gradient must run and agree with the fold."""
    src = textwrap.dedent(RNN).replace("zeros([8])", "zeros([64])")
    script = tmp_path / "deep.py"
    script.write_text(
        textwrap.dedent(f"""
        import textwrap, numpy as np, diffc
        m = diffc.compile({src!r}, "deep.dfl")
        rng = np.random.default_rng(0)
        w, xs = rng.normal(size=(64, 64)) * 0.1, rng.normal(size=(3000, 64)) * 0.1
        np.save({str(tmp_path / "g.npy")!r}, m.dxs(w, xs))
        """)
    )
    _run_in_1_5_gb(script)
    m = diffc.compile(src, "deep.dfl")
    rng = np.random.default_rng(0)
    w, xs = rng.normal(size=(64, 64)) * 0.1, rng.normal(size=(3000, 64)) * 0.1
    assert_close(np.load(tmp_path / "g.npy"), m.dxs_fold(w, xs), 1e-10)


def test_the_tape_records_of_a_recursion_are_freed_when_the_call_fails(tmp_path):
    """The forward of a 2,000-deep recursion tapes 4 MB of records; the index after it fails
    (a located bounds error), so no reverse reads them back: 100 such calls leaked 430 MB.
    Every record left is freed when the call ends (Note [Tape records] in prims/tape.py)."""
    script = tmp_path / "leak.py"
    script.write_text(
        textwrap.dedent("""
        import resource, numpy as np, diffc
        m = diffc.compile('''
        fn go(w, xs, i, h) = if i == 2000 { h } else { go(w, xs, i + 1, tanh(w @ h + xs[i])) }
        fn loss(w, xs, k) = sum(go(w, xs, 0, zeros([64]))) + xs[k, 0]
        fn g(w, xs, k) = grad(loss, 1)(w, xs, k)
        ''', "leak.dfl")
        w, xs = np.full((64, 64), 0.01), np.ones((2000, 64))
        m.g(w, xs, 3)
        before, failed = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 0
        for _ in range(100):
            try:
                m.g(w, xs, 5000)
            except diffc.BoundsError as e:
                failed += "leak.dfl:3:" in str(e)
        print(failed, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """)
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    failed, grown_mb = map(int, r.stdout.split())
    assert failed == 100
    assert grown_mb < 50, f"RSS grew by {grown_mb} MB over 100 failed calls"
