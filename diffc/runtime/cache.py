"""The compile cache on disk: machine code and what the runtime needs to call it, per
(program sources, entry, transform, argument signature, compiler, CPU).

An entry is written atomically (a temporary file renamed into place, so two processes at once
never see half an entry) and carries a SHA-256 of its contents: a damaged entry is detected,
removed and rebuilt. DIFFC_CACHE_DIR moves the cache (default ~/.cache/diffc); DIFFC_CACHE=0
turns it off; `diffc cache clear` empties it."""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path

MAGIC = b"DIFFC-CACHE-1\n"


def cache_dir() -> Path | None:
    """Where entries live, or None when the cache is turned off."""
    if os.environ.get("DIFFC_CACHE", "1").lower() in ("0", "off", "false", "no"):
        return None
    root = os.environ.get("DIFFC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "diffc"
    )
    return Path(root)


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


def load(k: str):
    """The cached entry for key k, or None (also when it is damaged: it is then removed)."""
    d = cache_dir()
    if d is None:
        return None
    path = d / f"{k}.bin"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    body = data[len(MAGIC) + 32 :]
    if not data.startswith(MAGIC) or hashlib.sha256(body).digest() != data[len(MAGIC) : len(MAGIC) + 32]:
        _remove(path)
        return None
    try:
        return pickle.loads(body)
    except Exception:
        _remove(path)
        return None


def store(k: str, entry) -> None:
    """Write an entry atomically; a failure to write only costs the next process a compile."""
    d = cache_dir()
    if d is None:
        return
    body = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + hashlib.sha256(body).digest() + body)
        os.replace(tmp, d / f"{k}.bin")
    except OSError:
        pass


def clear() -> int:
    """Remove every entry; returns how many there were."""
    d = cache_dir()
    if d is None or not d.is_dir():
        return 0
    n = 0
    for p in d.glob("*.bin"):
        n += _remove(p)
    return n


def _remove(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except OSError:
        return 0
