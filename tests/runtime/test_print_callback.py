"""An exception in the Python code that a print runs (a print hook's, a closed pipe's) stops
the native call, which raises it: ctypes would print it as "Exception ignored" and go on."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from support.native import module

M = module("""
    fn count(xs) = fold(fn(a, x) => { print(x); a + x }, 0, xs)
""")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Refusing(io.StringIO):
    def write(self, text):
        if len(self.getvalue()) > 4:
            raise ValueError("no more")
        return super().write(text)


def test_an_exception_in_a_print_hook_is_raised_by_the_call(monkeypatch):
    hook = Refusing()
    monkeypatch.setattr(sys, "stdout", hook)
    with pytest.raises(ValueError, match="no more"):
        M.count(np.arange(1000))
    monkeypatch.undo()
    assert hook.getvalue() == "0\n1\n2\n"  # the call stopped at the first refusal
    assert M.count(np.arange(3)) == 3


def test_a_closed_pipe_ends_the_run_quietly(tmp_path):
    prog = tmp_path / "many.dfl"
    prog.write_text("fn main() = fold(fn(a, x) => { print(x); a + x }, 0, arange(1000000))\n")
    env = {**os.environ, "PYTHONPATH": ROOT, "DIFFC_CACHE": "0"}
    p = subprocess.Popen(
        [sys.executable, "-m", "diffc", "run", str(prog)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert p.stdout.readline() == b"0\n"
    p.stdout.close()  # like `diffc run many.dfl | head -1`
    err = p.stderr.read()
    assert (p.wait(timeout=120), err) == (141, b"")  # as a process killed by SIGPIPE (cli.EXIT_BROKEN_PIPE)
