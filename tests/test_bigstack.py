"""Deep programs: long operator chains, many unary minus signs, deeply nested blocks, calls
and array literals compile on the big-stack worker (diffc/bigstack.py) instead of raising
a bare RecursionError; absurd depths are one located error; nothing crashes the process."""

from __future__ import annotations

import subprocess
import sys

import pytest

import diffc
from diffc.errors import DiffcSyntaxError, ShapeError
from diffc.syntax.parse import MAX_NESTING

DEEP = [
    (" + ".join(["1.0"] * 500), 500.0),
    ("-" * 800 + "1.0", 1.0),
    ("{ " * 5000 + "2.0" + " }" * 5000, 2.0),
    ("(" * 5000 + "3.0" + ")" * 5000, 3.0),
    ("abs(" * 3000 + "-4.0" + ")" * 3000, 4.0),
    ("[" * 30 + "5.0" + "]" * 30, [5.0]),
]


@pytest.mark.parametrize("expr, want", DEEP, ids=["chain", "minus", "blocks", "parens", "calls", "array"])
def test_deep_programs_compile(expr, want):
    got = diffc.compile(f"fn main() = {expr}").main()
    assert (got.ravel().tolist() if hasattr(got, "ravel") else got) == want


def test_the_recursion_limit_is_restored():
    before = sys.getrecursionlimit()
    diffc.compile("fn main() = " + " + ".join(["1.0"] * 500)).main()
    assert sys.getrecursionlimit() == before


def test_a_3000_deep_array_literal_is_a_rank_error():
    with pytest.raises(ShapeError, match="arrays have at most 32 axes") as info:
        diffc.compile("fn main() = " + "[" * 3000 + "1.0" + "]" * 3000).main()
    assert info.value.span.line == 1


def test_absurd_nesting_is_a_located_error():
    k = MAX_NESTING + 10
    with pytest.raises(DiffcSyntaxError, match="nested too deeply") as info:
        diffc.compile("fn main() =\n " + "-" * k + "1.0")
    assert info.value.span.line == 2


def test_deep_program_from_the_command_line(tmp_path):
    p = tmp_path / "deep.dfl"
    p.write_text("fn main() = " + "{ " * 5000 + "1.0" + " }" * 5000 + "\n")
    r = subprocess.run([sys.executable, "-m", "diffc", "run", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "1.0\n", r.stderr
