"""Generic traversals of the IR shared by passes."""

from __future__ import annotations

from collections.abc import Iterator

from .core import Body, Eqn, Program


def all_bodies(body: Body) -> Iterator[Body]:
    """`body` and every body nested in it, outermost first."""
    yield body
    for eqn in body.eqns:
        for sub in eqn.bodies():
            yield from all_bodies(sub)


def all_eqns(body: Body) -> Iterator[Eqn]:
    for b in all_bodies(body):
        yield from b.eqns


def program_bodies(prog: Program) -> Iterator[Body]:
    for f in prog.funcs.values():
        yield from all_bodies(f.body)
