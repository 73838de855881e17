"""The program being built, for transforms that add functions to it: the derivative of a
recursive function is a pair of recursive functions (see prims/call.py). And how reverse mode
is building the code it emits now (see Note [Differentiating a tape] in ad/via.py)."""

from __future__ import annotations

import enum
from contextlib import contextmanager
from contextvars import ContextVar

_program: ContextVar = ContextVar("diffc_program")


def program():
    return _program.get()


def set_program(prog) -> None:
    _program.set(prog)


class Mode(enum.Enum):
    """What reverse mode is building.

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


_mode: ContextVar = ContextVar("diffc_ad_mode", default=Mode.OPEN)


def mode() -> Mode:
    return _mode.get()


@contextmanager
def building(m: Mode):
    """Reverse-mode code built inside this block is built in mode m."""
    token = _mode.set(m)
    try:
        yield
    finally:
        _mode.reset(token)
