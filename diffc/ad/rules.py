"""The derivative-rule protocol: what the transforms hand to every primitive's rules.

A primitive's rules (ir/prim.py, Prim) receive a context `ctx` as their first argument:
  jvp(ctx, params, ins, outs, tangents) -> tangents of the outs (None: zero)
  vjp(ctx, params, aux, outs, cts[, current]) -> cotangents of the ins (None: zero)
  vjp_fwd(ctx, eqn, ins, active) -> (outs, aux)      (structured ops)
  jvp_full(ctx, eqn, ins, tangents) -> (outs, tangents)
The context carries the builder the rule emits into (`ctx.b`), the transforms a structured op
applies to its bodies (`ctx.vjp_split`, `ctx.jvp_body`), the program being built (a recursive
function's derivatives are functions added to it: prims/call.py) and the reverse-mode Mode the
code is built in. So prims/ needs nothing from ad/: a rule reaches the transforms through the
context it is given (and names its class nowhere)."""

from __future__ import annotations

import enum

from ..ir.core import Body
from . import batch, loops, via
from .jvp import jvp_body
from .vjp import residual_values, unsupported, vjp_split


class Mode(enum.Enum):
    """What reverse mode is building (see Note [Differentiating a tape] in ad/via.py).

    OPEN: code that may be differentiated again: a tape's reverse op also takes the inputs of
      its forward op (its origin), so that its own derivative can recompute the residuals.
    TAPE_INSIDE: the bodies of a tape's forward and reverse ops (a while's taped body, a
      recursive function's .fwd/.bwd): never differentiated themselves (their derivative is
      made from the original loop or function), so no origin is kept, and nothing more is
      taped per iteration or call.
    TAPE_FREE: a recursive function's tape-free reverse (.rev): a recursive call is undone by
      calling .rev again, which recomputes what it needs."""

    OPEN = "open"
    TAPE_INSIDE = "tape_inside"
    TAPE_FREE = "tape_free"


class Ctx:
    """What a derivative rule is given: the builder `b` it emits into, the `program` being
    built, the reverse-mode `mode`, and the transforms, which pass the context on to the rules
    of the bodies they differentiate. A context is never changed: `on` and `building` make
    the context of a nested builder or mode."""

    Mode = Mode  # (for the rules, which do not import ad/)

    def __init__(self, program, b=None, mode: Mode = Mode.OPEN):
        self.program, self.b, self.mode = program, b, mode

    def on(self, b) -> Ctx:
        """The context of code built in builder b (a nested body)."""
        return Ctx(self.program, b, self.mode)

    def building(self, mode: Mode) -> Ctx:
        """The context of reverse-mode code built in `mode`."""
        return Ctx(self.program, self.b, mode)

    @property
    def keeps_origin(self) -> bool:
        """Whether a tape's reverse op takes its forward op's inputs: the code may be
        differentiated again (See Note [Differentiating a tape])."""
        return self.mode is not Mode.TAPE_INSIDE

    # --- the transforms (ad/vjp.py, ad/jvp.py, ad/via.py) --------------------------------------

    def vjp_split(self, body: Body, needs, accumulate=()):
        return vjp_split(self, body, needs, accumulate)

    def jvp_body(self, body: Body, has_tangent) -> Body:
        return jvp_body(self, body, has_tangent)

    def via_jvp_full(self, equivalent, eqn, ins, ts):
        return via.jvp_full(self, equivalent, eqn, ins, ts)

    def via_vjp_fwd(self, equivalent, eqn, ins, act):
        return via.vjp_fwd(self, equivalent, eqn, ins, act)

    def via_vjp(self, params, aux, outs, cts):
        return via.vjp(self, params, aux, outs, cts)

    batched = staticmethod(batch.batched)

    residual_values = staticmethod(residual_values)
    unsupported = staticmethod(unsupported)

    # --- what the structured ops' rules share (ad/loops.py) ------------------------------------

    def seed_or_zeros(self, ct, t):
        """ct, or zeros of type t where the cotangent (or tangent) is a structural zero."""
        return loops.seed_or_zeros(self.b, ct, t)

    closed_body = staticmethod(loops.closed_body)
    tangents_of = staticmethod(loops.tangents_of)
    tape_note = staticmethod(loops.tape_note)
    LoopResiduals = loops.LoopResiduals
    split_tangents = staticmethod(loops.split_tangents)

    def reverse_loop(self, res, outs, cts, current, **layout):
        """The backward scan of a map or scan (ad/loops.py)."""
        return loops.reverse_loop(self, res, outs, cts, current, **layout)

    def with_tangents(self, body, ins, ts, **layout):
        """A loop's body and inputs with tangents interleaved (ad/loops.py)."""
        return loops.with_tangents(self, body, ins, ts, **layout)
