"""Builder: emits typed equations into a body under construction.

Builders nest like the bodies they build. A value of an enclosing builder used inside a nested
one is captured: it becomes a parameter of the nested body and an input of the structured op
that owns it (see Note [Captures])."""

from __future__ import annotations

import numpy as np

from ..errors import DiffcError, DiffcMemoryError, InternalError, ShapeError, bytes_text
from ..source import NO_SPAN, Span
from ..typesys import MAX_BYTES, DType, TensorType
from .core import Body, Eqn, Var
from .prim import const_p

FOLD_LIMIT = 1 << 12  # largest known value kept, in elements
MAX_RANK = 32  # axes of an array, as NumPy allows (64 since NumPy 2)
INLINE_CONST_LIMIT = 16  # known values up to this size are re-created, not captured


class Builder:
    def __init__(self, parent: Builder | None = None):
        self.parent = parent
        self.params: list[Var] = []
        self.eqns: list[Eqn] = []
        self.defined: set[int] = set()
        # outer Var -> (the value in the parent's scope, the parameter standing for it here)
        self.captures: dict[Var, tuple[Var, Var]] = {}
        self.recreated: dict[Var, Var] = {}  # small known outer values, re-created here
        # outer value id -> the parent's equation that makes it, to re-emit here instead of
        # capturing its result (see ad/vjp.py, rematerialisable)
        self.remat: dict[int, Eqn] = {}
        self.span: Span = NO_SPAN

    def param(self, type: TensorType, known=None, hint: str = "") -> Var:
        v = Var(type, known, hint)
        self.params.append(v)
        self.defined.add(v.id)
        return v

    def use(self, v: Var) -> Var:
        """`v` as seen from this body: itself, or the parameter that captures it."""
        if v.id in self.defined:
            return v
        if v in self.captures:
            return self.captures[v][1]
        if v in self.recreated:
            return self.recreated[v]
        if self.parent is None:
            raise InternalError(f"value {v!r} used outside the body that defines it", self.span)
        if v.id in self.remat:
            eqn = self.remat[v.id]
            for o, here in zip(eqn.outs, self.emit(eqn.prim, eqn.inputs, eqn.span, **eqn.params)):
                self.recreated[o] = here
            return self.recreated[v]
        if v.known is not None and v.type.size <= INLINE_CONST_LIMIT:
            # a small compile-time constant is cheaper to re-create than to capture
            self.recreated[v] = self.emit1(const_p, [], value=v.known)
            return self.recreated[v]
        outer = self.parent.use(v)
        inner = Var(v.type, v.known, v.hint, v.range)
        self.defined.add(inner.id)
        self.captures[v] = (outer, inner)
        return inner

    def emit(self, prim, inputs, span: Span | None = None, **params) -> list[Var]:
        """Append `prim(inputs, **params)`; returns its output values, typed by prim.shape."""
        span = span or self.span
        inputs = [self.use(x) for x in inputs]
        try:
            out_types = prim.shape([x.type for x in inputs], **params)
            for t in out_types:
                if t.rank > MAX_RANK:
                    raise ShapeError(f"an array of rank {t.rank}: arrays have at most {MAX_RANK} axes")
                _check_size(t)
            outs = [Var(t, known) for t, known in zip(out_types, fold_known(prim, inputs, params, out_types))]
        except DiffcError as e:
            if e.span is None:
                e.span = span
            raise
        if len(outs) == 1 and outs[0].known is None and outs[0].type == _INDEX and prim.interval is not None:
            outs[0].range = prim.interval(*[_interval(x) for x in inputs])
        for o in outs:
            self.defined.add(o.id)
        self.eqns.append(Eqn(prim, inputs, params, outs, span))
        return outs

    def emit1(self, prim, inputs, span: Span | None = None, **params) -> Var:
        (out,) = self.emit(prim, inputs, span, **params)
        return out

    def finish(self, outs: list[Var], extra_params: list[Var] = ()) -> tuple[Body, list[Var]]:
        """Close the body: its params are the explicit ones, then one per captured value.
        Returns the body and the captured values as seen from the parent."""
        outs = [self.use(o) for o in outs]
        captured = list(self.captures.values())
        params = self.params + list(extra_params) + [inner for _, inner in captured]
        return Body(params, self.eqns, outs), [outer for outer, _ in captured]


def _check_size(t: TensorType):
    """An array that could never be allocated is refused where it is made."""
    if t.nbytes > MAX_BYTES:
        raise DiffcMemoryError(
            f"array too large: {t} would take {bytes_text(t.nbytes)}, more than the"
            f" {bytes_text(MAX_BYTES)} an array may take"
        )


def close_together(builders: list[Builder], outs: list[list[Var]]) -> tuple[list[Body], list[Var]]:
    """Finish sibling bodies (the branches of a cond) so that all take the same parameters:
    the union of what any of them captures."""
    outs = [[b.use(x) for x in o] for b, o in zip(builders, outs)]  # capture what a branch only returns
    order: list[Var] = []
    for b in builders:
        for v in b.captures:
            if v not in order:
                order.append(v)
    bodies = []
    for b, o in zip(builders, outs):
        o = [b.use(x) for x in o]
        params = list(b.params)
        for v in order:
            params.append(b.captures[v][1] if v in b.captures else Var(v.type, v.known))
        bodies.append(Body(params, b.eqns, o))
    parent = builders[0].parent
    return bodies, [parent.use(v) for v in order]


# Interval arithmetic on integer scalars (each primitive's `interval` rule), so that an index
# known to be in range (a loop index plus a small offset) needs no run-time bounds check:
# (lo, hi) means lo <= v < hi.
_INDEX = TensorType(DType.I64, ())


def _interval(x: Var):
    if x.known is not None and x.type == _INDEX:
        v = int(x.known)
        return (v, v + 1)
    return x.range


def fold_known(prim, inputs: list[Var], params: dict, out_types: list[TensorType]) -> list:
    """The known values of an equation's outputs (None each where unknown): literals (their
    value is at hand), and small integer and boolean values (shapes, indices, arange) computed
    from known inputs: never float arithmetic, never an arange(2**62)."""
    if prim.fold is None or not all(x.known is not None for x in inputs):
        return [None] * len(out_types)
    if "value" not in params and not all(_foldable(t) for t in [x.type for x in inputs] + out_types):
        return [None] * len(out_types)
    values = prim.fold(*[x.known for x in inputs], **params)
    return [np.asarray(v, dtype=t.dtype.np).reshape(t.shape) for v, t in zip(values, out_types)]


def _foldable(t: TensorType) -> bool:
    return t.dtype in (DType.I64, DType.BOOL) and t.size <= FOLD_LIMIT


# Note [Captures]
# ~~~~~~~~~~~~~~~
# The specialiser traces the body of a lambda passed to map/scan/while/if with a nested
# Builder. Whatever outer value the lambda reads (a weight, a constant) is captured on first
# use. Making captures explicit inputs is what makes weight tying visible to AD: a captured
# weight is a loop-invariant input of the loop, and its adjoint is one accumulator.
