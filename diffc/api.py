"""The Python API: load or compile a program, then call its functions with NumPy values.
Each function is compiled once per argument signature (dtypes, shapes, structure)."""

from __future__ import annotations

import functools
import operator
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from . import bigstack, resolve
from .errors import DiffcError, DiffcMemoryError, UsageError
from .pipeline import compile_native
from .pytree import unflatten
from .runtime import call, params, threads
from .runtime.call import FELL_BACK
from .runtime.values import WeakFloat, flatten_args, to_python, type_of
from .specialise import signature_text, with_static
from .specialise.builtins import BUILTINS
from .specialise.values import Static, Weak
from .typesys import DType, TensorType, dtype_of_numpy

_FAST_DTYPES = {np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.bool_)}
_NP_SCALARS = frozenset(d.type for d in _FAST_DTYPES)  # np.float64, np.float32, np.int64, np.bool_
DEFAULT_MAX_SIGNATURES = 64


def _boundary(fn):
    """A public entry point: a DiffcError leaves it without the frames of diffc's insides
    behind it (and without the exception it was raised from), so the user's traceback ends
    at their own call; the error object, its span and message are unchanged."""

    @functools.wraps(fn)
    def entry(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DiffcError as e:
            raise e.with_traceback(None) from None

    return entry


def max_signatures() -> int:
    """How many signatures of one function keep their machine code (DIFFC_MAX_SIGNATURES)."""
    text = os.environ.get("DIFFC_MAX_SIGNATURES", "")
    if not text:
        return DEFAULT_MAX_SIGNATURES
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"DIFFC_MAX_SIGNATURES must be a whole number of at least 1, got {text!r}")
    return n


