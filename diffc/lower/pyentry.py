"""The entry Python calls directly: a CPython built-in function (METH_FASTCALL |
METH_KEYWORDS) emitted as LLVM IR, that takes the Python numbers and NumPy arrays, calls the
entry Func and returns the result as Python numbers, new NumPy arrays and tuples (a record
as the tuple of its fields, which the Python API makes a dict). Calling it
costs what calling a built-in costs (0.1-0.5 us), against 2-5 us through ctypes (see
runtime/call.py).

    PyObject *diffc_pycall(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)

It takes only what it was compiled for, given by position: for a scalar, a Python float, int
or bool, a NumPy scalar of its dtype (np.float64, np.float32, np.int64, np.bool_) or a 0-d
array of it; for an array, an exact ndarray, C-contiguous and aligned, of the dtype and
shape. Anything else, and a call whose native code reports a failure (a bounds or
recursion-depth error in ctx) or cannot allocate its results, it hands to `self`, the
general path of the Python API, which compiles other signatures, copies other arrays and
raises located errors. A call interrupted by Ctrl-C raises what Python's signal handlers
raise, else KeyboardInterrupt (See Note [Interrupts] in lower/emit.py). Its frame (ctx and
arena) is its own: it holds the GIL and runs no Python code, so its calls never overlap.
Result arrays are made by calling the runtime's allocator (np.empty, or ResultMemory for large
ones: See Note [Result memory] in runtime/call.py) through partial objects that the runtime
puts in `diffc_pyallocs`. The C API is only called, never inlined; the layout facts used are
where a PyObject's type pointer is (the last word of PyObject_HEAD), that bool's two objects
and NumPy's built-in dtypes and scalar types are unique, where a NumPy scalar keeps its value
(`SCALAR`) and where an ndarray keeps its data pointer, shape and flags (`ARRAY`), both
checked on live values when this module is imported: without them, those arguments keep the
general path. Each argument is checked by a call of the module's helper for its kind, so that
the function grows by a few lines per argument (See Note [Argument helpers])."""

from __future__ import annotations

import ctypes
import functools

import numpy as np
from llvmlite import ir

from ..ir.core import Func
from ..pytree import TreeDef
from ..typesys import DType
from .emit import (
    CTX_DEPTH,
    CTX_ERR,
    CTX_STACK,
    ERR_INTERRUPT,
    PTR,
    counted_loop,
    enter_float_mode,
    free_records_left,
    leave_float_mode,
    mem_type,
    reg_type,
    start_interrupts,
)

PYCALL_SYMBOL = "diffc_pycall"
PYCTX_SYMBOL = "diffc_pyctx"  # the ctx the runtime gives this function's calls
PYALLOCS_SYMBOL = "diffc_pyallocs"  # one callable per array result, returning a new array for it
PYSTACK_SYMBOL = "diffc_pystack"  # the stack record of the last thread the runtime saw (runtime/stack.py)
_WORD = ctypes.sizeof(ctypes.c_void_p)
OB_TYPE = object.__basicsize__ - _WORD

I1, I8, I32, I64, F64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64), ir.DoubleType()
_SCALAR_TYPES = {DType.F64: "PyFloat_Type", DType.I64: "PyLong_Type", DType.BOOL: "PyBool_Type"}
_DESCRS = {dt: f"diffc_descr_{dt.value}" for dt in (DType.F64, DType.F32, DType.I64, DType.BOOL)}
_NP_SCALARS = {dt: f"diffc_npscalar_{dt.value}" for dt in _DESCRS}  # the types np.float64, np.float32, ...
_C_CONTIGUOUS_ALIGNED = 0x0001 | 0x0100  # NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED
# the C API names the generated code refers to; runtime/call.py gives LLVM their addresses
C_API_FUNCTIONS = (
    "PyFloat_AsDouble",
    "PyFloat_FromDouble",
    "PyLong_AsLongLongAndOverflow",
    "PyLong_FromLongLong",
    "PyBool_FromLong",
    "PyTuple_New",
    "PyTuple_SetItem",
    "PyObject_CallNoArgs",
    "PyObject_Vectorcall",
    "Py_DecRef",
    "PyErr_Clear",
    "PyErr_CheckSignals",
    "PyErr_SetNone",
)
C_API_DATA = (*_SCALAR_TYPES.values(), "_Py_TrueStruct", "PyExc_KeyboardInterrupt")


