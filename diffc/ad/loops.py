"""What the derivative rules of the structured ops (map, scan, while, cond, call) share: seeds,
closed bodies, tangents read back from an op emitted with them, tape notes. The rules reach
them through their context (ad/rules.py, Ctx). The layouts of the loops' operands are in
ir/prim.py (Loop)."""

from __future__ import annotations

from ..ir.build import Builder
from ..ir.core import Body, is_float
from ..prims import ops


def seed_or_zeros(b, ct, t):
    """ct, or zeros of type t where it is a structural zero (None): a loop's operand needs a
    value."""
    return ct if ct is not None else ops.zeros(b, t)


def closed_body(param_types, fn) -> Body:
    """A closed body built by fn(builder, params) -> outs."""
    b = Builder()
    params = [b.param(t) for t in param_types]
    return b.finish(list(fn(b, params)))[0]


def tangents_of(outs, n, like):
    """Split the outputs of an op emitted with tangents: (its n values, the tangents of the
    float ones among `like`, None for the others)."""
    touts = iter(outs[n:])
    return outs[:n], [next(touts) if is_float(o) else None for o in like]


def tape_note(types, n) -> str:
    """What a loop's tape holds: `types` per iteration, n iterations (None: known at run time)."""
    per = sum(t.nbytes for t in types)
    what = ", ".join(map(str, types)) or "nothing"
    total = (
        f"x {n} iterations = {per * n} B" if n is not None else "x the iterations the loop runs (a tape that doubles)"
    )
    return f"tape: {len(types)} residual{'s' * (len(types) != 1)} per iteration ({what}) = {per} B, {total}"