class Function:
    """A DFL function callable from Python; compiled lazily per argument signature.
    `transform` makes it a derivative of the named function (see specialise.specialise)."""

    # A call runs self._entry: the direct entry (lower/pyentry.py) of the signature called last,
    # a built-in that hands whatever is not of its signature to _general, or _general itself.
    # Found through a property of C callables, it costs no Python frame.
    __call__ = property(operator.attrgetter("_entry"))

    def __init__(self, module: "Module", name: str, transform: tuple = ()):
        self.module, self.name, self.transform = module, name, transform
        # signature -> (NativeFunction, output TreeDef), least recently used first; at most
        # _max entries, the oldest evicted (See Note [Evicting a signature])
        self._cache: OrderedDict = OrderedDict()
        self._max = max_signatures()
        self._fast: dict = {}  # a cheap key of flat arguments -> (native, out_tree, signature)
        # (tree, types) -> the leaves taken as compile-time values (See Note [Static arguments]
        # in specialise/trace.py): their values are part of the signature
        self._static: dict = {}
        self._fast_static: dict = {}  # a cheap key of the types of flat arguments -> the static ones
        self._entry = self._general

    def signature(self, *args):
        arrays, tree = flatten_args(args, [p.name for p in self.module.ast.fns[self.name].params])
        types = tuple(("weak" if type(a) is WeakFloat else a.dtype.str, a.shape) for a in arrays)
        return arrays, self._with_static((tree, types), arrays)

    def _with_static(self, key, arrays):
        """The signature key of these arrays: its types, and the values of its static leaves."""
        leaves = self._static.get(key[:2], ())
        return key[:2] + (tuple(arrays[i].item() for i in leaves),) if leaves else key[:2]

    def compiled(self, arrays, key, timings=None):
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            return entry
        tree = key[0]
        types = unflatten(tree, [type_of(a) for a in arrays])
        types = with_static(types, self._static.get(key[:2], ()), arrays)
        try:
            entry = bigstack.run(compile_native, self.module.ast, self.name, types, timings, self.transform, arrays)
        except MemoryError:  # (LLVM's own allocations abort the process instead: out of our hands)
            span = self.module.ast.fns[self.name].span
            raise DiffcMemoryError(f"out of memory while compiling `{self.label}`", span) from None
        if entry[0].static:
            self._static[key[:2]] = entry[0].static
            key = self._with_static(key, arrays)
        # a NumPy float64 next to f32 arrays is strong: a Python float in its place is not
        entry[0].general_only |= any(t[0] == "<f4" for t in key[1]) and any(t == ("<f8", ()) for t in key[1])
        self._cache[key] = entry
        while len(self._cache) > self._max:
            self._evict(next(iter(self._cache)))
        return entry

    def _evict(self, key) -> None:
        """Forget a signature's machine code: nothing of this Function refers to it after."""
        native, _ = self._cache.pop(key)
        self._fast = {fast: hit for fast, hit in self._fast.items() if hit[2] != key}
        if native.direct_made_for(self._entry):
            self._entry = self._general

    def _general(self, *args, **kwargs):
        """Any call: numbers and contiguous arrays of a signature seen before through ctypes,
        anything else converted, and compiled for its signature the first time. The direct
        entry of the signature, if it has one, takes the next calls. (It is the boundary of a
        call from Python, as _boundary would make it, without a wrapper's frame per call.)"""
        try:
            if kwargs:
                raise UsageError(f"`{self.label}` takes its arguments by position, got `{next(iter(kwargs))}=`")
            fast, flat = self._fast_key(args)
            hit = self._fast.get(fast) if fast is not None else None
            if hit is not None:
                native, out_tree, key, by_leaves = hit
                if next(reversed(self._cache)) is not key:  # (hashing a key walks its tree)
                    self._cache.move_to_end(key)
                if by_leaves is not None:  # records in or out: the direct entry, given the leaves
                    outs = by_leaves(*flat)
                    return self._call(args) if outs is FELL_BACK else _with_records(out_tree, outs)
                if flat is args:
                    self._entry = self._direct(native, out_tree)
                outs = native.call_scalars(flat)
                return outs[0] if out_tree.kind == "leaf" else to_python(outs, out_tree)
            result = self._call(args)
            if fast is not None:
                arrays, key = self.signature(*args)
                native, out_tree = self._cache[key]
                last = next(reversed(self._cache))  # the same key, the object _cache holds
                key = last if last == key else key
                if native.static:  # (the values of its static arguments are part of its key)
                    if flat is not args:
                        return result
                    self._fast_static[self._fast_types(args)[0]] = tuple(_top_level(key[0], native.static))
                    fast, _ = self._fast_key(args)
                records = flat is not args or _has_records(out_tree)
                # (the fast key has checked each leaf's type: the leaves' entry may take them)
                by_leaves = native.flat_direct() if records and not native.static else None
                self._fast[fast] = (native, out_tree, key, by_leaves)
                if flat is args:
                    self._entry = self._direct(native, out_tree)
            return result
        except DiffcError as e:
            raise e.with_traceback(None) from None

    def _direct(self, native, out_tree):
        """The entry for the next calls: the direct entry of `native`, unless its code is for
        the values of static arguments, or for a NumPy float64 where a Python float is weak
        (the direct entry does not tell those apart), or it returns records (as tuples)."""
        special = native.static or native.general_only or _has_records(out_tree)
        return (None if special else native.direct(self._general)) or self._general

    def _fast_key(self, args):
        """A cheap key of the arguments' types, and the values of those static for them; and
        their leaves (`args` itself when no argument is a record)."""
        key, flat = self._fast_types(args)
        static = self._fast_static.get(key) if self._fast_static and key is not None else None
        return (key if static is None else key + tuple(args[k] for k in static)), flat

    @staticmethod
    def _fast_types(args):
        """(key, leaves) of numbers, NumPy scalars, contiguous arrays and dicts of them, or
        (None, args) for anything else, which the general path converts."""
        key, flat = [], args
        for k, a in enumerate(args):
            if type(a) is dict or isinstance(a, tuple):
                if flat is args:
                    flat = list(args[:k])
                leaf = _tree_key(a, flat)
            else:
                leaf = _leaf_key(a)
                if flat is not args:
                    flat.append(a)
            if leaf is None:
                return None, args
            key.append(leaf)
        return tuple(key), flat

    def _call(self, args):
        fndef = self.module.ast.fns[self.name]
        want = len(fndef.params) * (2 if self.transform[:1] == ("jvp",) else 1) + (self.transform[:1] == ("vjp",))
        if len(args) != want:
            raise UsageError(f"`{self.label}` takes {want} arguments, got {len(args)}")
        arrays, key = self.signature(*args)
        native, out_tree = self.compiled(arrays, key)
        return to_python(native(arrays), out_tree)

    @property
    def num_compiled(self) -> int:
        return len(self._cache)

    @property
    def label(self) -> str:
        return f"{self.transform[0]}({self.name})" if self.transform else self.name

    def signatures(self) -> list[str]:
        """The signatures compiled and kept, least recently used first, each static argument
        with its value: `(x: f64[3], n=4)`."""
        names = [p.name for p in self.module.ast.fns[self.name].params]
        out = []
        for key in self._cache:
            tree, types = key[0], [_leaf_type(d, shape) for d, shape in key[1]]
            leaves = self._static.get(key[:2], ())
            values = dict(zip(leaves, key[2])) if leaves else {}
            types = [Static(t, values[i]) if i in values else t for i, t in enumerate(types)]
            out.append(f"({signature_text(names, unflatten(tree, types))})")
        return out

    def __repr__(self) -> str:
        compiled = ", ".join(self.signatures())
        return f"<diffc function {self.label}{' compiled for ' + compiled if compiled else ''}>"

    def __reduce__(self):
        """Pickled as its program's text, its name and its transform: unpickled (on a Ray
        worker, say), it compiles again per signature, or loads from that machine's disk cache."""
        return Function, (self.module, self.name, self.transform)


