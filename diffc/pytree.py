"""Trees of values: tuples and records around leaves. The specialiser flattens trees of IR
values into the flat lists that IR ops take; the runtime flattens Python arguments (tuples,
dicts, arrays) the same way, so one TreeDef describes both sides of a compiled call."""

from __future__ import annotations

from dataclasses import dataclass


class Record:
    """A DFL record value: named fields, kept in the order they were written."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict):
        self.fields = dict(fields)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v!r}" for k, v in self.fields.items()) + "}"


@dataclass(frozen=True)
class TreeDef:
    """kind is 'leaf', 'tuple' or 'record' (children in sorted field order)."""

    kind: str
    children: tuple[TreeDef, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind == "leaf" else sum(c.num_leaves for c in self.children)

    def __repr__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "tuple":
            return "(" + ", ".join(map(repr, self.children)) + ("," if len(self.children) == 1 else "") + ")"
        return "{" + ", ".join(f"{n}: {c!r}" for n, c in zip(self.names, self.children)) + "}"


LEAF = TreeDef("leaf")


def flatten(value, is_record=lambda v: isinstance(v, Record), record_items=lambda v: v.fields.items()):
    """(leaves, treedef) of a tree of tuples and records."""
    leaves: list = []
    return leaves, _flatten(value, leaves, is_record, record_items)


def _flatten(v, leaves, is_record, record_items) -> TreeDef:
    # a module-level recursion, not a closure that refers to itself: such a closure is a
    # reference cycle that keeps every leaf it saw alive until the cycle collector runs
    if isinstance(v, tuple):
        return TreeDef("tuple", tuple(_flatten(c, leaves, is_record, record_items) for c in v))
    if is_record(v):
        items = sorted(record_items(v), key=lambda kv: kv[0])
        return TreeDef(
            "record", tuple(_flatten(c, leaves, is_record, record_items) for _, c in items), tuple(k for k, _ in items)
        )
    leaves.append(v)
    return LEAF


def unflatten(tree: TreeDef, leaves, make_record=Record):
    """The inverse of flatten."""
    return _unflatten(tree, iter(leaves), make_record)


def _unflatten(t: TreeDef, it, make_record):
    if t.kind == "leaf":
        return next(it)
    kids = [_unflatten(c, it, make_record) for c in t.children]
    if t.kind == "tuple":
        return tuple(kids)
    return make_record(dict(zip(t.names, kids)))
