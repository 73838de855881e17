"""The disk cache never runs code it did not make nor serves an entry for another key: each
kind of tampering below gives the right result (the program compiled again, the bad entry
replaced), never a crash, a hang or code run from the cache (runtime/cache.py)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
import time

import pytest

from diffc import cachedir
from diffc.runtime import cache, cache_format

PROGRAM = 'fn main(x) {\n    print("value", x * 2.0);\n    sum(for i in 0..3 => x * f64(i))\n}\n'
SCALAR = ("--arg", "x=1.5")
VECTOR = ("--arg", "x=[1.0, 2.0]")
OUT = {SCALAR: "value 3.0\n4.5\n", VECTOR: "value [2.0, 4.0]\n9.0\n"}


def run(tmp_path, args=SCALAR, cache_dir=None):
    env = dict(os.environ, DIFFC_CACHE_DIR=str(cache_dir or tmp_path / "cache"))
    env.pop("DIFFC_CACHE", None)
    return subprocess.run(
        [sys.executable, "-m", "diffc", "run", "--time-passes", "p.dfl", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check(r, args=SCALAR, cached=False):
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == OUT[args]
    assert ("load from cache" in r.stderr) == cached, r.stderr


@pytest.fixture
def entry(tmp_path):
    """The path of the one entry a first run made."""
    (tmp_path / "p.dfl").write_text(PROGRAM)
    check(run(tmp_path))
    (path,) = (tmp_path / "cache").glob("*.bin")
    return path


def rebuilt(tmp_path, path):
    """The next run compiles again, the one after is served from the (rebuilt) entry."""
    check(run(tmp_path))
    assert stat.S_ISREG(os.lstat(path).st_mode)
    check(run(tmp_path), cached=True)


def test_the_folder_is_made_private(entry):
    assert stat.S_IMODE(os.stat(entry.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600


@pytest.mark.parametrize("where", [0, 20, 60, 80, 100, "metadata", "object", -1])
def test_a_flipped_byte_is_detected(tmp_path, entry, where):
    data = bytearray(entry.read_bytes())
    n_meta = int.from_bytes(data[46:54], "little")
    at = {"metadata": cache.HEADER.size + n_meta // 2, "object": cache.HEADER.size + n_meta + 100}.get(where, where)
    data[at] ^= 0x01
    entry.write_bytes(bytes(data))
    rebuilt(tmp_path, entry)


@pytest.mark.parametrize("keep", [0, 13, cache.HEADER.size, 500, -1])
def test_a_truncated_entry_is_detected(tmp_path, entry, keep):
    data = entry.read_bytes()
    entry.write_bytes(data[:keep])
    rebuilt(tmp_path, entry)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_under_an_entry_name_is_not_run(tmp_path, entry):
    marker = tmp_path / "pwned"
    entry.write_bytes(pickle.dumps(_Payload(marker)))
    with open(entry, "ab") as f:  # also after the old format's header
        f.write(b"DIFFC-CACHE-1\n" + hashlib.sha256(b"").digest() + pickle.dumps(_Payload(marker)))
    rebuilt(tmp_path, entry)
    assert not marker.exists()


def test_swapped_entries_are_not_served_for_each_other(tmp_path, entry):
    check(run(tmp_path, VECTOR), VECTOR)
    (other,) = set((tmp_path / "cache").glob("*.bin")) - {entry}
    a, b = entry.read_bytes(), other.read_bytes()
    entry.write_bytes(b)
    other.write_bytes(a)
    check(run(tmp_path, SCALAR), SCALAR)
    check(run(tmp_path, VECTOR), VECTOR)
    check(run(tmp_path, SCALAR), SCALAR, cached=True)
    check(run(tmp_path, VECTOR), VECTOR, cached=True)


def reseal(path, metadata: bytes):
    """Replace an entry's metadata, with a valid checksum (as a bug in diffc could write it)."""
    data = path.read_bytes()
    _, key, n_meta, n_object, _ = cache.HEADER.unpack_from(data)
    obj = data[cache.HEADER.size + n_meta :]
    digest = hashlib.sha256(key + metadata + obj).digest()
    path.write_bytes(cache.HEADER.pack(cache.MAGIC, key, len(metadata), n_object, digest) + metadata + obj)


def meta_of(path) -> dict:
    data = path.read_bytes()
    n_meta = cache.HEADER.unpack_from(data)[2]
    return json.loads(data[cache.HEADER.size : cache.HEADER.size + n_meta])


def deep_tree(depth: int) -> list:
    t = ["leaf", [], []]
    for _ in range(depth):
        t = ["tuple", [t], []]
    return t


