"""The rounding and testing primitives lower to LLVM intrinsics and compares that LLVM
vectorises: a loop of floor, ceil, round, sign, isnan, isfinite or clip over an f64 array runs
on vectors (`<N x double>`), not one element at a time (a libm call would not vectorise)."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import module

from diffc.lower import jit
from diffc.lower.llvm import lower_program
from diffc.pipeline import to_ir
from diffc.pytree import unflatten
from diffc.runtime.values import flatten_args, type_of

P = module("""
    fn floor_(x) = floor(x)
    fn ceil_(x) = ceil(x)
    fn round_(x) = round(x)
    fn sign_(x) = sign(x)
    fn isnan_(x) = where(isnan(x), 0.0, x)
    fn isfinite_(x) = where(isfinite(x), x, 0.0)
    fn clip_(x) = clip(x, 0.5, 1.5)
""")


def optimised(fn: str, *args) -> str:
    arrays, tree = flatten_args(args)
    prog, _ = to_ir(P.ast, fn, unflatten(tree, [type_of(a) for a in arrays]))
    return str(jit.optimise(str(lower_program(prog).module)))


@pytest.mark.parametrize("fn", ["floor_", "ceil_", "round_", "sign_", "isnan_", "isfinite_", "clip_"])
def test_loop_is_vectorised(fn):
    ir = optimised(fn, np.zeros(1000))
    assert any(f"<{n} x double>" in ir for n in (2, 4, 8)), f"{fn} is not vectorised"
