"""The compile cache on disk: machine code and what the runtime needs to call it, per
(program sources, entry, transform, argument signature, compiler, CPU).

An entry is a file `<key>.bin`: a header that holds the entry's full key, the sizes of its two
parts and a SHA-256 of the rest, then the metadata as JSON and the object code
(See Note [Entry format]). Nothing in it can run Python code when read: the metadata is
decoded field by field and checked (runtime/cache_format.py), and an entry whose key, sizes,
checksum or fields are wrong is removed and rebuilt. Entries are written atomically (a
temporary file renamed into place, so two processes at once never see half an entry).

The folder is private (see cachedir.py). Anything in it that is not a regular file (a
symlink, a FIFO) is never opened. `diffc cache clear` empties it."""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import struct
import sys
import tempfile
from pathlib import Path

from ..cachedir import cache_dir, remove_file
from ..lower import gemm

MAGIC = b"DIFFC-CACHE-2\n"
HEADER = struct.Struct("<14s32sQQ32s")  # magic, key, metadata bytes, object bytes, SHA-256
MAX_ENTRY_BYTES = 1 << 30


class Damaged(ValueError):
    """An entry that is not what its name says: removed, and its program compiled again."""


@functools.cache
def compiler_fingerprint() -> str:
    """A hash of diffc's own code, the grammar, this CPU and this Python (the direct entry of
    lower/pyentry.py is built for its C API): a changed compiler never reuses machine code made
    by another one."""
    import llvmlite.binding as llvm

    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parents[1]
    for p in sorted(pkg.rglob("*.py")) + sorted((pkg.parent / "grammar").glob("*.lark")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(llvm.get_host_cpu_name().encode())
    h.update(llvm.get_host_cpu_features().flatten().encode())
    h.update(repr(gemm.caches()).encode())  # the kernels' blocks and the products' routes
    h.update(llvm.__name__.encode())
    h.update(f"{sys.implementation.cache_tag} {sys.abiflags} {object.__basicsize__}".encode())
    return h.hexdigest()


def sources_of(module) -> list[tuple[str, str]]:
    """(name, text) of a program's module and everything it imports."""
    seen, out = set(), []

    def go(m):
        if id(m) in seen:
            return
        seen.add(id(m))
        out.append((m.name, m.source.text))
        for sub in m.imports.values():
            go(sub)

    go(module)
    return out


def key(module, fn_name: str, arg_types, transform) -> str:
    """The key of a program's entry: a SHA-256 (hex) of everything its machine code depends on."""
    h = hashlib.sha256()
    h.update(compiler_fingerprint().encode())
    for name, text in sources_of(module):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    entry_file = module.fns[fn_name].span.file  # not the module's own text for Module.evaluate's expressions
    if entry_file is not None and entry_file is not module.source:
        h.update(entry_file.text.encode())
    h.update(repr((fn_name, transform, arg_types, module.source.name)).encode())
    return h.hexdigest()


def kernel_key(name: str) -> str:
    """The key of a kernel compiled apart (lower/gemm.py): it depends on the compiler only."""
    return hashlib.sha256(f"{compiler_fingerprint()} kernel {name}".encode()).hexdigest()


def load(k: str) -> tuple[bytes, bytes] | None:
    """(metadata, object code) of the entry of key k, or None: no entry, the cache off, or an
    entry that is damaged or not ours (then removed). The caller decodes the metadata and
    calls remove(k) if it is wrong."""
    d = cache_dir()
    if d is None:
        return None
    path = d / f"{k}.bin"
    try:
        data = _read_regular_file(path)
        if data is None:
            return None
        return _unpack(k, data)
    except Damaged:
        remove_file(path)
        return None


def store(k: str, metadata: bytes, object_code: bytes) -> None:
    """Write an entry atomically; a failure to write only costs the next process a compile."""
    d = cache_dir()
    if d is None:
        return
    key_bytes = bytes.fromhex(k)
    digest = hashlib.sha256(key_bytes + metadata + object_code).digest()
    header = HEADER.pack(MAGIC, key_bytes, len(metadata), len(object_code), digest)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")  # (mode 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(header + metadata + object_code)
        os.replace(tmp, d / f"{k}.bin")
    except OSError:
        if tmp is not None:
            remove_file(Path(tmp))


def remove(k: str) -> None:
    """Remove the entry of key k (found wrong by its reader)."""
    d = cache_dir()
    if d is not None:
        remove_file(d / f"{k}.bin")


def entries(d: Path) -> list[Path]:
    """The entry files in folder d (regular files only)."""
    return [p for p in d.glob("*.bin") if stat.S_ISREG(p.lstat().st_mode)]


def clear() -> int:
    """Remove every entry; returns how many there were."""
    d = cache_dir()
    if d is None:
        return 0
    return sum(remove_file(p) for p in d.glob("*.bin"))


def _read_regular_file(path: Path) -> bytes | None:
    """The bytes of path if it is a regular file of ours; None if there is nothing there.
    Never follows a symlink nor waits on a FIFO or a device (Damaged: it is removed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise Damaged("not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        raise Damaged("cannot be opened") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)  # (what was opened, which may have been replaced since the lstat)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_size > MAX_ENTRY_BYTES:
            raise Damaged("not a regular file of ours")
        return f.read(MAX_ENTRY_BYTES + 1)


def _unpack(k: str, data: bytes) -> tuple[bytes, bytes]:
    if len(data) < HEADER.size:
        raise Damaged("shorter than its header")
    magic, key_bytes, n_meta, n_object, digest = HEADER.unpack_from(data)
    if magic != MAGIC or key_bytes != bytes.fromhex(k):
        raise Damaged("another format or another key")
    if HEADER.size + n_meta + n_object != len(data):
        raise Damaged("truncated or extended")
    rest = data[HEADER.size :]
    if hashlib.sha256(key_bytes + rest).digest() != digest:
        raise Damaged("checksum")
    return rest[:n_meta], rest[n_meta:]


# Note [Entry format]
# ~~~~~~~~~~~~~~~~~~~
# <key>.bin, little-endian:
#
#     14 bytes   b"DIFFC-CACHE-2\n"
#     32 bytes   the key (the SHA-256 its file is named by): an entry renamed or copied under
#                another key is refused, so two swapped entries are never served for each
#                other (which ran code made for other shapes on the caller's buffers)
#      8 bytes   n, the length of the metadata
#      8 bytes   m, the length of the object code
#     32 bytes   SHA-256 of key, metadata and object code: a damaged entry is refused
#      n bytes   metadata: UTF-8 JSON (runtime/cache_format.py)
#      m bytes   object code (ELF), for MCJIT
#
# The checksum is not a signature: anyone who can write the folder can write a valid entry, and
# its machine code runs. That is why the folder must be private rather than why entries are
# checked. The grammar's parse tables (Lark's own cache, a pickle) live in the same folder and
# are used only when it is private (syntax/parse.py).
