"""The entry Python calls directly, for functions of numbers to numbers: a CPython built-in
function (METH_FASTCALL) emitted as LLVM IR, that takes the Python numbers, calls the entry
Func and returns the result as Python numbers and tuples. Calling it costs what calling a
built-in costs (about 0.1 us), against 1-2 us through ctypes (see runtime/call.py).

    PyObject *diffc_pycall(PyObject *self, PyObject *const *args, Py_ssize_t nargs)

It takes only the exact argument types it was compiled for (float, int, bool) and returns
NotImplemented for anything else, and when the native code reports a failure (a bounds or
recursion-depth error in ctx): the caller then takes the general path, which compiles other
signatures and raises located errors. Only the C API's functions are called, and two
layout facts are used: where a PyObject's type pointer is (`OB_TYPE`, the last word of
PyObject_HEAD), and that bool's two objects are unique."""

from __future__ import annotations

import ctypes

from llvmlite import ir

from ..ir.core import Func
from ..pytree import TreeDef
from ..typesys import DType
from .emit import CTX_DEPTH, CTX_ERR, PTR, mem_type

PYCALL_SYMBOL = "diffc_pycall"
PYCTX_SYMBOL = "diffc_pyctx"  # the ctx the runtime gives this function's calls
OB_TYPE = object.__basicsize__ - ctypes.sizeof(ctypes.c_void_p)

I1, I32, I64, F64 = ir.IntType(1), ir.IntType(32), ir.IntType(64), ir.DoubleType()
_IN_TYPES = {DType.F64: "PyFloat_Type", DType.I64: "PyLong_Type", DType.BOOL: "PyBool_Type"}
# the C API names the generated code refers to; runtime/call.py gives LLVM their addresses
C_API_FUNCTIONS = (
    "PyFloat_AsDouble",
    "PyFloat_FromDouble",
    "PyLong_AsLongLongAndOverflow",
    "PyLong_FromLongLong",
    "PyBool_FromLong",
    "PyTuple_New",
    "PyTuple_SetItem",
    "Py_IncRef",
)
C_API_DATA = (*_IN_TYPES.values(), "_Py_TrueStruct", "_Py_NotImplementedStruct")


def eligible(f: Func, out_tree: TreeDef | None, has_prints: bool) -> bool:
    """Numbers in, numbers (in tuples) out, and nothing printed (a failed call is run again by
    the general path)."""

    def tuples_only(t: TreeDef) -> bool:
        return t.kind == "leaf" or (t.kind == "tuple" and all(tuples_only(c) for c in t.children))

    return (
        out_tree is not None
        and not has_prints
        and tuples_only(out_tree)
        and all(p.type.rank == 0 and p.type.dtype in _IN_TYPES for p in f.body.params)
        and all(o.type.rank == 0 for o in f.body.outs)
    )


def lower_pycall(module: ir.Module, f: Func, target: ir.Function, out_tree: TreeDef):
    """Emit diffc_pycall for entry Func f, lowered as `target`."""
    ctx_global = ir.GlobalVariable(module, PTR, PYCTX_SYMBOL)
    ctx_global.initializer = ir.Constant(PTR, None)
    fn = ir.Function(module, ir.FunctionType(PTR, [PTR, PTR, I64]), PYCALL_SYMBOL)
    _, args, nargs = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    api = _Api(module, b)
    fallback = fn.append_basic_block("fallback")
    overflow = b.alloca(I32)

    def check(cond):
        ok = fn.append_basic_block("ok")
        b.cbranch(cond, ok, fallback)
        b.position_at_end(ok)

    params = f.body.params
    check(b.icmp_signed("==", nargs, ir.Constant(I64, len(params))))
    values = []
    for k, p in enumerate(params):
        obj = b.load(b.gep(args, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
        typ = b.load(b.gep(obj, [ir.Constant(I64, OB_TYPE)], source_etype=ir.IntType(8)), typ=PTR)
        check(b.icmp_unsigned("==", typ, api.data(_IN_TYPES[p.type.dtype])))
        if p.type.dtype is DType.F64:
            values.append(api.call("PyFloat_AsDouble", F64, [obj]))
        elif p.type.dtype is DType.I64:
            v = api.call("PyLong_AsLongLongAndOverflow", I64, [obj, overflow])
            check(b.icmp_signed("==", b.load(overflow, typ=I32), ir.Constant(I32, 0)))
            values.append(v)
        else:
            values.append(b.icmp_unsigned("==", obj, api.data("_Py_TrueStruct")))
    ctx = b.load(ctx_global, typ=PTR)
    for word in (CTX_ERR, CTX_DEPTH):
        b.store(ir.Constant(I64, 0), b.gep(ctx, [ir.Constant(I64, word)], source_etype=I64))
    slots = [b.alloca(mem_type(o.type.dtype)) for o in f.body.outs]
    b.call(target, [ctx, *slots, *values])
    err = b.load(b.gep(ctx, [ir.Constant(I64, CTX_ERR)], source_etype=I64), typ=I64)
    check(b.icmp_signed("==", err, ir.Constant(I64, 0)))
    leaves = iter(zip(f.body.outs, slots))

    def box(tree: TreeDef):
        if tree.kind == "leaf":
            o, slot = next(leaves)
            v = b.load(slot, typ=mem_type(o.type.dtype))
            if o.type.dtype.is_float:
                return api.call("PyFloat_FromDouble", PTR, [v if v.type == F64 else b.fpext(v, F64)])
            if o.type.dtype is DType.I64:
                return api.call("PyLong_FromLongLong", PTR, [v])
            return api.call("PyBool_FromLong", PTR, [b.zext(v, I64)])
        t = api.call("PyTuple_New", PTR, [ir.Constant(I64, len(tree.children))])
        for k, c in enumerate(tree.children):
            api.call("PyTuple_SetItem", I32, [t, ir.Constant(I64, k), box(c)])
        return t

    b.ret(box(out_tree))
    b.position_at_end(fallback)
    not_impl = api.data("_Py_NotImplementedStruct")
    api.call("Py_IncRef", ir.VoidType(), [not_impl])
    b.ret(not_impl)


class _Api:
    """Declarations of the C API in one module."""

    def __init__(self, module: ir.Module, b: ir.IRBuilder):
        self.module, self.b = module, b

    def data(self, name: str):
        g = self.module.globals.get(name)
        if g is None:
            g = ir.GlobalVariable(self.module, ir.IntType(8), name)
        return g

    def call(self, name: str, ret, args):
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, [a.type for a in args]), name)
        return self.b.call(fn, args)


def c_api_addresses() -> dict[str, int]:
    """The addresses of the C API names above, in this process."""
    api = ctypes.pythonapi
    out = {name: ctypes.cast(getattr(api, name), ctypes.c_void_p).value for name in C_API_FUNCTIONS}
    out.update({name: ctypes.addressof(ctypes.c_char.in_dll(api, name)) for name in C_API_DATA})
    return out
