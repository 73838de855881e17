"""diffc.set_flush_denormal (See Note [Subnormal floats] in lower/emit.py): off by default,
IEEE subnormals as NumPy's; on, subnormal results and arguments are zero, on every thread of a
parallel loop and through both ways into native code, and the caller's float mode is restored
after each call."""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from support.native import on_each_count, restore_threads  # noqa: F401 (a fixture)

import diffc
from diffc.lower.emit import PARALLEL_MIN

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="MXCSR is x86-64's")

SRC = """
fn half(x) = x * 0.5
fn big(x) = x * 1e30
fn record(p) = p.x * 0.5
"""
TINY = np.float32(2e-38)  # normal; half of it is subnormal
SUB = np.float32(1e-40)  # subnormal


@pytest.fixture
def m():
    yield diffc.compile(SRC)
    diffc.set_flush_denormal(False)


def test_off_by_default_subnormals_are_numpys(m):
    x = np.array([TINY, SUB, 3.0], np.float32)
    np.testing.assert_array_equal(m.half(x), x * np.float32(0.5))
    np.testing.assert_array_equal(m.big(x), x * np.float32(1e30))
    assert m.half(x)[0] != 0 and m.big(x)[1] != 0


def test_on_subnormal_results_and_arguments_are_zero(m):
    x = np.array([TINY, SUB, 3.0], np.float32)
    assert diffc.set_flush_denormal(True)
    np.testing.assert_array_equal(m.half(x), [0.0, 0.0, 1.5])  # flushed results
    assert m.big(x)[1] == 0.0  # a subnormal argument read as zero
    assert m.half(float(2e-308) / 1.0) == 0.0  # f64 numbers too, by the direct entry
    assert m.record({"x": x})[0] == 0.0  # a record's leaves too
    assert TINY * np.float32(0.5) != 0  # the caller's own arithmetic is IEEE again after the call
    assert diffc.set_flush_denormal(False)
    assert m.half(x)[0] != 0


def test_every_thread_of_a_parallel_loop_flushes(m):
    x = np.full(4 * PARALLEL_MIN, TINY, np.float32)
    x[::7] = 3.0
    diffc.set_flush_denormal(True)
    for got in on_each_count(lambda: m.half(x)):
        np.testing.assert_array_equal(got, np.where(x == 3.0, np.float32(1.5), np.float32(0.0)))
    diffc.set_flush_denormal(False)
    for got in on_each_count(lambda: m.half(x)):
        np.testing.assert_array_equal(got, x * np.float32(0.5))  # the workers are IEEE again


def test_a_gradient_flushes_too(m):
    loss = diffc.compile("fn loss(x) = sum(x * x) * 1e-30\n").loss
    x = np.array([1e-9, 2.0], np.float32)
    diffc.set_flush_denormal(True)
    g = diffc.grad(loss)(x)
    assert g[0] == 0.0 and g[1] != 0.0  # 2e-39, subnormal, flushed
    diffc.set_flush_denormal(False)
    assert diffc.grad(loss)(x)[0] != 0.0


def test_the_environment_variable_sets_it_at_start():
    code = "import numpy as np, diffc; print(diffc.compile('fn f(x) = x * 0.5').f(np.float32(2e-38)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DIFFC_FLUSH_DENORMAL": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == 0.0
