"""Loop-invariant code motion (optimise/licm.py): what a loop nested in another hoists out of
its body survives the hoisting out of the loop around it (each body is visited before the body
it is nested in)."""

import numpy as np
import pytest

import diffc

# s ** 2's derivative tests s == 0, invariant in both loops: hoisted out of the inner one into
# the outer one's body, then out of that
NESTED = "fn fv(x, m, s) = sum(map(fn(r) => sum(map(fn(w) => s ** 2, x)) / sin(s), m))\n"


def numpy_fv(x, m, s):
    return len(m) * len(x) * s**2 / np.sin(s)


def test_a_value_hoisted_out_of_two_loops_is_defined():
    m = diffc.compile(NESTED)
    x, mm, s = np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0]), 0.3
    value, grad = diffc.value_and_grad(m.fv, argnums=2)(x, mm, s)
    h = 1e-6
    assert value == pytest.approx(numpy_fv(x, mm, s), rel=1e-14)
    assert grad == pytest.approx((numpy_fv(x, mm, s + h) - numpy_fv(x, mm, s - h)) / (2 * h), rel=1e-8)
    _, tangent = diffc.jvp(m.fv)(x, mm, s, np.zeros(3), np.zeros(2), 1.0)
    assert tangent == pytest.approx(grad, rel=1e-12)


def test_the_generated_program_that_found_it():
    """Found by tests/ad/test_properties.py: the backward read a value defined nowhere."""
    src = (
        "fn fv(x, y, m, s) = map(fn(r) => (sum(map(fn(w) => ((s) ** 2), windows(concat(x, x), 3)))"
        " / (1.5 + sin(s))), m)\n"
    )
    m = diffc.compile(src, "generated.dfl")
    x, y, mm, s = np.arange(4.0), np.arange(3.0), np.arange(5.0), 0.7
    cts = diffc.vjp(m.fv)(x, y, mm, s, np.ones(5))
    want = 5 * 6 * (2 * s * (1.5 + np.sin(s)) - s**2 * np.cos(s)) / (1.5 + np.sin(s)) ** 2
    assert float(cts[3]) == pytest.approx(want, rel=1e-12)
