"""The folder diffc keeps files in between processes (compiled code, the parser's tables):
where it is, and whether it and a file in it may be trusted.

The folder must be private: it is made with mode 0700, and one that another user owns or that
others can write is not used (caching is then off, with a warning on stderr once), since
whoever can write it chooses the machine code every diffc process runs. Temporary files left by
a process that died are removed after an hour. DIFFC_CACHE_DIR moves it (default
~/.cache/diffc); DIFFC_CACHE=0 turns caching off."""

from __future__ import annotations

import functools
import os
import stat
import sys
import time
from pathlib import Path

STALE_TEMP_SECONDS = 3600


def cache_dir() -> Path | None:
    """Where entries live, or None when the cache is off: turned off by DIFFC_CACHE=0, or a
    folder that cannot be made or is not private (see the module docstring)."""
    if os.environ.get("DIFFC_CACHE", "1").lower() in ("0", "off", "false", "no"):
        return None
    root = os.environ.get("DIFFC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "diffc"
    )
    return Path(root) if _private(root) else None


def _private(root: str) -> bool:
    """Make the folder if it is missing; whether it is ours alone to write."""
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        st = os.stat(root)
    except OSError:  # (a read-only home, say: the cache is off, as when writes fail)
        return False
    if not stat.S_ISDIR(st.st_mode):
        return _refuse(root, "it is not a folder")
    if st.st_uid != os.getuid():
        return _refuse(root, "another user owns it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return _refuse(root, f"others can write it (mode {stat.S_IMODE(st.st_mode):o}; chmod 700 it)")
    _remove_stale_temporaries(root)
    return True


@functools.cache
def _refuse(root: str, why: str) -> bool:
    """Warn once per folder and reason; the cache is off."""
    print(f"diffc: warning: not using the compile cache in {root}: {why}", file=sys.stderr)
    return False


@functools.cache
def _remove_stale_temporaries(root: str) -> None:
    """Remove the temporary files of writes that never finished (once per process)."""
    old = time.time() - STALE_TEMP_SECONDS
    try:
        with os.scandir(root) as it:
            for e in it:
                if e.name.startswith(".tmp-") and e.stat(follow_symlinks=False).st_mtime < old:
                    remove_file(Path(e.path))
    except OSError:
        pass


def cache_file_usable(path: Path) -> bool:
    """Whether path (in the cache folder) is missing or a regular file of ours, so that another
    library may read and write it there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()


def remove_file(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except OSError:
        return 0
