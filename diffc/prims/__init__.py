"""Primitives: each declared once (prims/core.py) with all of its rules."""


def load_all():
    """Import every primitive family, so that the registry is complete."""
    from . import call, checkpoint, cond, elementwise, io, linalg, map_, random, reduce, scan, shape, tape, while_  # noqa: F401
