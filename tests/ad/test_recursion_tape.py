"""What the reverse of a recursion keeps per call (prims/call.py, Note [Unchanged arguments]):
an argument every call passes on unchanged is not taped per call, and an argument that needs
no cotangent gets none, so a deep recursion over data costs what the same fold costs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

import diffc

from .fd import assert_close

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
    r = subprocess.run(
        [sys.executable, "-m", "diffc", "show", "--grad", "loss", str(prog), "--arg", f"w={tmp_path / 'w.npy'}"],
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
    r = subprocess.run(
        ["bash", "-c", f"ulimit -v 1500000; exec {sys.executable} {script}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    m = diffc.compile(textwrap.dedent(SRC), "deep.dfl")
    rng = np.random.default_rng(0)
    xs, w = rng.normal(size=(2000, 64)), rng.normal(size=64) * 0.1
    assert_close(np.load(tmp_path / "g.npy"), m.g_fold(xs, w), 1e-12)
