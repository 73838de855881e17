"""The native stack a call takes is bounded by the program's text, except through recursion
(which runtime/stack.py guards): every alloca of every native function is in its entry block
with a constant size, so nested maps, loops and branches allocate nothing per iteration, and
a non-recursive function's frame holds at most an arena of ARENA_STACK_LIMIT bytes."""

from __future__ import annotations

import numpy as np
import pytest
from llvmlite import ir
from support.native import module

import diffc
from diffc.lower.emit import ARENA_STACK_LIMIT, RECURSIVE_STACK_LIMIT, SCRATCH_MAX
from diffc.lower.llvm import lower_program
from diffc.pipeline import to_ir
from diffc.runtime.values import type_of

PROGRAMS = module("""
    fn nested(x) = sum(for i in 0..16 => sum(for j in 0..16 => {
        let y = x * f64(i + j) + map(fn(r) => r * 2.0, x);
        let z = if sum(y) > 0.0 { y * 2.0 } else { y - 1.0 };
        sum(while(fn(s) => s[0] < 100.0, fn(s) => abs(s) * 2.0 + 1.0, z))
    }))
    fn down(n, x) = if n == 0 { x } else { down(n - 1, x * 0.5 + 1.0) + x[0] }
    fn both(x) = nested(x) + sum(down(10, x))
""")


def frames(mod) -> dict[str, int]:
    """Bytes of alloca per function of a module, checking that each is in the entry block."""
    out = {}
    for fn in mod.functions:
        if fn.is_declaration:
            continue
        for block in fn.blocks[1:]:
            assert not any(isinstance(i, ir.instructions.AllocaInstr) for i in block.instructions), (fn.name, block)
        total = 0
        for i in fn.blocks[0].instructions:
            if isinstance(i, ir.instructions.AllocaInstr):
                ty = i.allocated_type
                total += ty.count if isinstance(ty, ir.ArrayType) else 8  # (scalars: 8 bytes at most)
        out[fn.name] = total
    return out


@pytest.mark.parametrize("n", [16, 1024])  # the recursive function's arena on the stack, then malloc'ed
def test_allocas_are_in_the_entry_block_and_bounded(n):
    x = np.linspace(-1.0, 1.0, n)
    for fn in (PROGRAMS.both, diffc.grad(PROGRAMS.both)):
        prog, _ = to_ir(PROGRAMS.ast, "both", (type_of(x),), transform=fn.transform)
        ms = lower_program(prog)
        sizes = frames(ms.module)
        recursive = [k for k in sizes if k.startswith("dfl.down")]
        assert recursive and all(sizes[k] <= RECURSIVE_STACK_LIMIT + 256 for k in recursive), sizes
        # (a parallel loop's piece holds its temporaries on its thread's stack, up to SCRATCH_MAX)
        assert all(size <= (SCRATCH_MAX if ".par" in k else ARENA_STACK_LIMIT) + 1024 for k, size in sizes.items()), (
            sizes
        )
    assert np.isfinite(PROGRAMS.both(x)) and np.isfinite(diffc.grad(PROGRAMS.both)(x)).all()
