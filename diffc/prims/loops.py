"""What the structured ops (map, scan, while, cond, call) and their derivative rules share:
row types, tape notes, small body builders (their lowering helpers are in lower/loops.py).

fold, unfold, iterate and comprehensions are built on map and scan by the specialiser.
Conventions (the specialiser builds bodies to match):
  map   inputs [*xs, *consts]           body (i, *x_rows, *consts) -> ys      outs: stacked ys
  scan  inputs [*init, *xs, *consts]    body (i, *carry, *x_rows, *consts) -> (*carry, *ys)
                                         outs: (*final carry, *stacked ys); `reverse` walks back
  while inputs [*init, *consts]         cond (*state, *consts) -> bool; body -> state
  cond  inputs [pred, *operands]        branches (then, else), each (*operands) -> outs
  call  inputs args                     params func (a Program's Func name), out_types
"""

from __future__ import annotations

from ..ad.vjp import is_float
from ..ir.build import Builder
from ..ir.core import Body
from ..typesys import DType, TensorType
from . import ops


def row_type(t: TensorType) -> TensorType:
    """The type of one row of t (the inverse of stacked)."""
    return t.with_shape(t.shape[1:])


def stacked(t: TensorType, n: int) -> TensorType:
    return t.with_shape((n,) + t.shape)


def tape_note(types, n) -> str:
    """What a loop's tape holds: `types` per iteration, n iterations (None: known at run time)."""
    per = sum(t.nbytes for t in types)
    what = ", ".join(map(str, types)) or "nothing"
    total = (
        f"x {n} iterations = {per * n} B" if n is not None else "x the iterations the loop runs (a tape that doubles)"
    )
    return f"tape: {len(types)} residual{'s' * (len(types) != 1)} per iteration ({what}) = {per} B, {total}"


# --- for derivative rules ---------------------------------------------------------------------


def seed_or_zeros(b, ct, t):
    return ct if ct is not None else ops.zeros(b, t)


def closed_body(param_types, fn) -> Body:
    """A closed body built by fn(builder, params) -> outs."""
    b = Builder()
    params = [b.param(t) for t in param_types]
    return b.finish(list(fn(b, params)))[0]


def index_type():
    return TensorType(DType.I64, ())


def tangents_of(outs, n, like):
    """Split the outputs of an op emitted with tangents: (its n values, the tangents of the
    float ones among `like`, None for the others)."""
    touts = iter(outs[n:])
    return outs[:n], [next(touts) if is_float(o) else None for o in like]
