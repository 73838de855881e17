"""iterate(f, x, n) with n known only at run time: a while over a counter (specialise/
higher_order.py), so it runs, and is differentiated in every mode and order, as the same loop
with n fixed at compile time; a negative n is a located error at run time."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import diffc

from .fd import assert_close, directional

SRC = """
fn step(p, v) = tanh(p @ v) + 0.1 * v
fn run(p, n) = sum(iterate(fn(v) => step(p, v), [1.0, 0.5], n))
fn run_data(p, ks) = run(p, sum(ks) - 3)
fn g(p, n) = grad(run)(p, n)
fn hvp(p, n, u) = grad(fn(p) => sum(g(p, n) * u))(p)
fn hvp_fwd(p, n, u) = jvp(fn(p) => g(p, n), (p,), (u,)).1
fn tangent(p, n, u) = jvp(fn(p) => run(p, n), (p,), (u,)).1
"""


@functools.cache
def mod(src: str) -> diffc.Module:
    return diffc.compile(textwrap.dedent(src), "iterate_dynamic.dfl")


def static(n: int) -> diffc.Module:
    return mod(
        SRC
        + f"""
        fn run_s(p) = sum(iterate(fn(v) => step(p, v), [1.0, 0.5], {n}))
        fn hvp_s(p, u) = grad(fn(p) => sum(grad(run_s)(p) * u))(p)
        """
    )


P = np.array([[0.5, 0.1], [-0.3, 0.8]])
U = np.array([[0.2, -0.4], [0.7, 0.1]])


@pytest.mark.parametrize("n", [0, 1, 7])
def test_a_run_time_count_matches_the_static_count(n):
    m, s = mod(SRC), static(n)
    assert m.run(P, n) == pytest.approx(s.run_s(P), rel=1e-15)
    assert_close(m.g(P, n), diffc.grad(s.run_s)(P), 1e-14, "grad")
    assert_close(m.hvp(P, n, U), s.hvp_s(P, U), 1e-12, "grad of grad")
    assert_close(m.hvp_fwd(P, n, U), s.hvp_s(P, U), 1e-12, "jvp of grad")


def test_a_run_time_count_against_finite_differences():
    m = mod(SRC)
    assert_close(m.tangent(P, 7, U), directional(lambda p: m.run(p, 7), (P,), (U,))[0], 1e-6, "jvp")
    assert_close(m.hvp(P, 7, U), directional(lambda p: m.g(p, 7), (P,), (U,))[0], 1e-6, "grad of grad")


def test_a_count_computed_from_data():
    m = mod(SRC)
    assert m.run_data(P, np.array([4, 6])) == pytest.approx(m.run(P, 7), rel=1e-15)


def test_a_negative_run_time_count_is_a_located_error():
    m = mod(SRC)
    for call in (lambda: m.run(P, -5), lambda: m.g(P, -1), lambda: m.hvp(P, -2, U)):
        with pytest.raises(diffc.BoundsError) as e:
            call()
        assert e.value.span.line == 3 and "the count of `iterate` is -" in e.value.message, e.value.render()


def test_a_negative_run_time_count_on_the_command_line(tmp_path):
    prog = tmp_path / "it.dfl"
    prog.write_text(textwrap.dedent(SRC))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffc",
            "run",
            str(prog),
            "--entry",
            "run",
            "--arg",
            "p=[[0.5, 0.1], [-0.3, 0.8]]",
            "--arg",
            "n=-5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert "it.dfl:3:20: error: the count of `iterate` is -5: it must be 0 or more" in r.stderr
    assert "Traceback" not in r.stderr
