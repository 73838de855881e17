"""Compiled functions are thread-safe and re-entrant: calls in flight at once (threads on the
ctypes path, which releases the GIL, or a call made from a print hook during another) never
share a ctx, an arena, pointer arrays or scalar slots (runtime/call.py)."""

from __future__ import annotations

import io
import sys
import threading

import numpy as np
import pytest
from support.native import in_threads

import diffc

PROGRAM = """
fn rows(x, s) = iterate(fn(v) => v * 0.75 + x * s, x, 400)
fn rec(p) = iterate(fn(v) => v * 0.75 + p.x * p.s, p.x, 400)
fn shout(v) = {
    let w = exp(v * 0.5) + v;
    print("sum", sum(v));
    w * w + v
}
"""
THREADS, CALLS = 8, 25


@pytest.fixture(scope="module")
def m():
    return diffc.compile(PROGRAM)


def _inputs(k: int) -> tuple[np.ndarray, float]:
    return np.linspace(-1.0, 1.0, 300) * (k + 1), 0.5 + k / 7


# every kind of argument the general path converts (lists, strided views, NumPy scalars of
# other dtypes), dicts (the ctypes path), and NumPy scalars the direct entry takes
KINDS = {
    "list": lambda m, x, s: m.rows(list(x), s),
    "strided": lambda m, x, s: m.rows(np.repeat(x, 2)[::2], s),
    "numpy-scalar": lambda m, x, s: m.rows(x, np.float64(s)),
    "converted-scalar": lambda m, x, s: m.rows(x, np.longdouble(s)),
    "record": lambda m, x, s: m.rec({"x": x, "s": np.float64(s)}),
    "direct": lambda m, x, s: m.rows(x, s),
    # the direct entry (holding the GIL) while ctypes calls are in flight
    "direct-and-ctypes": lambda m, x, s: m.rows(x, s) if x[0] % 2 else m.rows(np.repeat(x, 2)[::2], s),
}


def _in_threads(fn, jobs):
    """Run fn(job) for every job, spread over THREADS threads started together: {job: result}."""
    results, start = {}, threading.Barrier(THREADS)

    def worker(mine):
        start.wait()
        for job in mine:
            results[job] = fn(job)

    in_threads(worker, [(jobs[t::THREADS],) for t in range(THREADS)])
    return results


@pytest.mark.parametrize("kind", KINDS)
def test_threads_get_the_serial_results(m, kind):
    call = KINDS[kind]
    jobs = list(range(THREADS * CALLS))
    serial = {k: call(m, *_inputs(k % 13)) for k in jobs}
    parallel = _in_threads(lambda k: call(m, *_inputs(k % 13)), jobs)
    wrong = [k for k in jobs if not np.array_equal(parallel[k], serial[k])]
    assert not wrong, f"{len(wrong)} of {len(jobs)} calls differ"


def test_call_from_a_print_hook_during_a_call(m, monkeypatch):
    """The print callback runs Python code in the middle of a call: a call of the same
    function there must neither see nor spoil the outer call's temporaries."""
    outer_v, inner_v = np.linspace(0.0, 1.0, 64), np.linspace(-3.0, 2.0, 64)
    expected_outer, expected_inner = m.shout(outer_v), m.shout(inner_v)
    inner = []

    class Hook(io.StringIO):
        def write(self, text):
            if not inner:
                inner.append(None)
                inner[0] = m.shout(inner_v)
            return super().write(text)

    monkeypatch.setattr(sys, "stdout", Hook())
    got = m.shout(outer_v)
    np.testing.assert_array_equal(inner[0], expected_inner)
    np.testing.assert_array_equal(got, expected_outer)
