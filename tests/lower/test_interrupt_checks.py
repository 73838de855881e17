"""Where the generated code checks for Ctrl-C (See Note [Interrupts] in lower/emit.py): in the
loops that can run long, and not in short loops of a few scalar ops, which stay as fast (and
as vectorised) as they were."""

from __future__ import annotations

import re

import numpy as np
import pytest
from lower.test_llvm import show_llvm

from diffc.lower.emit import SIGINTS_SYMBOL


def polls(raw: str) -> int:
    """The interrupt checks in LLVM IR as generated (the entry's read of the count aside)."""
    return len(re.findall(rf'load atomic i64, (?:i64\*|ptr) @"?{SIGINTS_SYMBOL}\b', raw)) - 1


@pytest.mark.parametrize(
    "source, arg, expected",
    [
        ("fn main(n) = while(fn(x) => x < n, fn(x) => x + 1, 0)", "n=5", 1),
        ("fn f(n) = if n < 1 { 0 } else { f(n - 1) + 1 }\nfn main(n) = f(n)", "n=5", 1),
        ("fn main(xs) = fold(fn(a, x) => a * 0.5 + x, 0.0, xs)", "xs=SHORT", 0),  # a few scalar ops
        ("fn main(xs) = fold(fn(a, x) => a * 0.5 + x, 0.0, xs)", "xs=LONG", 1),  # ... every 65 536 steps
        ("fn main(xs) = iterate(fn(v) => v * 0.5 + xs, xs, 100)", "xs=SHORT", 1),  # array work per step
        ("fn main(xs) = iterate(fn(v) => v * 0.5 + xs, xs, 15)", "xs=SHORT", 0),  # ... in a few steps
    ],
    ids=["while", "recursion", "short-scalar-fold", "long-scalar-fold", "array-iterate", "few-steps"],
)
def test_long_running_loops_check_for_ctrl_c(source, arg, expected, tmp_path, capsys):
    p = tmp_path / "p.dfl"
    p.write_text(source + "\n")
    for name, n in (("SHORT", 1000), ("LONG", 100_000)):
        np.save(tmp_path / f"{name}.npy", np.ones(n))
        arg = arg.replace(name, str(tmp_path / f"{name}.npy"))
    out = show_llvm(capsys, p, "--arg", arg)
    assert polls(out["LLVM IR, as generated"]) == expected
    assert (polls(out["LLVM IR, optimised"]) > 0) == (expected > 0)  # kept (LLVM may copy it)


def test_a_chunked_fold_computes_every_step(tmp_path):
    """The steps of a long scalar loop run in chunks between two checks: none is lost or run twice."""
    import diffc

    m = diffc.compile("fn f(xs) = fold(fn(a, x) => a + x, 0, xs)\n")
    for n in (65_535, 65_536, 65_537, 200_001):
        xs = np.arange(n, dtype=np.int64)
        assert m.f(xs) == n * (n - 1) // 2
