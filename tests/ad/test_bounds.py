"""Every index that derivative code uses is checked, at the indexing expression: the reverse
mode's scatters (index_scatter, gather_add, and the in-place accumulation of a loop's tied
weights), the forward mode's indexing, second order, inside map and scan bodies, and an index
whose value nobody reads (dead-code elimination keeps it). Before, an out-of-range index
gave zeros or wrote past the buffer (SIGSEGV), so each program runs in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# name: (line of the indexing expression, its column, its value for x = 1..8 and i = 4)
SRC = """\
fn grad_index(x, i) = grad(fn(v) => v[i] * 2.0)(x)
fn grad_gather(x, i) = grad(fn(v) => sum(v[arange(3) + i]))(x)
fn unused_index(x, i) { let unused = x[i]; 1.0 }
fn unused_gather(x, i) { let unused = x[arange(2) + i]; 1.0 }
fn unused_map(x, i) { let unused = for j in 0..3 => x[j + i]; 1.0 }
fn jvp_index(x, i) { let (_, t) = jvp(fn(v) => v[i] * 2.0, (x,), (x,)); t }
fn jvp_gather(x, i) { let (_, t) = jvp(fn(v) => sum(v[arange(3) + i]), (x,), (x,)); t }
fn vjp_index(x, i) { let (_, pb) = vjp(fn(v) => v[i], x); let (g,) = pb(1.0); g }
fn grad_in_map(x, i) = grad(fn(v) => sum(for j in 0..3 => v[j + i] * 2.0))(x)
fn gather_in_map(x, i) = grad(fn(v) => sum(for j in 0..2 => sum(v[arange(3) + j + i])))(x)
fn grad_in_fold(x, i) = grad(fn(v) => fold(fn(acc, j) => acc + v[j], 0.0, arange(3) + i))(x)
fn second_order(x, i) = grad(fn(w) => sum(grad(fn(v) => v[i] * v[i])(w)))(x)
fn second_gather(x, i) = grad(fn(w) => sum(grad(fn(v) => sum(v[arange(2) + i] ** 2.0))(w)))(x)
fn two_reads_in_map(x, i) = grad(fn(v) => sum(for j in 0..3 => v[j] * v[j + i] + v[j + i]))(x)
"""


def _onehot(*ks, scale=1.0):
    g = np.zeros(8)
    for k in ks:
        g[k] += scale
    return g.tolist()


CASES = {
    "grad_index": (1, 37, _onehot(4, scale=2.0)),
    "grad_gather": (2, 42, _onehot(4, 5, 6)),
    "unused_index": (3, 38, 1.0),
    "unused_gather": (4, 39, 1.0),
    "unused_map": (5, 53, 1.0),
    "jvp_index": (6, 48, 10.0),
    "jvp_gather": (7, 53, 18.0),
    "vjp_index": (8, 49, _onehot(4)),
    "grad_in_map": (9, 59, _onehot(4, 5, 6, scale=2.0)),
    "gather_in_map": (10, 65, _onehot(4, 5, 5, 6, 6, 7)),
    "grad_in_fold": (11, 64, _onehot(4, 5, 6)),
    "second_order": (12, 57, _onehot(4, scale=2.0)),
    "second_gather": (13, 62, _onehot(4, 5, scale=2.0)),
    # three reads of one array in one body: three scatter-adds into one accumulator
    "two_reads_in_map": (14, 71, [5.0, 6.0, 7.0, 0.0, 2.0, 3.0, 4.0, 0.0]),
}

# calls `name` at each index and prints, per call, its value or the error's place and message
RUNNER = """
import json, sys, numpy as np, diffc
from diffc.errors import BoundsError
m = diffc.load(sys.argv[1])
for i in json.loads(sys.argv[3]):
    try:
        v = getattr(m, sys.argv[2])(np.arange(1.0, 9.0), i)
        print(json.dumps(["ok", np.asarray(v).tolist()]), flush=True)
    except BoundsError as e:
        print(json.dumps(["bounds", e.location, e.message]), flush=True)
"""


@pytest.mark.parametrize("name", CASES)
def test_every_index_is_checked(tmp_path, name):
    line, col, want = CASES[name]
    prog = tmp_path / "bounds.dfl"
    prog.write_text(SRC)
    indices = [4, 8, -9, 10**8, -(2**63)]
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RUNNER), str(prog), name, json.dumps(indices)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    results = [json.loads(s) for s in r.stdout.splitlines()]
    assert results[0][0] == "ok"
    np.testing.assert_allclose(results[0][1], want)
    for i, res in zip(indices[1:], results[1:]):
        assert res[:2] == ["bounds", f"{prog}:{line}:{col}"], (i, res)
        assert "out of bounds for an axis of length 8" in res[2]
