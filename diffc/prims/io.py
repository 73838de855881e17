"""print: the one effect. It calls back into the runtime, which formats the values."""

from __future__ import annotations

from llvmlite import ir

from ..lower.emit import I64, PTR, VOID, Arr
from .core import primitive

# Every print equation lowered gets an id here; the runtime reads (label, tree, types) by id.
PRINT_SITES: list[tuple] = []
PRINT_SYMBOL = "diffc_print"


def _print_lower(em, eqn, ins):
    site = len(PRINT_SITES)
    PRINT_SITES.append((eqn.params["label"], eqn.params["tree"], [x.type for x in eqn.inputs]))
    slots = em.alloca(PTR, size=max(len(ins), 1))
    for k, (x, v) in enumerate(zip(eqn.inputs, ins)):
        if isinstance(v, Arr):
            p = em.base_ptr(em.materialise(v))
        else:
            p = em.alloca(v.type if x.type.dtype.name != "BOOL" else ir.IntType(8))
            em.store_scalar_ptr(p, x.type.dtype, v)
        em.b.store(p, em.b.gep(slots, [em.i64(k)], source_etype=PTR))
    em.call_extern(PRINT_SYMBOL, VOID, [em.i64(site), slots], [I64, PTR])
    return []


print_p = primitive("print", shape=lambda ts, label, tree: [], lower=_print_lower, effect=True, nondiff=True)
