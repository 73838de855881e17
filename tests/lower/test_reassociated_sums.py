"""The scalar sums a backward loop carries over its iterations are reassociated, so that LLVM
vectorises the loop (Note [Reassociated sums] in lower/loops.py): only in scans made by
differentiation, only for carries that are nothing but sums; the gradients agree with the
serial order to rounding, NaN and inf included; a program's own scans keep their order."""

from __future__ import annotations

import re

import numpy as np
import pytest

import diffc
import diffc.prims.scan as scan_prim
from diffc.lower import jit
from diffc.lower.llvm import lower_program
from diffc.pipeline import llvm_text, to_ir
from diffc.typesys import DType, TensorType

ENERGY = """
fn loss(px, py) {
    let n = len(px);
    sum(for i in 0..n, j in 0..n => exp(-((px[i] - px[j]) ** 2 + (py[i] - py[j]) ** 2)))
}
"""


def numpy_energy_grad(px, py):
    dx, dy = px[:, None] - px[None, :], py[:, None] - py[None, :]
    e = np.exp(-(dx**2 + dy**2))
    return e.sum(), (-4 * (e * dx).sum(axis=1), -4 * (e * dy).sum(axis=1))


def gradient_ir(source: str, n: int, dtype=DType.F64) -> str:
    """The LLVM IR (before LLVM's optimiser) of loss's value_and_grad for two [n] arrays."""
    m = diffc.compile(source)
    vg = diffc.value_and_grad(m.loss, argnums=(0, 1))
    t = TensorType(dtype, (n,))
    prog, _ = to_ir(m.ast, "loss", (t, t), transform=vg.transform)
    return str(lower_program(prog).module)


def test_backward_sums_are_reassociated_and_vectorised():
    text = gradient_ir(ENERGY, 64)
    assert "fadd reassoc double" in text
    assert re.search(r"fadd reassoc <\d+ x double>", str(jit.optimise(text)))  # partial sums in lanes


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 3, 17, 200])
def test_gradient_matches_numpy(n, dtype):
    rng = np.random.default_rng(n)
    px, py = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    value, (gx, gy) = diffc.value_and_grad(diffc.compile(ENERGY).loss, argnums=(0, 1))(px, py)
    want, (wx, wy) = numpy_energy_grad(px.astype(float), py.astype(float))
    tol = 1e-12 if dtype is np.float64 else 2e-4
    assert float(value) == pytest.approx(want, rel=tol)
    scale = np.max(np.abs(wx)) + np.max(np.abs(wy))
    np.testing.assert_allclose(gx, wx, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(gy, wy, rtol=tol, atol=tol * scale)


def test_same_as_serial_order_up_to_rounding_with_nan_and_inf(monkeypatch):
    rng = np.random.default_rng(5)
    px, py = rng.standard_normal(40), rng.standard_normal(40)
    px[3], py[7], px[11] = np.nan, np.inf, -0.0
    vg = diffc.value_and_grad(diffc.compile(ENERGY).loss, argnums=(0, 1))
    value, grads = vg(px, py)
    monkeypatch.setattr(scan_prim, "reassociate", lambda *args: None)
    value2, grads2 = diffc.value_and_grad(diffc.compile(ENERGY + "# serial\n").loss, argnums=(0, 1))(px, py)
    np.testing.assert_array_equal(np.isnan(value), np.isnan(value2))
    for g, g2 in zip(grads, grads2):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(g2))
        np.testing.assert_allclose(g, g2, rtol=1e-13, atol=1e-300)


KAHAN = """
fn total(xs) {
    let (s, c) = fold(fn(acc, x) {
        let (s, c) = acc;
        let y = x - c;
        let t = s + y;
        (t, (t - s) - y)
    }, (0.0, 0.0), xs);
    s
}
fn plain(xs) = fold(fn(s, x) => s + x, 0.0, xs)
fn loss(w, xs) = fold(fn(s, x) => s + w * x, 0.0, xs)
"""


def test_a_programs_own_scans_keep_their_order():
    xs = np.array([1.0] + [1e-16] * 1000)
    m = diffc.compile(KAHAN)
    assert float(m.total(xs)) == 1.0 + 1e-13  # compensated: the carries are not only sums
    assert float(m.plain(xs)) == 1.0  # each 1e-16 is lost against 1.0, in this order
    assert "fadd reassoc" not in llvm_text(m.ast, "plain", (TensorType(DType.F64, (1001,)),))[0]


def test_a_weight_read_at_every_step_sums_its_cotangent_reassociated():
    # the forward fold adds in order; the backward sums w's cotangent over the steps in lanes
    m = diffc.compile(KAHAN)
    vg = diffc.value_and_grad(m.loss, argnums=(0, 1))
    prog, _ = to_ir(m.ast, "loss", (TensorType(DType.F64, ()), TensorType(DType.F64, (300,))), transform=vg.transform)
    text = str(lower_program(prog).module)
    assert "fadd reassoc double" in text and re.search(r"fadd double", text)
    xs = np.linspace(-1.0, 2.0, 300)
    value, (gw, gx) = vg(0.7, xs)
    assert float(value) == pytest.approx(0.7 * xs.sum(), rel=1e-13)
    assert float(gw) == pytest.approx(xs.sum(), rel=1e-13)
    np.testing.assert_allclose(gx, np.full(300, 0.7), rtol=0)
