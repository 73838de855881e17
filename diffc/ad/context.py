"""The program being built, for transforms that add functions to it: the derivative of a
recursive function is a pair of recursive functions (see prims/call.py)."""

from __future__ import annotations

from contextvars import ContextVar

_program: ContextVar = ContextVar("diffc_program")


def program():
    return _program.get()


def set_program(prog) -> None:
    _program.set(prog)