def _array_layout() -> dict[str, int] | None:
    """Offsets in an ndarray object (PyArrayObject_fields: data, nd, dimensions, strides,
    base, descr, flags after the object header), or None if live arrays disagree."""
    head = object.__basicsize__
    off = {"data": head, "nd": head + _WORD, "dims": head + 2 * _WORD, "descr": head + 5 * _WORD}
    off["flags"] = head + 6 * _WORD
    a = np.zeros((3, 5))
    strided = a[:, ::2]

    def word(x, name, ctype):
        return ctype.from_address(id(x) + off[name]).value

    try:
        dims = (ctypes.c_int64 * 2).from_address(word(a, "dims", ctypes.c_void_p))
        ok = (
            word(a, "data", ctypes.c_void_p) == a.ctypes.data
            and word(a, "nd", ctypes.c_int) == 2
            and tuple(dims) == (3, 5)
            and word(a, "descr", ctypes.c_void_p) == id(a.dtype)
            and word(a, "flags", ctypes.c_int) & _C_CONTIGUOUS_ALIGNED == _C_CONTIGUOUS_ALIGNED
            and not word(strided, "flags", ctypes.c_int) & 1
        )
    except (ValueError, OSError):  # pragma: no cover - a NumPy with another layout
        return None
    return off if ok else None


ARRAY = _array_layout()


def _scalar_offset() -> int | None:
    """Where a NumPy scalar (np.float32(x), np.int64(n), ...) keeps its value (`obval`, after
    the object header), or None if live scalars disagree."""
    off = object.__basicsize__
    checks = ((np.float64(1.5), ctypes.c_double), (np.float32(-2.5), ctypes.c_float), (np.int64(-7), ctypes.c_int64))
    try:
        ok = all(ctype.from_address(id(x) + off).value == x for x, ctype in checks)
        ok = ok and all(ctypes.c_uint8.from_address(id(np.bool_(v)) + off).value == v for v in (False, True))
    except (ValueError, OSError):  # pragma: no cover - a NumPy with another layout
        return None
    return off if ok else None


SCALAR = _scalar_offset()


def eligible(f: Func, out_tree: TreeDef | None, has_prints: bool) -> bool:
    """Numbers and arrays in, numbers and arrays (in tuples and records, a record returned as
    the tuple of its fields) out, and nothing printed (a failed call is run again by the
    general path)."""

    def takes(t) -> bool:
        if t.rank == 0:
            return t.dtype in _SCALAR_TYPES or (t.dtype is DType.F32 and SCALAR is not None)
        return ARRAY is not None and t.dtype in _DESCRS

    return (
        out_tree is not None
        and not has_prints
        and all(takes(p.type) for p in f.body.params)
        and (ARRAY is not None or all(o.type.rank == 0 for o in f.body.outs))
    )


