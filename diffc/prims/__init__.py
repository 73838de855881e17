"""Primitives: each declared once (prims/core.py) with all of its rules."""


def load_all():
    """Import every primitive family, so that the registry is complete."""
    from . import control, elementwise, io, linalg, random, reduce, shape, tape  # noqa: F401
