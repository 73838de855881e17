"""One record per primitive (ir/prim.py): what the passes know about a primitive is a field of
its declaration, never a table keyed by its name, and a fact whose omission would fail
silently has a safe default or is checked when the primitive is declared."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from diffc.ir.build import Builder
from diffc.ir.core import Var
from diffc.ir.prim import Kind, Loop, Prim
from diffc.prims.core import all_prims
from diffc.typesys import DType, TensorType

DIFFC = Path(__file__).resolve().parents[2] / "diffc"


def _shape(in_types, **params):
    return [in_types[0]]


def test_passes_never_compare_a_primitive_by_name():
    """ir/, lower/, optimise/ and ad/ read a primitive's fields (or, above prims/, the prim
    objects), never its name: a new primitive then cannot be silently missed by a table."""
    by_name = re.compile(r"prim\.name\s*(==|!=|in\b|not\s+in\b)|ops\.emit\(|core\.get\(|all_prims\(\)\[")
    found = []
    for stage in ("ir", "lower", "optimise", "ad"):
        for path in sorted((DIFFC / stage).glob("*.py")):
            for k, line in enumerate(path.read_text().splitlines(), 1):
                if by_name.search(line):
                    found.append(f"{path.relative_to(DIFFC)}:{k}: {line.strip()}")
    assert not found, "\n".join(found)


def test_an_elementwise_primitive_must_say_how_it_differentiates():
    with pytest.raises(ValueError, match="needs partials or a derivative rule"):
        Prim("cube", shape=_shape, kind=Kind.ELEMENTWISE)
    with pytest.raises(ValueError, match="needs partials or a derivative rule"):
        Prim("cube", shape=_shape, kind=Kind.ELEMENTWISE, vjp=lambda b, params, ins, outs, cts: cts)
    Prim("cube", shape=_shape, kind=Kind.ELEMENTWISE, nondiff=True)  # (a comparison, say)


def test_a_loop_and_only_a_loop_has_an_operand_layout():
    with pytest.raises(ValueError, match="Loop layout"):
        Prim("repeat", shape=_shape, kind=Kind.LOOP)
    with pytest.raises(ValueError, match="Loop layout"):
        Prim("twice", shape=_shape, loop=Loop())


def test_facts_default_to_what_is_safe():
    """An op of no declared kind is not hoisted out of loops, not recomputed by a backward
    pass, not cheap, and makes structural zeros (the guards keep their checks)."""
    p = Prim("opaque", shape=_shape)
    assert not p.hoistable and not p.remat and not p.cheap and not p.keeps_zeros
    assert p.interval is None and p.taped is None and p.accumulate_as is None and p.cost == 1
    assert Prim("view", shape=_shape, kind=Kind.SHAPE).hoistable
    assert Prim("ew", shape=_shape, kind=Kind.ELEMENTWISE, nondiff=True, fusable=True).cheap
    assert Prim("total", shape=_shape, kind=Kind.REDUCTION).reads_all


def test_every_declared_primitive_is_consistent():
    for name, p in all_prims().items():
        if p.partials is not None or p.linear is not None:
            assert p.kind is Kind.ELEMENTWISE and p.jvp and p.vjp, name
        if p.kind is Kind.ELEMENTWISE and not p.nondiff:
            assert p.vjp is not None and p.jvp is not None, name
        if p.loop is not None and p.loop.consts is not None:
            assert p.loop.trips is not None, name  # (licm asks whether the loop may not run)


def test_the_ir_builds_without_the_primitive_layer():
    """The IR sits below prims/: re-creating a known value inside a nested body (Builder.use)
    emits the IR's own `const`, and no module of ir/ imports a primitive module, not even
    inside a function."""
    for path in sorted((DIFFC / "ir").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("prims"), f"{path.name} imports {node.module}"
    outer = Builder()
    v = Var(TensorType(DType.I64, ()), known=np.asarray(3))
    c = Builder(outer).use(v)
    assert c is not v and c.known == 3
