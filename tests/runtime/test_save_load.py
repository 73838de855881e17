"""diffc.save and diffc.load_tree: a tree of values in an .npz whose entries are named by the
leaves' paths, read back the same (structure, dtypes, shapes, scalars), with no pickle; and a
damaged, truncated, lying or foreign file is one UsageError naming the file, before anything
big is allocated."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from typing import NamedTuple

import numpy as np
import pytest

import diffc
from diffc.errors import UsageError


def same(a, b) -> bool:
    """Equal trees: the same structure, dtypes, shapes and values (NaN equal to NaN)."""
    if isinstance(a, tuple) or isinstance(a, dict):
        if type(a) is not type(b) or len(a) != len(b):
            return False
        pairs = zip(a.values(), b.values()) if isinstance(a, dict) else zip(a, b)
        return (not isinstance(a, dict) or list(a) == list(b)) and all(same(x, y) for x, y in pairs)
    x, y = np.asarray(a), np.asarray(b)
    return x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")


TREE = {
    "b": np.float32(-0.0),
    "layers": ({"b": np.zeros((0, 3), np.float32), "w": np.arange(6.0).reshape(2, 3)}, ()),
    "n": np.int64(-(2**63)),
    "ok": np.bool_(True),
    "opt": {"m": {"b": np.array([np.nan, np.inf, -np.inf])}, "step": np.int64(7)},
    "empty": {},
    "flags": np.array([[True, False]]),
}


def test_round_trip_of_a_nested_tree_with_every_dtype(tmp_path):
    path = tmp_path / "p.npz"
    diffc.save(path, TREE)
    back = diffc.load_tree(path)
    assert same(back, dict(sorted(TREE.items())))
    assert isinstance(back["n"], np.int64) and isinstance(back["b"], np.float32)  # 0-d leaves: NumPy scalars
    assert back["layers"][0]["w"].flags.writeable


def test_entries_are_named_by_path_and_hold_no_pickle(tmp_path):
    path = tmp_path / "p.npz"
    diffc.save(path, TREE)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(
            ["b", "layers.0.b", "layers.0.w", "n", "ok", "opt.m.b", "opt.step", "flags", "__tree__"]
        )
        assert z["opt.step"].shape == () and z["opt.step"].dtype == np.int64
        assert np.array_equal(z["layers.0.w"], TREE["layers"][0]["w"])


@pytest.mark.parametrize(
    "tree, want",
    [
        (2.5, np.float64(2.5)),
        (3, np.int64(3)),
        (True, np.bool_(True)),
        ((), ()),
        ({"a": (1.0, [1, 2])}, {"a": (np.float64(1.0), np.array([1, 2]))}),
    ],
)
def test_python_numbers_lists_and_bare_leaves(tmp_path, tree, want):
    diffc.save(tmp_path / "p.npz", tree)
    assert same(diffc.load_tree(tmp_path / "p.npz"), want)


class Pair(NamedTuple):
    w: np.ndarray
    b: float


@dataclasses.dataclass
class Layer:
    w: np.ndarray
    b: float


def test_dataclasses_and_named_tuples_are_saved_as_records(tmp_path):
    diffc.save(tmp_path / "p.npz", (Pair(np.ones(2), 1.0), Layer(np.ones(2), 2.0)))
    back = diffc.load_tree(tmp_path / "p.npz")
    assert same(back, ({"b": np.float64(1.0), "w": np.ones(2)}, {"b": np.float64(2.0), "w": np.ones(2)}))


def test_saving_replaces_a_file_whole(tmp_path):
    path = tmp_path / "p.npz"
    diffc.save(path, {"w": np.ones(3)})
    with pytest.raises(UsageError, match="not a DFL field name"):
        diffc.save(path, {"a.b": 1.0})
    assert same(diffc.load_tree(path), {"w": np.ones(3)})  # (the failed save left it alone)
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]
    (tmp_path / "plain").write_bytes(b"")
    assert path.stat().st_mode == (tmp_path / "plain").stat().st_mode  # (the umask's mode, not 0600)


@pytest.mark.parametrize("key", ["a.b", "0", "", "__tree__"])
def test_field_names_that_would_make_a_path_ambiguous(tmp_path, key):
    with pytest.raises(UsageError, match="not a DFL field name"):
        diffc.save(tmp_path / "p.npz", {key: 1.0})


def test_unsupported_leaves_and_folders(tmp_path):
    with pytest.raises(UsageError, match="leaf `w`"):
        diffc.save(tmp_path / "p.npz", {"w": np.array(["a"])})
    with pytest.raises(UsageError, match="cannot write the parameter file"):
        diffc.save(tmp_path / "no" / "p.npz", 1.0)
    with pytest.raises(UsageError, match="takes the path"):
        diffc.save(1.0, tmp_path)


# --- damaged and foreign files -----------------------------------------------------------------


def npy(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def npy_claiming(shape, descr="<f8", data=b"") -> bytes:
    """A .npy whose header announces `shape` whatever data follows."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


def archive(path, members: dict, tree=None) -> None:
    with zipfile.ZipFile(path, "w") as z:
        if tree is not False:
            text = json.dumps(tree if tree is not None else dict.fromkeys(k for k in members)).encode()
            z.writestr("__tree__.npy", npy(np.frombuffer(text, np.uint8)))
        for name, data in members.items():
            z.writestr(name + ".npy", data)