MUTATIONS = {
    "not json": lambda m: b"\x80not json",
    "a list": lambda m: b"[]",
    "a field missing": lambda m: {k: v for k, v in m.items() if k != "arena"},
    "a field added": lambda m: {**m, "extra": 1},
    "a string arena": lambda m: {**m, "arena": "64"},
    "a negative arena": lambda m: {**m, "arena": -1},
    "a huge arena": lambda m: {**m, "arena": 1 << 60},
    "a float arena": lambda m: {**m, "arena": 8.0},
    "an unknown dtype": lambda m: {**m, "in_types": [["f16", []]]},
    "a negative dimension": lambda m: {**m, "out_types": [["f64", [-3]]]},
    "a huge shape": lambda m: {**m, "out_types": [["f64", [1 << 40, 1 << 40]]]},
    "more results than the tree": lambda m: {**m, "out_types": m["out_types"] * 2},
    "an unknown tree kind": lambda m: {**m, "out_tree": ["set", [], []]},
    "a record without names": lambda m: {**m, "out_tree": ["record", [["leaf", [], []]], []]},
    "a deep tree": lambda m: {**m, "out_tree": deep_tree(300)},
    "deep json": lambda m: b"[" * 100000 + b"]" * 100000,
    "a print tree of other leaves": lambda m: {**m, "prints": [["value", ["leaf", [], []], []]]},
    "an unknown kernel": lambda m: {**m, "kernels": ["system"]},
    "a site in no file": lambda m: {**m, "sites": [[[7, 1, 1, 1, 1], 1, "index"]]},
    "a bool as a number": lambda m: {**m, "arena": True},
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_wrong_metadata_is_damaged(tmp_path, entry, mutation):
    """Field by field, at the decoder; one case also through a whole run."""
    meta = MUTATIONS[mutation](meta_of(entry))
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    with pytest.raises(cache.Damaged):
        cache_format.decode(raw, b"\x7fELF")
    if mutation == "a huge arena":
        reseal(entry, raw)
        rebuilt(tmp_path, entry)


def test_the_metadata_round_trips(entry):
    data = entry.read_bytes()
    n_meta = cache.HEADER.unpack_from(data)[2]
    raw, obj = data[cache.HEADER.size : cache.HEADER.size + n_meta], data[cache.HEADER.size + n_meta :]
    assert cache_format.encode(cache_format.decode(raw, obj)) == raw


def test_a_fifo_in_place_of_an_entry_does_not_hang(tmp_path, entry):
    entry.unlink()
    os.mkfifo(entry)
    rebuilt(tmp_path, entry)


def test_a_symlink_in_place_of_an_entry_is_not_followed(tmp_path, entry):
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(entry.read_bytes())  # a valid entry, but outside the private folder
    entry.unlink()
    entry.symlink_to(elsewhere)
    rebuilt(tmp_path, entry)
    assert elsewhere.exists()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_a_folder_others_can_write_is_not_used(tmp_path, entry, mode):
    folder = entry.parent
    os.chmod(folder, mode)
    for _ in range(2):
        r = run(tmp_path)
        check(r)
        assert "not using the compile cache" in r.stderr and "others can write" in r.stderr
        assert r.stderr.count("not using the compile cache") == 1
    os.chmod(folder, 0o700)
    check(run(tmp_path), cached=True)  # (nothing in it was touched)


def test_a_fresh_folder_others_can_write_gets_no_entry_nor_grammar_tables(tmp_path):
    (tmp_path / "p.dfl").write_text(PROGRAM)
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    check(run(tmp_path, cache_dir=folder))
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder another user owns needs root")
def test_a_folder_another_user_owns_is_not_used(tmp_path, entry):
    os.chown(entry.parent, 65534, 65534)
    r = run(tmp_path)
    check(r)
    assert "another user owns it" in r.stderr


def test_stale_temporary_files_are_removed(tmp_path, entry):
    stale, fresh = entry.parent / ".tmp-stale", entry.parent / ".tmp-fresh"
    stale.write_bytes(b"half an entry")
    fresh.write_bytes(b"being written")
    hours_ago = time.time() - 2 * cachedir.STALE_TEMP_SECONDS
    os.utime(stale, (hours_ago, hours_ago))
    check(run(tmp_path), cached=True)
    assert not stale.exists() and fresh.exists()


def test_the_cache_info_counts_regular_entries_only(tmp_path, entry):
    os.mkfifo(entry.parent / ("0" * 64 + ".bin"))
    env = dict(os.environ, DIFFC_CACHE_DIR=str(entry.parent))
    r = subprocess.run(
        [sys.executable, "-m", "diffc", "cache", "info"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and ": 1 entries" in r.stdout, r.stdout + r.stderr
