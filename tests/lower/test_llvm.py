"""`diffc show --llvm`: loops are real loops in the generated LLVM IR (a phi and a branch back
to the loop head), and they survive optimisation when the trip count is large."""

from __future__ import annotations

import re

import numpy as np
import pytest

from diffc import cli


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^; ---- (.+)$", text, flags=re.MULTILINE)
    return {name.strip(): body for name, body in zip(parts[1::2], parts[2::2])}


def loop_edges(llvm_ir: str) -> list[tuple[str, str]]:
    """(from block, to block) for every branch that closes a cycle of the control-flow graph:
    the target block can reach the branching block again."""
    found = []
    for fn in re.findall(r"^define\b[^{]*\{\n(.*?)^\}", llvm_ir, flags=re.MULTILINE | re.DOTALL):
        succ, current = {}, None
        for line in fn.splitlines():
            label = re.match(r'^"?([\w.\-]+)"?:', line)
            if label:
                current = label.group(1)
                succ[current] = []
            elif current is not None and re.match(r"\s+br ", line):
                succ[current] += re.findall(r'label %"?([\w.\-]+)"?', line)

        def reaches(a, b):
            seen, todo = set(), [a]
            while todo:
                n = todo.pop()
                if n == b:
                    return True
                if n not in seen:
                    seen.add(n)
                    todo += succ.get(n, [])
            return False

        found += [(u, v) for u, vs in succ.items() for v in vs if reaches(v, u)]
    return found


@pytest.fixture
def fold_program(tmp_path):
    p = tmp_path / "fold.dfl"
    p.write_text("fn main(xs) = fold(fn(acc, x) => acc * 0.5 + x, 0.0, xs)\n")
    return p


def show_llvm(capsys, path, *args) -> dict[str, str]:
    assert cli.main(["show", "--llvm", str(path), *args]) == 0
    out = sections(capsys.readouterr().out)
    assert set(out) == {"LLVM IR, as generated", "LLVM IR, optimised", "assembly"}
    return out


def loops_named(capsys, tmp_path, name: str, source: str, *args) -> int:
    """How many loops named `name` (emit's loop names: cp for copies, red for reductions, ...)
    the LLVM IR generated for `source`'s main has."""
    p = tmp_path / "p.dfl"
    p.write_text(source)
    generated = show_llvm(capsys, p, *args)["LLVM IR, as generated"]
    return len(re.findall(rf'^"?{name}\d*\.head', generated, flags=re.MULTILINE))


def test_fold_lowers_to_a_loop(fold_program, capsys):
    out = show_llvm(capsys, fold_program, "--arg", "xs=[1.0, 2.0, 3.0]")
    raw = out["LLVM IR, as generated"]
    assert re.search(r"= phi\s+i64", raw), "the loop counter is a phi"
    assert loop_edges(raw), "some block branches back to the loop head"
    assert "define void @diffc_entry" in out["LLVM IR, optimised"]
    assert out["assembly"].strip()


def test_a_long_fold_stays_a_loop_after_optimisation(fold_program, capsys, tmp_path):
    npy = tmp_path / "xs.npy"
    np.save(npy, np.ones(10_000))
    out = show_llvm(capsys, fold_program, "--arg", f"xs={npy}")
    assert loop_edges(out["LLVM IR, optimised"])


def test_straight_line_code_has_no_loop(tmp_path, capsys):
    p = tmp_path / "flat.dfl"
    p.write_text("fn main(x) = x * 2.0 + 1.0\n")
    out = show_llvm(capsys, p, "--arg", "x=1.5")
    assert not loop_edges(out["LLVM IR, as generated"])


def test_loop_edge_finder():
    text = (
        'define void @f()\n{\nentry:\n  br label %"start"\nexit:\n  ret void\nstart:\n  br label %"a.head"\n'
        'a.head:\n  br i1 %c, label %"a.body", label %"exit"\na.body:\n  br label %"a.head"\n}\n'
    )
    assert loop_edges(text) == [("a.head", "a.body"), ("a.body", "a.head")]
