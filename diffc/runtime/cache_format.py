"""What a compiled program needs at run time besides its machine code, as the metadata of a
disk-cache entry (runtime/cache.py): written as JSON field by field, and read back with every
field's type, range and consistency checked, so that a damaged entry is found (Damaged) rather
than crashing the process or running code with the wrong buffers. JSON is only data: reading
an entry cannot run code."""

from __future__ import annotations

import json
from dataclasses import dataclass

from llvmlite import ir

from ..lower import gemm
from ..lower.emit import Site
from ..pytree import TreeDef
from ..source import SourceFile, Span
from ..typesys import MAX_BYTES, DType, TensorType
from .cache import Damaged

KERNELS = frozenset(gemm.symbol(t) for t in (ir.DoubleType(), ir.FloatType()))
MAX_RANK = 64


@dataclass
class ProgramEntry:
    """A compiled program: its object code, the failure sites and print sites it reports by
    number, the types of its flat inputs and outputs, its entry arena's bytes, the tree of its
    result, the kernels it calls (lower/gemm.py) and the entry function's span."""

    object: bytes
    sites: list[Site]
    in_types: list[TensorType]
    out_types: list[TensorType]
    arena: int
    prints: list[tuple[str, TreeDef, list[TensorType]]]
    out_tree: TreeDef
    kernels: list[str]
    span: Span  # the entry function's: where the runtime's own allocations fail


def encode(e: ProgramEntry) -> bytes:
    """The metadata of e (all of it but the object code) as JSON."""
    files: dict[int, int] = {}  # id(SourceFile) -> its index in "files"
    file_list: list[list[str]] = []

    def span(s: Span) -> list:
        if s.file is None:
            where = -1
        else:
            where = files.setdefault(id(s.file), len(file_list))
            if where == len(file_list):
                file_list.append([s.file.name, s.file.text])
        return [where, s.line, s.col, s.end_line, s.end_col]

    meta = {
        "sites": [[span(s.span), s.kind, s.what] for s in e.sites],
        "in_types": [_type(t) for t in e.in_types],
        "out_types": [_type(t) for t in e.out_types],
        "arena": e.arena,
        "prints": [[label, _tree(tree), [_type(t) for t in types]] for label, tree, types in e.prints],
        "out_tree": _tree(e.out_tree),
        "kernels": list(e.kernels),
        "span": span(e.span),
        "files": file_list,
    }
    return json.dumps(meta, separators=(",", ":")).encode()


def decode(metadata: bytes, object_code: bytes) -> ProgramEntry:
    """The entry encode wrote; Damaged if anything in it is not what encode writes."""
    try:
        meta = json.loads(metadata.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Damaged("metadata is not JSON") from None
    _check(isinstance(meta, dict) and set(meta) == _FIELDS, "fields")
    files = [SourceFile(_str(name), _str(text)) for name, text in (_pair(f) for f in _list(meta["files"]))]

    def span(v) -> Span:
        where, *place = _items(v, 5)
        where = _int(where, -1, len(files) - 1)
        return Span(files[where] if where >= 0 else None, *(_int(x, 0, 1 << 31) for x in place))

    sites = []
    for v in _list(meta["sites"]):
        where, kind, what = _items(v, 3)
        sites.append(Site(span(where), _int(kind, 0, 1 << 31), _str(what)))
    in_types = [_decode_type(t) for t in _list(meta["in_types"])]
    out_types = [_decode_type(t) for t in _list(meta["out_types"])]
    out_tree = _decode_tree(meta["out_tree"])
    _check(out_tree.num_leaves == len(out_types), "result tree")
    prints = []
    for p in _list(meta["prints"]):
        label, tree, types = _items(p, 3)
        tree, types = _decode_tree(tree), [_decode_type(t) for t in _list(types)]
        _check(tree.num_leaves == len(types), "print tree")
        prints.append((_str(label), tree, types))
    kernels = [_str(k) for k in _list(meta["kernels"])]
    _check(set(kernels) <= KERNELS, "kernels")
    _check(isinstance(object_code, bytes) and len(object_code) > 0, "object code")
    arena = _int(meta["arena"], 0, MAX_BYTES)
    return ProgramEntry(object_code, sites, in_types, out_types, arena, prints, out_tree, kernels, span(meta["span"]))


_FIELDS = {"sites", "in_types", "out_types", "arena", "prints", "out_tree", "kernels", "span", "files"}


def _type(t: TensorType) -> list:
    return [t.dtype.value, list(t.shape)]


def _decode_type(v) -> TensorType:
    dtype, shape = _items(v, 2)
    try:
        dt = DType(dtype)
    except ValueError:
        raise Damaged("dtype") from None
    dims = tuple(_int(n, 0, MAX_BYTES) for n in _list(shape))
    t = TensorType(dt, dims)
    _check(len(dims) <= MAX_RANK and t.nbytes <= MAX_BYTES, "shape")
    return t


def _tree(t: TreeDef) -> list:
    return [t.kind, [_tree(c) for c in t.children], list(t.names)]


def _decode_tree(v, depth: int = 0) -> TreeDef:
    _check(depth < 256, "tree depth")
    kind, children, names = _items(v, 3)
    kids = tuple(_decode_tree(c, depth + 1) for c in _list(children))
    names = tuple(_str(n) for n in _list(names))
    if kind == "leaf":
        _check(not kids and not names, "leaf")
    elif kind == "tuple":
        _check(not names, "tuple")
    else:
        _check(kind == "record" and len(names) == len(kids), "record")
    return TreeDef(kind, kids, names)


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise Damaged(what)


def _list(v) -> list:
    _check(isinstance(v, list), "a list")
    return v


def _items(v, n: int) -> list:
    _check(isinstance(v, list) and len(v) == n, f"a list of {n}")
    return v


def _pair(v) -> list:
    return _items(v, 2)


def _str(v) -> str:
    _check(isinstance(v, str), "a string")
    return v


def _int(v, lo: int, hi: int) -> int:
    _check(type(v) is int and lo <= v <= hi, "a whole number in range")
    return v