class Module:
    """A loaded DFL program; its top-level functions are attributes."""

    def __init__(self, ast: resolve.Module):
        self.ast = ast
        self._functions: dict[str, Function] = {}

    def __getattr__(self, name: str) -> Function:
        if name.startswith("_") or name not in self.ast.fns:
            have = ", ".join(self.ast.fns) or "none"
            raise AttributeError(f"the program has no function `{name}` (it defines {have})")
        return self.function(name)

    def function(self, name: str) -> Function:
        if name not in self.ast.fns:
            have = ", ".join(self.ast.fns) or "none"
            raise UsageError(f"the program has no function `{name}` (it defines {have})")
        if name not in self._functions:
            self._functions[name] = Function(self, name)
            if name not in self.__dict__ and not hasattr(Module, name):
                # found by `m.name` from now on without __getattr__ (a Python call of ~0.5 us)
                self.__dict__[name] = self._functions[name]
        return self._functions[name]

    def __dir__(self):
        return list(self.ast.fns)

    def __reduce__(self):
        return _rebuild, (resolve.snapshot(self.ast),)

    @_boundary
    def evaluate(self, expr: str):
        """The value of a DFL expression in this program's scope (its functions, lets and
        imports), compiled and run like any function."""
        import dataclasses

        from .syntax.parse import parse_text

        fndef = parse_text(f"fn __value__() = {expr}\n", name="<expression>").items[0]
        ast = dataclasses.replace(self.ast, fns={**self.ast.fns, "__value__": fndef})
        bigstack.run(resolve.check_names, ast, BUILTINS)
        return Module(ast).function("__value__")()

    def grad(self, name: str, argnums: int | tuple[int, ...] = 0) -> Function:
        return grad(self.function(name), argnums)


@_boundary
def _rebuild(snapshot) -> Module:
    """The Module a pickle holds (Module.__reduce__)."""
    return Module(bigstack.run(resolve.from_snapshot, snapshot, BUILTINS))


@_boundary
def load(path: str | Path) -> Module:
    """Load a .dfl file (and its imports); raise a DiffcError for any mistake in it."""
    if not isinstance(path, str | Path):
        raise UsageError(f"diffc.load takes the path of a .dfl file, got {type(path).__name__}")
    return Module(bigstack.run(resolve.load_file, path, BUILTINS))


@_boundary
def compile(source: str, name: str = "<string>") -> Module:
    """Load a program from its text; imports are looked up in the current folder."""
    if not isinstance(source, str):
        hint = " (decode bytes first)" if isinstance(source, bytes | bytearray) else ""
        raise UsageError(f"diffc.compile takes the program's text as a str, got {type(source).__name__}{hint}")
    if not isinstance(name, str):
        raise UsageError(f"diffc.compile: the name of the program must be a str, got {type(name).__name__}")
    return Module(bigstack.run(resolve.load_text, source, name, Path.cwd(), BUILTINS))


@_boundary
def save(path: str | Path, tree) -> None:
    """Write a tree of values (a function's parameters, say) to the .npz file `path`: one
    entry per leaf named by its path (`layers.0.w`), and no pickle (runtime/params.py)."""
    if not isinstance(path, str | Path):
        raise UsageError(f"diffc.save takes the path of a .npz file first, got {type(path).__name__}")
    params.save(path, tree)


@_boundary
def load_tree(path: str | Path):
    """The tree diffc.save wrote to `path`: dicts for records, tuples, NumPy arrays, and
    NumPy scalars for 0-d leaves; a damaged or foreign file is a UsageError naming it."""
    if not isinstance(path, str | Path):
        raise UsageError(f"diffc.load_tree takes the path of a .npz file, got {type(path).__name__}")
    return params.load_tree(path)


def _leaf_key(a):
    """The type of a number, NumPy scalar or contiguous array as the fast key has it, or None."""
    t = type(a)
    if t is np.ndarray:
        return (a.dtype, a.shape) if a.flags.c_contiguous and a.dtype in _FAST_DTYPES else None
    if t is float or t is bool or t in _NP_SCALARS or (t is int and -(2**63) <= a < 2**63):
        return t
    return None


def _tree_key(v, flat: list):
    """The key of a leaf, dict, tuple or named tuple (a record, as a dict is), its leaves
    appended to `flat` in the order of pytree.flatten, or None if it is none of those."""
    t = type(v)
    if t is dict:
        return _record_key(v, flat)
    if t is tuple:
        keys = tuple(_tree_key(x, flat) for x in v)
        return None if None in keys else (tuple, keys)
    if isinstance(v, tuple) and hasattr(t, "_fields"):
        return _record_key(v._asdict(), flat)
    flat.append(v)
    return _leaf_key(v)


