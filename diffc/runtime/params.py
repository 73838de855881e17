"""Trees of values in .npz files: `diffc.save` writes the parameters a run computed, and
`diffc.load_tree` (and `--arg p=params.npz`) reads them back for the next run.

One entry per leaf, named by its path in the tree (`w`, `layers.0.w`, `opt.m.b`: records by
field, tuples by index), plus `__tree__`, the tree's shape as JSON in a uint8 array. The
names alone would not do: an empty tuple or record has no leaves to name, and a lone leaf has
no path. Nothing is pickled, and reading checks each entry's header against the sizes the
archive records before allocating, so a damaged, truncated, lying or foreign file is one
UsageError naming the file."""

from __future__ import annotations

import json
import math
import os
import re
import zipfile

import numpy as np

from ..errors import UsageError
from ..pytree import TreeDef, flatten, unflatten
from ..typesys import dtype_of_numpy
from .values import plain_records, to_array

TREE_ENTRY = "__tree__"
ROOT_LEAF = "value"  # the entry of a tree that is one leaf (its path is empty)
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DEFLATE_RATIO = 1100  # deflate cannot expand more than 1032 to 1: a larger claim is a lie


def save(path, tree) -> None:
    """Write a tree (dicts or dataclasses/named tuples as records, tuples, arrays, numbers) to
    the .npz file `path`, replacing it only once the whole file is written."""
    path = os.fspath(path)
    leaves, treedef = flatten(plain_records(tree), is_record=lambda v: isinstance(v, dict), record_items=dict.items)
    names = leaf_names(treedef, f"cannot write the parameter file {path}")
    entries = {n: to_array(x, f"{path}: leaf `{n}`") for n, x in zip(names, leaves)}
    entries[TREE_ENTRY] = np.frombuffer(json.dumps(_tree_json(treedef)).encode(), dtype=np.uint8)
    tmp = f"{path}.{os.getpid()}.tmp"  # (os.open, not mkstemp: the file's mode follows the umask)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            np.savez(f, **entries)
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise UsageError(f"cannot write the parameter file {path}: {e.strerror or e}") from None
    except BaseException:  # (Ctrl-C: no half-written file left behind)
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def leaf_names(t: TreeDef, fail: str, prefix: str = "") -> list[str]:
    """The entry name of each leaf, in flatten order; a field name that would make a path
    ambiguous (a dot, a digit first) is a UsageError beginning with `fail`."""
    if t.kind == "leaf":
        return [prefix or ROOT_LEAF]
    keys = t.names if t.kind == "record" else [str(k) for k in range(len(t.children))]
    names = []
    for key, child in zip(keys, t.children):
        if t.kind == "record" and (not _FIELD.match(key) or key == TREE_ENTRY):
            raise UsageError(f"{fail}: the record field `{key}` is not a DFL field name")
        names += leaf_names(child, fail, f"{prefix}.{key}" if prefix else key)
    return names


def _tree_json(t: TreeDef):
    """null for a leaf, a list for a tuple, an object for a record (fields in order)."""
    if t.kind == "leaf":
        return None
    if t.kind == "tuple":
        return [_tree_json(c) for c in t.children]
    return {n: _tree_json(c) for n, c in zip(t.names, t.children)}


def _treedef(j, fail: str) -> TreeDef:
    if j is None:
        return TreeDef("leaf")
    if isinstance(j, list):
        return TreeDef("tuple", tuple(_treedef(c, fail) for c in j))
    if isinstance(j, dict):
        items = sorted(j.items())  # (flatten's order: records by field name)
        return TreeDef("record", tuple(_treedef(c, fail) for _, c in items), tuple(n for n, _ in items))
    raise UsageError(f"{fail}: its `{TREE_ENTRY}` entry is not a tree")


def load_tree(path, what: str = "") -> object:
    """The tree saved in `path`: dicts, tuples, NumPy arrays and (for 0-d leaves) NumPy
    scalars. `what` begins the message of a failure (`--arg p`, say)."""
    path = os.fspath(path)
    fail = f"{what}: cannot read the parameter file {path}" if what else f"cannot read the parameter file {path}"
    try:
        if not os.path.isfile(path):
            raise UsageError(f"{fail}: {'no such file' if not os.path.exists(path) else 'it is not a regular file'}")
        size = os.path.getsize(path)
        with zipfile.ZipFile(path) as z:
            infos = {i.filename: i for i in z.infolist()}
            tree = _read_tree(z, infos, size, fail)
            names = leaf_names(tree, fail)
            want = {n + ".npy" for n in names} | {TREE_ENTRY + ".npy"}
            stray = sorted(set(infos) - want)
            if stray:
                raise UsageError(f"{fail}: it holds an entry `{stray[0]}` its tree does not name")
            missing = [n for n in names if n + ".npy" not in infos]
            if missing:
                raise UsageError(f"{fail}: the leaf `{missing[0]}` of its tree is missing")
            leaves = [_read_entry(z, infos[n + ".npy"], size, f"{fail}: entry `{n}`") for n in names]
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as e:
        raise UsageError(f"{fail}: {getattr(e, 'strerror', None) or e}") from None
    except MemoryError:
        raise UsageError(f"{fail}: it does not fit in memory") from None
    return unflatten(tree, [a[()] if a.ndim == 0 else a for a in leaves], make_record=dict)


def _read_tree(z: zipfile.ZipFile, infos: dict, size: int, fail: str) -> TreeDef:
    info = infos.get(TREE_ENTRY + ".npy")
    if info is None:
        raise UsageError(f"{fail}: it has no `{TREE_ENTRY}` entry, so it was not written by diffc.save")
    raw = _read_entry(z, info, size, f"{fail}: entry `{TREE_ENTRY}`", tree=True)
    try:
        return _treedef(json.loads(raw.tobytes().decode()), fail)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise UsageError(f"{fail}: its `{TREE_ENTRY}` entry is not a tree") from None


def _read_entry(z: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, fail: str, tree: bool = False) -> np.ndarray:
    """One .npy entry, its header checked against the sizes the archive declares (which the
    zip reader then holds the data to: a shorter or longer member fails its CRC or length)."""
    if info.compress_size > size or info.file_size > _DEFLATE_RATIO * info.compress_size + 4096:
        raise UsageError(f"{fail}: the archive claims {info.file_size} bytes in a file of {size}")
    try:
        return _read_checked(z, info, fail, tree)
    except ValueError as e:  # (a header numpy cannot parse)
        raise UsageError(f"{fail}: {e}") from None


def _read_checked(z: zipfile.ZipFile, info: zipfile.ZipInfo, fail: str, tree: bool) -> np.ndarray:
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        ok = dtype == np.uint8 and len(shape) == 1 if tree else dtype_of_numpy(dtype) is not None
        if dtype.hasobject or not ok:
            raise UsageError(f"{fail}: arrays of {dtype} are not supported (use float, int or bool)")
        if any(d < 0 for d in shape):
            raise UsageError(f"{fail}: its header announces the shape {shape}")
        need = math.prod(shape) * dtype.itemsize
        have = info.file_size - f.tell()
        if have != need:
            raise UsageError(f"{fail}: its header announces {shape} {dtype} ({need} bytes) but it holds {have}")
        data = f.read(need)
    if len(data) != need:
        raise UsageError(f"{fail}: it is truncated")
    a = np.frombuffer(data, dtype=dtype, count=math.prod(shape)).reshape(shape, order="F" if fortran else "C")
    return np.require(a, dtype=dtype.newbyteorder("="), requirements=["C", "W", "O"])
