"""How LLVM's work is chosen per function (Note [Glue functions] in lower/llvm.py): the
direct Python entry is compiled without the vectorisers and calls the entry Func, which
keeps the whole pipeline; no timed assertion, the mechanism itself is checked."""

from __future__ import annotations

import re

import diffc
from diffc.lower import jit
from diffc.lower.llvm import lower_program
from diffc.lower.pyentry import PYCALL_SYMBOL
from diffc.pipeline import to_ir
from diffc.typesys import DType, TensorType

SOURCE = "fn f(x) = sum(x * 2.5)\n"


def lowered():
    prog, tree = to_ir(diffc.compile(SOURCE).ast, "f", (TensorType(DType.F64, (1000,)),))
    return lower_program(prog, tree).module


def functions(text: str) -> dict[str, str]:
    """{name: text} of each function defined in LLVM IR text."""
    out = {}
    for chunk in re.split(r"\n(?=define )", text)[1:]:
        out[re.match(r'define [^@]*@"?([\w.]+)', chunk).group(1)] = chunk
    return out


def test_python_entry_is_glue_and_calls_the_entry_func_not_inlined():
    fns = functions(str(lowered()))
    head = fns[PYCALL_SYMBOL].split("\n", 1)[0]
    assert "noimplicitfloat" in head
    calls = re.findall(r'call [^\n]*@"dfl\.main"\([^\n]*', fns[PYCALL_SYMBOL])
    assert calls and all(c.rstrip().endswith("noinline") for c in calls)
    assert all("noimplicitfloat" not in fns[name].split("\n", 1)[0] for name in fns if name != PYCALL_SYMBOL)


def test_entry_func_loop_is_vectorised_once_the_glue_is_optimised():
    fns = functions(str(jit.optimise(str(lowered()))))
    assert re.search(r"<\d+ x double>", fns["dfl.main"])  # its own function, vectorised
    assert re.search(r"call [^\n]*@dfl\.main", fns[PYCALL_SYMBOL])  # called, not inlined
