"""print: the one effect. It calls back into the runtime, which formats the values."""

from __future__ import annotations

from llvmlite import ir

from ..lower.emit import I64, PTR, VOID, Arr
from .core import primitive

# A program numbers its print sites from 0 and adds PRINT_BASE, a global the runtime sets when
# it loads the program's machine code (so cached machine code works in any process); the
# lowering collects each site's (label, tree, types) for the runtime (em.m.prints).
PRINT_SYMBOL = "diffc_print"
PRINT_BASE = "diffc_print_base"


def _print_lower(em, eqn, ins):
    base = em.m.module.globals.get(PRINT_BASE)
    if base is None:
        base = ir.GlobalVariable(em.m.module, I64, name=PRINT_BASE)
        base.initializer = ir.Constant(I64, 0)
    em.m.prints.append((eqn.params["label"], eqn.params["tree"], [x.type for x in eqn.inputs]))
    site = em.b.add(em.b.load(base, typ=I64), em.i64(len(em.m.prints) - 1))
    slots = em.alloca(PTR, size=max(len(ins), 1))
    for k, (x, v) in enumerate(zip(eqn.inputs, ins)):
        if isinstance(v, Arr):
            p = em.base_ptr(em.materialise(v))
        else:
            p = em.alloca(v.type if x.type.dtype.name != "BOOL" else ir.IntType(8))
            em.store_scalar_ptr(p, x.type.dtype, v)
        em.b.store(p, em.b.gep(slots, [em.i64(k)], source_etype=PTR))
    # an exception in the runtime's Python code (a print hook's, Ctrl-C) fails the call
    em.call_extern(PRINT_SYMBOL, VOID, [site, slots, em.ctx], [I64, PTR, PTR])
    em.check_failed()
    return []


print_p = primitive("print", shape=lambda ts, label, tree: [], lower=_print_lower, effect=True, nondiff=True)
