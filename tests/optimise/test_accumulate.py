"""The accumulate pass: a loop that scatters a gradient into a zero-filled buffer, which is then
added to another term, starts from that term instead (one buffer, no zero-fill, no add)."""

import numpy as np

import diffc
from diffc.pipeline import to_ir
from diffc.typesys import TensorType, f64, i64

SRC = """
fn loss(z, y) = sum(exp(z)) - sum(for i in 0..len(y) => z[i, y[i]])
"""


def _scans(prog):
    from diffc.ir.walk import all_eqns

    return [e for e in all_eqns(prog.main.body) if e.prim.name == "scan"]


def test_the_scatter_starts_from_the_other_term():
    m = diffc.compile(SRC)
    types = (TensorType(f64, (6, 4)), TensorType(i64, (6,)))
    before, _ = to_ir(m.ast, "loss", types, transform=("grad", 0, False), after="licm")
    after, _ = to_ir(m.ast, "loss", types, transform=("grad", 0, False))
    zero_init = [s for s in _scans(before) if s.inputs[0].known is None]
    assert zero_init, "the gradient's scatter loop was expected"
    made_by = {o.id: e.prim.name for e in after.main.body.eqns for o in e.outs}
    (scan,) = [s for s in _scans(after)]
    assert made_by.get(scan.inputs[0].id) != "broadcast"  # no longer a zero-filled buffer
    assert after.main.body.outs[0] is scan.outs[0]  # and no add after it


def test_values_are_unchanged():
    m = diffc.compile(SRC)
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    want = np.exp(z)
    np.subtract.at(want, (np.arange(6), y), 1.0)
    np.testing.assert_allclose(diffc.grad(m.loss)(z, y), want, rtol=1e-12)
