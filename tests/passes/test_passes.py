"""Golden tests per pass: tests/passes/<pass>/<case>.ir holds a program in IR text (ir/parse.py),
then a line `# expect:`, then the text of that program after this one pass. Lines starting
with `#` before the program say what the case checks. Every pass of pipeline.PASSES has its
own cases: what it must do, and what it must leave alone.

`pytest tests/passes --update-golden` rewrites the expected text from what the pass does now
(the flag of tests/support/golden.py); review the diff before keeping it."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffc.ir.parse import parse_program
from diffc.ir.printer import print_program
from diffc.ir.verify import verify
from diffc.pipeline import PASSES
from diffc.prims.core import all_prims

HERE = Path(__file__).resolve().parent
EXPECT = "# expect:\n"
CASES = sorted(HERE.glob("*/*.ir"))


def split(path: Path) -> tuple[str, str, str]:
    """(the comment lines, the input program, the expected program) of a case file."""
    text = path.read_text()
    if EXPECT not in text:
        raise AssertionError(f"{path.name}: no `# expect:` line")
    before, expected = text.split(EXPECT, 1)
    lines = before.splitlines(keepends=True)
    k = 0
    while k < len(lines) and lines[k].startswith("#"):
        k += 1
    return "".join(lines[:k]), "".join(lines[k:]).strip("\n") + "\n", expected


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_pass(path: Path, request):
    comments, source, expected = split(path)
    assert comments.strip(), f"{path.name}: say what the case checks in `#` lines before the program"
    prog = parse_program(source, all_prims())
    assert print_program(prog) == source, "the input is not in the printer's form (names in order)"
    verify(prog)
    got = print_program(dict(PASSES)[path.parent.name](prog))
    verify(parse_program(got, all_prims()))
    if request.config.getoption("--update-golden"):
        path.write_text(comments + source + EXPECT + got)
        return
    assert got == expected


def test_every_pass_has_cases():
    names = [name for name, _ in PASSES]
    folders = {p.name for p in HERE.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert folders == set(names), "one folder per pass of pipeline.PASSES"
    for name in names:
        assert len(list((HERE / name).glob("*.ir"))) >= 3, f"{name}: at least 3 cases"