def lower_pycall(
    module: ir.Module, f: Func, target: ir.Function, out_tree: TreeDef, recursive: bool, records: bool
) -> list[ir.Function]:
    """Emit diffc_pycall for entry Func f, lowered as `target`; `recursive` when the program
    has recursive functions, which need the stack limit of the calling thread; `records` when
    it keeps tape records a failure may leave (See Note [Tape records] in prims/tape.py).
    Returns it and the helpers it calls, all glue (See Note [Glue functions] in lower/llvm.py):
    each argument is checked by a call of the helper of its kind, so that the function grows
    by a few lines per argument and result (See Note [Argument helpers])."""
    ctx_global = ir.GlobalVariable(module, PTR, PYCTX_SYMBOL)
    ctx_global.initializer = ir.Constant(PTR, None)
    stack_global = ir.GlobalVariable(module, PTR, PYSTACK_SYMBOL)
    stack_global.initializer = ir.Constant(PTR, None)
    outs = f.body.outs
    allocs = ir.GlobalVariable(module, ir.ArrayType(PTR, max(len(outs), 1)), PYALLOCS_SYMBOL)
    allocs.initializer = ir.Constant(allocs.value_type, None)
    fn = ir.Function(module, ir.FunctionType(PTR, [PTR, PTR, I64, PTR]), PYCALL_SYMBOL)
    _, args, nargs, kwnames = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    api = _Api(module)
    fallback = fn.append_basic_block("fallback")
    params = f.body.params
    # the frame's slots, in the entry block: a number argument's value, a number result's, the
    # result arrays
    here = b.alloca(I8)  # its address is this frame's
    number_slots = [b.alloca(reg_type(p.type.dtype)) if p.type.rank == 0 else None for p in params]
    out_slots = [b.alloca(mem_type(o.type.dtype)) if o.type.rank == 0 else None for o in outs]
    arrays_out = any(o.type.rank for o in outs)
    objects = b.alloca(ir.ArrayType(PTR, len(outs))) if arrays_out else None

    def check(cond, otherwise=fallback):
        _continue_if(b, cond, otherwise)

    # a NumPy float64 (or 0-d array) is a strong f64, a Python float next to f32 arrays a weak
    # one: where there are f32 values, only the general path tells them apart
    numpy_f64 = not any(p.type.dtype is DType.F32 for p in params)
    helpers = []

    def helper(h: ir.Function) -> ir.Function:
        if h not in helpers:
            helpers.append(h)
        return h

    check(_equal(b, kwnames, ir.Constant(PTR, None)))  # (arguments by name: the general path says no)
    check(_equal(b, nargs, ir.Constant(I64, len(params))))
    values = []
    for k, p in enumerate(params):
        obj = b.load(b.gep(args, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
        t = p.type
        if t.rank:
            check(
                b.call(helper(_array_helper(module, t.dtype, t.rank)), [obj, *(ir.Constant(I64, n) for n in t.shape)])
            )
            values.append(_field(b, obj, ARRAY["data"], PTR))
        else:
            slot = number_slots[k]
            check(b.call(helper(_number_helper(module, t.dtype, numpy_f64 or t.dtype is not DType.F64)), [obj, slot]))
            values.append(b.load(slot, typ=slot.allocated_type))

    ctx = b.load(ctx_global, typ=PTR)
    if recursive:
        # the stack limit, from the record of the thread whose stack this frame is in; another
        # thread's calls go to the general path, which finds their record
        record = b.load(stack_global, typ=PTR)
        check(b.icmp_unsigned("!=", record, ir.Constant(PTR, None)))
        frame = b.ptrtoint(here, I64)
        low, high, limit = (_field(b, record, 8 * k, I64) for k in range(3))
        check(b.and_(b.icmp_unsigned(">=", frame, low), b.icmp_unsigned("<", frame, high)))
        b.store(limit, b.gep(ctx, [ir.Constant(I64, CTX_STACK)], source_etype=I64))

    # results: a slot for each number, a new array for each array (made all at once: if one
    # cannot be, the others are released and the general path raises the located error)
    n_outs = ir.Constant(I64, len(outs))
    if arrays_out:
        check(b.call(helper(_results_helper(module)), [allocs, objects, n_outs]))
    made, slots = [], []
    for k, o in enumerate(outs):
        if o.type.rank == 0:
            slots.append(out_slots[k])
            continue
        arr = b.load(b.gep(objects, [ir.Constant(I64, 0), ir.Constant(I64, k)]), typ=PTR)
        made.append(arr)
        slots.append(_field(b, arr, ARRAY["data"], PTR))

    for word in (CTX_ERR, CTX_DEPTH):
        b.store(ir.Constant(I64, 0), b.gep(ctx, [ir.Constant(I64, word)], source_etype=I64))
    start_interrupts(b, module, ctx)
    entered = enter_float_mode(b, module)
    b.call(target, [ctx, *slots, *values])
    leave_float_mode(b, module, entered)
    if records:
        free_records_left(b, module, ctx)
    err = b.load(b.gep(ctx, [ir.Constant(I64, CTX_ERR)], source_etype=I64), typ=I64)
    native_failed = fn.append_basic_block("native_failed")
    check(_equal(b, err, ir.Constant(I64, 0)), native_failed)
    leaves = iter(zip(outs, slots))
    arrays = iter(made)

    def box(tree: TreeDef):
        if tree.kind == "leaf":
            o, slot = next(leaves)
            if o.type.rank:
                return next(arrays)
            v = b.load(slot, typ=mem_type(o.type.dtype))
            if o.type.dtype.is_float:
                return api.call(b, "PyFloat_FromDouble", PTR, [v if v.type == F64 else b.fpext(v, F64)])
            if o.type.dtype is DType.I64:
                return api.call(b, "PyLong_FromLongLong", PTR, [v])
            return api.call(b, "PyBool_FromLong", PTR, [b.zext(v, I64)])
        t = api.call(b, "PyTuple_New", PTR, [ir.Constant(I64, len(tree.children))])
        for k, c in enumerate(tree.children):
            api.call(b, "PyTuple_SetItem", I32, [t, ir.Constant(I64, k), box(c)])
        return t

    b.ret(box(out_tree))
    b.position_at_end(native_failed)
    if arrays_out:
        b.call(helper(_release_helper(module)), [objects, n_outs])
    interrupted = fn.append_basic_block("interrupted")
    check(b.icmp_unsigned("!=", err, ir.Constant(I64, ERR_INTERRUPT)), interrupted)
    b.branch(fallback)
    b.position_at_end(interrupted)  # Python's handlers raise KeyboardInterrupt, or it is raised here
    raised = fn.append_basic_block("raised")
    check(_equal(b, api.call(b, "PyErr_CheckSignals", I32, []), ir.Constant(I32, 0)), raised)
    api.call(b, "PyErr_SetNone", ir.VoidType(), [b.load(api.data("PyExc_KeyboardInterrupt"), typ=PTR)])
    b.branch(raised)
    b.position_at_end(raised)
    b.ret(ir.Constant(PTR, None))
    b.position_at_end(fallback)  # the general path, which the runtime gives as self
    b.ret(api.call(b, "PyObject_Vectorcall", PTR, [fn.args[0], args, nargs, kwnames]))
    return [fn, *helpers]


def _continue_if(b: ir.IRBuilder, cond, otherwise: ir.Block) -> None:
    """Branch to `otherwise` unless cond holds, and go on in a new block."""
    ok = b.function.append_basic_block("ok")
    b.cbranch(cond, ok, otherwise)
    b.position_at_end(ok)


def _field(b: ir.IRBuilder, obj, offset: int, ty):
    return b.load(b.gep(obj, [ir.Constant(I64, offset)], source_etype=I8), typ=ty)


def _equal(b: ir.IRBuilder, x, y):
    return b.icmp_unsigned("==", x, y)


def _helper(module: ir.Module, name: str, ret: ir.Type, arg_types: list, emit) -> ir.Function:
    """The module's helper function `name`, its body emitted by emit(fn, builder) the first
    time. LLVM's optimiser skips it (optnone): a few nanoseconds per call, against a few
    milliseconds of optimiser per helper that a short program's compile would pay."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, arg_types), name)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.attributes.add("optnone")
        emit(fn, ir.IRBuilder(fn.append_basic_block("entry")))
    return fn


def _returning_false(fn: ir.Function) -> ir.Block:
    no = fn.append_basic_block("no")
    ir.IRBuilder(no).ret(ir.Constant(I1, 0))
    return no


def _array_checks(b: ir.IRBuilder, api: _Api, obj, dtype: DType, rank: int, no: ir.Block) -> None:
    """Go on only if the ndarray obj is of the dtype and rank, C-contiguous and aligned."""
    _continue_if(b, _equal(b, _field(b, obj, ARRAY["descr"], PTR), api.data(_DESCRS[dtype])), no)
    flags = b.and_(_field(b, obj, ARRAY["flags"], I32), ir.Constant(I32, _C_CONTIGUOUS_ALIGNED))
    _continue_if(b, _equal(b, flags, ir.Constant(I32, _C_CONTIGUOUS_ALIGNED)), no)
    _continue_if(b, _equal(b, _field(b, obj, ARRAY["nd"], I32), ir.Constant(I32, rank)), no)


def _array_helper(module: ir.Module, dtype: DType, rank: int) -> ir.Function:
    """i1 (ptr obj, i64 dim_0, ...): whether obj is an exact ndarray of the dtype and shape,
    C-contiguous and aligned. Each check reads what the one before it made safe to read."""

    def emit(fn, b):
        api = _Api(module)
        obj, *dims = fn.args
        no = _returning_false(fn)
        _continue_if(b, _equal(b, _field(b, obj, OB_TYPE, PTR), api.data("diffc_ndarray_type")), no)
        _array_checks(b, api, obj, dtype, rank, no)
        shape = _field(b, obj, ARRAY["dims"], PTR)
        same = [_equal(b, _field(b, shape, 8 * axis, I64), n) for axis, n in enumerate(dims)]
        b.ret(functools.reduce(b.and_, same))

    return _helper(module, f"diffc_pyarray_{dtype.value}_{rank}", I1, [PTR] + [I64] * rank, emit)


def _number_helper(module: ir.Module, dtype: DType, numpy_too: bool) -> ir.Function:
    """i1 (ptr obj, ptr value): whether obj is a scalar argument of the dtype, its value then
    stored: a Python number of its type, or (when `numpy_too`) a NumPy scalar of the dtype or
    a 0-d array of it (the three have one signature)."""

    def emit(fn, b):
        api = _Api(module)
        obj, out = fn.args
        overflow = b.alloca(I32)
        no = _returning_false(fn)
        typ = _field(b, obj, OB_TYPE, PTR)

        def case(type_symbol: str, read):
            this, other = fn.append_basic_block("is"), fn.append_basic_block("is_not")
            b.cbranch(_equal(b, typ, api.data(type_symbol)), this, other)
            b.position_at_end(this)
            b.store(read(), out)
            b.ret(ir.Constant(I1, 1))
            b.position_at_end(other)

        def python_number():
            if dtype is DType.F64:
                return api.call(b, "PyFloat_AsDouble", F64, [obj])
            if dtype is DType.I64:
                v = api.call(b, "PyLong_AsLongLongAndOverflow", I64, [obj, overflow])
                _continue_if(b, _equal(b, b.load(overflow, typ=I32), ir.Constant(I32, 0)), no)
                return v
            return _equal(b, obj, api.data("_Py_TrueStruct"))

        def load(ptr, offset: int):
            v = _field(b, ptr, offset, mem_type(dtype))
            return b.icmp_unsigned("!=", v, ir.Constant(I8, 0)) if dtype is DType.BOOL else v

        def zero_d():
            _array_checks(b, api, obj, dtype, 0, no)
            return load(_field(b, obj, ARRAY["data"], PTR), 0)

        if dtype in _SCALAR_TYPES:
            case(_SCALAR_TYPES[dtype], python_number)
        if numpy_too:
            if SCALAR is not None:
                case(_NP_SCALARS[dtype], lambda: load(obj, SCALAR))
            if ARRAY is not None:
                case("diffc_ndarray_type", zero_d)
        b.branch(no)

    name = f"diffc_pynumber_{dtype.value}" + ("" if numpy_too else "_python")
    return _helper(module, name, I1, [PTR, PTR], emit)


def _release_helper(module: ir.Module) -> ir.Function:
    """void (ptr objects, i64 n): Py_DecRef of each of n objects (null ones are skipped)."""

    def emit(fn, b):
        api = _Api(module)
        objects, n = fn.args
        counted_loop(
            b,
            n,
            lambda k: api.call(b, "Py_DecRef", ir.VoidType(), [b.load(b.gep(objects, [k], source_etype=PTR), typ=PTR)]),
        )
        b.ret_void()

    return _helper(module, "diffc_pyrelease", ir.VoidType(), [PTR, I64], emit)


def _results_helper(module: ir.Module) -> ir.Function:
    """i1 (ptr allocs, ptr objects, i64 n): objects[k] = allocs[k]() for each of the n
    callables (null for a number result: null); whether all were made. If one cannot be, the
    ones made are released and the Python error cleared."""
    release = _release_helper(module)

    def emit(fn, b):
        api = _Api(module)
        allocs, objects, n = fn.args
        failed = fn.append_basic_block("failed")

        def make(k):
            alloc = b.load(b.gep(allocs, [k], source_etype=PTR), typ=PTR)
            slot = b.gep(objects, [k], source_etype=PTR)
            b.store(ir.Constant(PTR, None), slot)
            with b.if_then(b.icmp_unsigned("!=", alloc, ir.Constant(PTR, None))):
                obj = api.call(b, "PyObject_CallNoArgs", PTR, [alloc])
                _continue_if(b, b.icmp_unsigned("!=", obj, ir.Constant(PTR, None)), failed)
                b.store(obj, slot)

        k = counted_loop(b, n, make)
        b.ret(ir.Constant(I1, 1))
        b.position_at_end(failed)  # no memory: the general path raises the located error
        b.call(release, [objects, k])  # (those before the k-th)
        api.call(b, "PyErr_Clear", ir.VoidType(), [])
        b.ret(ir.Constant(I1, 0))

    return _helper(module, "diffc_pyresults", I1, [PTR, PTR, I64], emit)


class _Api:
    """Declarations of the C API in one module."""

    def __init__(self, module: ir.Module):
        self.module = module

    def data(self, name: str):
        g = self.module.globals.get(name)
        if g is None:
            g = ir.GlobalVariable(self.module, I8, name)
        return g

    def call(self, b: ir.IRBuilder, name: str, ret, args):
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, [a.type for a in args]), name)
        return b.call(fn, args)


def symbol_addresses() -> dict[str, int]:
    """The addresses of the names above in this process: the C API's, NumPy's array type
    and its built-in dtypes (objects that live as long as the process)."""
    api = ctypes.pythonapi
    out = {name: ctypes.cast(getattr(api, name), ctypes.c_void_p).value for name in C_API_FUNCTIONS}
    out.update({name: ctypes.addressof(ctypes.c_char.in_dll(api, name)) for name in C_API_DATA})
    out["diffc_ndarray_type"] = id(np.ndarray)
    out.update({name: id(np.dtype(dt.np)) for dt, name in _DESCRS.items()})
    out.update({name: id(dt.np.type) for dt, name in _NP_SCALARS.items()})
    return out


# Note [Argument helpers]
# ~~~~~~~~~~~~~~~~~~~~~~~
# diffc_pycall checked each argument inline, a branch per check and per dimension, and released
# the arrays made so far at each result that could not be made: about 90 lines of LLVM IR per
# array argument and result, 5500 lines for the 65 arrays of an MLP of 32 layers written out
# (0.24 s of LLVM's optimiser, as much as the rest of the program). Now the checks of one kind
# are a function of the module, emitted once and called once per argument: an array of a dtype
# and rank (its dimensions passed as constants; it returns whether the argument is taken, the
# caller then reads the data pointer), a number of a dtype, the making of all result arrays in
# a loop (releasing those made when one cannot be), their release after a failed call. So the
# entry grows by about 12 lines per array argument and result, and the checks run in the same
# order, each reading only what the one before made safe to read. The helpers are internal,
# `noinline` (inlined, the optimiser would take the lines back) and `optnone`: optimised, each
# cost a few milliseconds of LLVM's time, which made the workloads' compiles 5-10% slower; as
# they are, a call with 1 to 8 arguments costs 2-4 ns more than with the inline checks (70 ns
# against 68 for one number, 87 against 83 for 8 arrays), one with 65 no more, and LLVM takes
# no longer on the workloads' modules (0.96-0.98 of the time, their entry functions optimised
# to the same code), 12% less on the 32-layer MLP's, 26% less on the 64-layer one's.
