"""A loop that runs once per call of the program (in the entry or one of its parts, in no
other loop) is not unrolled by LLVM; the loops inside it, and those of functions called from
loops, are as before (Note [Loops run once] in lower/emit.py)."""

from __future__ import annotations

import re

import numpy as np
from lower.test_llvm import show_llvm

import diffc

UNROLL_OFF = '!"llvm.loop.unroll.disable"'


def not_unrolled(capsys, tmp_path, source: str, *args) -> list[str]:
    """The loops (by the name of their head) whose back edge carries the loop ID that keeps
    LLVM from unrolling them, in the generated IR of `source`'s main."""
    p = tmp_path / "p.dfl"
    p.write_text(source)
    generated = show_llvm(capsys, p, *args)["LLVM IR, as generated"]
    ids = re.findall(r"^(!\d+) = distinct !\{ \1, (!\d+) \}", generated, flags=re.MULTILINE)
    off = {m for m, prop in ids if re.search(rf"^{prop} = !{{ {re.escape(UNROLL_OFF)} }}", generated, re.MULTILINE)}
    return [h for h, md in re.findall(r'br label %"([\w.]+)\.head", !llvm\.loop (!\d+)', generated) if md in off]


def test_the_entrys_loops_are_not_unrolled(capsys, tmp_path):
    loops = not_unrolled(capsys, tmp_path, "fn main(x) = sum(exp(x) * 2.0)\n", "--arg", "x=[1.0, 2.0, 3.0]")
    assert loops == ["red0"]


def test_loops_in_loops_are_unrolled(capsys, tmp_path):
    """The loop over the rows runs once; the reduction of each row runs once per row."""
    source = "fn main(x) = map(fn(r) => sum(r * r), x)\n"
    loops = not_unrolled(capsys, tmp_path, source, "--arg", "x=uniform(key(1), [8, 5])")
    assert loops == ["cp0"]


def test_a_function_called_in_a_loop_is_unrolled(capsys, tmp_path):
    """A recursive function is lowered on its own and may run many times per call."""
    source = """
fn depth(x, n) = if n == 0 { sum(x) } else { depth(x * 0.5, n - 1) }
fn main(x) = depth(x, 3)
"""
    loops = not_unrolled(capsys, tmp_path, source, "--arg", "x=[1.0, 2.0, 3.0]")
    assert loops == []


def test_values_and_gradients():
    m = diffc.compile("""
fn loss(w, x) = sum(tanh(x @ w) * 2.0) + sum(cumsum(w, axis=0))
fn rows(x) = map(fn(r) => sum(r * r), x)
""")
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((5, 3)), rng.standard_normal((4, 5))
    np.testing.assert_allclose(m.loss(w, x), 2 * np.tanh(x @ w).sum() + np.cumsum(w, axis=0).sum(), rtol=1e-13)
    g = diffc.grad(m.loss)(w, x)
    expected = x.T @ (2 * (1 - np.tanh(x @ w) ** 2)) + np.arange(5, 0, -1)[:, None]
    np.testing.assert_allclose(g, expected, rtol=1e-12)
    np.testing.assert_allclose(m.rows(x), (x * x).sum(1), rtol=1e-14)