def _record_key(record: dict, flat: list):
    """The key of a dict of leaves and dicts, its leaves appended to `flat` in the order of
    pytree.flatten (by field name), or None if it is not one."""
    try:
        names = sorted(record)
    except TypeError:  # (names of several types: the general path says which is wrong)
        return None
    leaves = []
    for name in names:
        if type(name) is not str:
            return None
        leaf = _tree_key(record[name], flat)
        if leaf is None:
            return None
        leaves.append(leaf)
    return (dict, tuple(names), tuple(leaves))


def _has_records(tree) -> bool:
    return tree.kind == "record" or any(_has_records(c) for c in tree.children)


def _with_records(tree, value):
    """What a direct entry returned, its records (returned as tuples) made dicts."""
    if tree.kind == "leaf":
        return value
    children = tuple(_with_records(c, v) for c, v in zip(tree.children, value))
    return dict(zip(tree.names, children)) if tree.kind == "record" else children


def _leaf_type(dtype: str, shape):
    if dtype == "weak":
        return Weak(TensorType(DType.F64, shape))
    return TensorType(dtype_of_numpy(np.dtype(dtype)), shape)


def _top_level(tree, leaves) -> list[int]:
    """The top-level arguments that hold these leaves."""
    starts, n = [], 0
    for c in tree.children:
        starts.append(n)
        n += c.num_leaves
    return sorted({max(k for k, s in enumerate(starts) if s <= i) for i in leaves})


def _derivative(fn: Function, argnums, with_value: bool) -> Function:
    if not isinstance(fn, Function) or fn.transform:
        raise UsageError("diffc.grad takes a function of a loaded program, like diffc.grad(m.loss)")
    return Function(fn.module, fn.name, ("grad", _argnums(argnums), with_value))


def _argnums(argnums) -> int | tuple[int, ...]:
    """argnums as an int or a tuple of ints; which arguments they name is checked, and
    located at the function, when a call specialises it (specialise/ad_builtins.py)."""
    single = not isinstance(argnums, tuple | list)
    nums = (argnums,) if single else tuple(argnums)
    for k in nums:
        if not isinstance(k, int | np.integer) or isinstance(k, bool | np.bool_):
            raise UsageError(f"argnums: expected an int or a tuple of ints, got {argnums!r}")
    return int(nums[0]) if single else tuple(int(k) for k in nums)


def grad(fn: Function, argnums: int | tuple[int, ...] = 0) -> Function:
    """The gradient of a scalar DFL function w.r.t. argument(s) `argnums`, as a callable that
    returns NumPy values in the structure of those arguments (a tuple for a tuple argnums)."""
    return _derivative(fn, argnums, False)


def value_and_grad(fn: Function, argnums: int | tuple[int, ...] = 0) -> Function:
    """Like grad, returning (value, gradient)."""
    return _derivative(fn, argnums, True)


def jvp(fn: Function) -> Function:
    """f(*primals, *tangents) -> (value, directional derivative)."""
    return Function(fn.module, fn.name, ("jvp", len(fn.module.ast.fns[fn.name].params)))


def vjp(fn: Function) -> Function:
    """f(*primals, cotangent) -> one cotangent per primal (a tuple)."""
    return Function(fn.module, fn.name, ("vjp", len(fn.module.ast.fns[fn.name].params)))


# Note [Evicting a signature]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~
# Each signature keeps an MCJIT engine with its machine code (60 KB for a small function, see
# Note [Freeing machine code] in lower/jit.py) and its arena, so a function called with ever
# new shapes would grow without end; _cache keeps the DIFFC_MAX_SIGNATURES (default 64) used
# last and drops the others. A dropped signature is compiled again (or loaded from the disk
# cache) if it comes back. The code is freed when the last reference to its NativeFunction
# goes: _cache, _fast and _entry (when the direct entry is that signature's) drop theirs at
# eviction, and a direct entry that someone else still holds keeps its NativeFunction, and so
# its code, alive (runtime/call.py): nothing can call freed code.


def set_threads(n: int) -> int:
    """Run parallel loops and large matrix products on n threads, the caller's included
    (DIFFC_THREADS, else all the cores this process may use, by default). Results do not
    depend on it. Returns how many will run: fewer when the system would not start more."""
    return threads.set_threads(operator.index(n))


def set_flush_denormal(on: bool) -> bool:
    """Flush subnormal floats to zero in every call from now on (DIFFC_FLUSH_DENORMAL=1 at
    start), as XLA does and torch.set_flush_denormal(True) asks: faster on Intel's cores when
    gradients vanish into that range, no longer IEEE there. Off by default. Returns False
    where the CPU cannot (not x86-64). See Note [Subnormal floats] in lower/emit.py."""
    return call.set_flush_denormal(bool(on))


def get_threads() -> int:
    """How many threads parallel loops run on."""
    return threads.threads()
