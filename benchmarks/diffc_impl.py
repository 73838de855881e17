"""diffc behind the peers' interface (see peers/__init__.py): the workload's .dfl program,
loaded once; fwd is m.loss and value_and_grad is diffc.value_and_grad over the params."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import diffc

WORKLOADS = Path(__file__).resolve().parent / "workloads"


def available():
    """True once a one-line program compiled and ran: the one-time work (LLVM's initialisation,
    and the matrix kernel diffc compiles once and keeps in its disk cache) is then kept out of
    the first workload's compile time."""
    try:
        diffc.compile("fn f(x) = x + 1.0").f(1.0)
        diffc.compile("fn f(a, b) = a @ b").f(np.ones((32, 32)), np.ones((32, 32)))
    except Exception as e:
        return False, f"diffc failed to compile a one-line program: {type(e).__name__}: {e}"
    return True, ""


def make(name, params, inputs):
    path = WORKLOADS / f"{name}.dfl"
    if not path.exists():
        return None
    m = diffc.load(path)
    loss = m.loss
    vg = diffc.value_and_grad(loss, argnums=tuple(range(len(params))))
    args = [*params, *inputs]

    def value_and_grad():
        value, grads = vg(*args)
        return value, list(grads)

    return (lambda: loss(*args)), value_and_grad


def tape_mib(name, params, inputs) -> float:
    """The residuals that the value-and-grad program's loops tape, in MiB: the sum of the tape
    notes `diffc show --grad` prints for the loops of its forward pass (a `while` loop's tape,
    sized at run time, is not counted)."""
    from diffc.pipeline import to_ir
    from diffc.pytree import unflatten
    from diffc.runtime.values import type_of

    m = diffc.load(WORKLOADS / f"{name}.dfl")
    vg = diffc.value_and_grad(m.loss, argnums=tuple(range(len(params))))
    arrays, key = vg.signature(*params, *inputs)
    prog, _ = to_ir(m.ast, "loss", unflatten(key[0], [type_of(a) for a in arrays]), transform=vg.transform)
    notes = [e.note for e in prog.main.body.eqns if e.note]
    return sum(int(b) for note in notes for b in re.findall(r"iterations = (\d+) B", note)) / 2**20