def failure(path) -> str:
    with pytest.raises(UsageError) as e:
        diffc.load_tree(path)
    assert str(path) in e.value.message
    assert e.value.__traceback__ is None or "Traceback" not in str(e.value)
    return e.value.message


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, -30])
def test_truncated_files(tmp_path, cut):
    diffc.save(tmp_path / "p.npz", TREE)
    data = (tmp_path / "p.npz").read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut % len(data) if cut < 0 else cut
    (tmp_path / "t.npz").write_bytes(data[:n])
    assert "cannot read the parameter file" in failure(tmp_path / "t.npz")


def test_damaged_data_fails_its_check(tmp_path):
    diffc.save(tmp_path / "p.npz", {"w": np.arange(1000.0)})
    data = bytearray((tmp_path / "p.npz").read_bytes())
    data[400] ^= 0xFF  # (inside w's data: the stored CRC no longer matches)
    (tmp_path / "d.npz").write_bytes(bytes(data))
    assert "cannot read the parameter file" in failure(tmp_path / "d.npz")


def test_a_header_claiming_745_gib_is_refused_before_allocating(tmp_path):
    archive(tmp_path / "p.npz", {"w": npy_claiming((10**11,), data=b"\0" * 80)})
    assert "announces" in failure(tmp_path / "p.npz")


def test_an_archive_claiming_a_huge_member_is_refused(tmp_path):
    path = tmp_path / "p.npz"
    archive(path, {"w": npy(np.ones(4))})
    data = bytearray(path.read_bytes())
    # the central directory's uncompressed size of the last member (`w.npy`): a lie
    cd = data.rindex(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (2**32 - 2).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert "cannot read the parameter file" in failure(path)


@pytest.mark.parametrize(
    "members, tree, message",
    [
        ({"a": npy(np.ones(2))}, False, "no `__tree__` entry"),
        ({"a": npy(np.ones(2)), "b": npy(np.ones(2))}, {"a": None}, "does not name"),
        ({}, {"a": None}, "leaf `a` of its tree is missing"),
        ({"a": npy(np.array(["x"]))}, {"a": None}, "not supported"),
        ({"a": npy(np.ones(2, np.complex128))}, {"a": None}, "not supported"),
        ({"a": npy_claiming((-1,))}, {"a": None}, "shape"),
        ({"a": npy(np.ones(2))}, {"a.b": None}, "not a DFL field name"),
        ({"a": b"not an array"}, {"a": None}, "cannot read"),
        ({}, 5, "is not a tree"),
    ],
)
def test_foreign_and_lying_archives(tmp_path, members, tree, message):
    archive(tmp_path / "p.npz", members, tree)
    assert message in failure(tmp_path / "p.npz")


def test_object_arrays_are_never_unpickled(tmp_path):
    f = io.BytesIO()
    np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    archive(tmp_path / "p.npz", {"a": f.getvalue()}, {"a": None})
    assert "not supported" in failure(tmp_path / "p.npz")


def test_a_tree_entry_that_is_not_json(tmp_path):
    with zipfile.ZipFile(tmp_path / "p.npz", "w") as z:
        z.writestr("__tree__.npy", npy(np.frombuffer(b"\xff{", np.uint8)))
    assert "is not a tree" in failure(tmp_path / "p.npz")


@pytest.mark.parametrize("what", ["missing", "folder", "text"])
def test_files_that_are_not_archives(tmp_path, what):
    path = tmp_path / "p.npz"
    if what == "folder":
        path.mkdir()
    elif what == "text":
        path.write_text("w = 1.0\n")
    failure(path)


# --- records from Python classes ------------------------------------------------------------------


def test_dataclass_and_named_tuple_arguments_are_records():
    m = diffc.compile("fn f(p) = sum(p.w) * p.b\nfn g(p) = p\n")
    want = m.f({"w": np.ones(3), "b": 2.0})
    assert m.f(Pair(np.ones(3), 2.0)) == want == m.f(Layer(np.ones(3), 2.0)) == 6.0
    nested = m.g((Pair(np.ones(2), 1.0), {"l": Layer(np.zeros(1), 3)}))
    assert same(nested, ({"b": 1.0, "w": np.ones(2)}, {"l": {"b": 3, "w": np.zeros(1)}}))  # records come back as dicts
    g = diffc.grad(m.f)(Layer(np.ones(3), 2.0))
    assert isinstance(g, dict) and np.array_equal(g["w"], [2.0, 2.0, 2.0]) and g["b"] == 3.0


def test_a_named_tuple_is_a_record_not_a_tuple():
    m = diffc.compile("fn f(p) = p.w\nfn first(t) = t[0]\n")
    assert m.f(Pair(np.ones(1), 2.0))[0] == 1.0
    with pytest.raises(diffc.DiffcError):
        m.first(Pair(np.ones(1), 2.0))


def test_bad_keys_after_a_record_object_are_still_caught():
    m = diffc.compile("fn f(a, b) = a.b\n")
    with pytest.raises(UsageError, match="field names must be strings"):
        m.f(Pair(np.ones(1), 2.0), {1: 2.0})
