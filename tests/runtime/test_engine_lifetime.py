"""Dropping compiled modules must not crash the process. A regression test, run in a
subprocess so that a crash cannot take pytest down: `llvm.create_mcjit_compiler` makes each
engine the owner of its TargetMachine, and when diffc shared one machine between all engines,
the first engine garbage-collected freed it and the next compile aborted the process."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc, diffc
for i in range(3):
    m = diffc.compile('fn main() = 1.0 + 2.0')
    assert m.main() == 3.0
    del m
    gc.collect()
print("survived")
"""


def test_dropping_compiled_modules_does_not_crash():
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"exit status {r.returncode}\n{r.stderr[-2000:]}"
    assert "survived" in r.stdout
