"""`diffc repl`: the line-handling logic, the session, and the command driven through stdin."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from diffc.errors import DiffcError, UsageError
from diffc.repl import Item, Session, is_definition, needs_more, program_text, read_entry


@pytest.mark.parametrize(
    "text, more",
    [
        ("1 + 2", False),
        ("fn f(x) =", True),
        ("fn f(x) {", True),
        ("[1.0,\n 2.0]", False),
        ("[1.0,", True),
        ("x +", True),
        ("x ** ", True),
        ("fn (x) =>", True),
        ("a and", True),
        ("band", False),  # a name that ends like a word operator
        ('print("(", x)', False),  # brackets in strings do not count
        ("f(x) # (", False),  # nor in comments
        ("x + # a comment", True),
        (":type [1.0,", False),  # commands are one line
        ("", False),
    ],
)
def test_needs_more(text, more):
    assert needs_more(text) is more


@pytest.mark.parametrize(
    "text, definition",
    [("fn f(x) = x", True), ("let a = 1", True), ("import nn", True), ("fn (x) => x", False), ("f(1)", False)],
)
def test_is_definition(text, definition):
    assert is_definition(text) is definition


def test_read_entry_goes_on_until_complete_or_a_blank_line():
    lines = iter(["fn f(x) =", "  x + 1.0", "f(1.0)"])
    assert read_entry(lambda _: next(lines, None), False) == "fn f(x) =\n  x + 1.0"
    lines = iter(["[1.0,", "", "next"])
    assert read_entry(lambda _: next(lines, None), False) == "[1.0,"
    assert read_entry(lambda _: None, False) is None


def test_program_text_places_definitions_at_their_lines():
    items = [Item("b", 3, 1, "fn b() =\n  2"), Item("a", 1, 5, "let a = 1")]
    assert program_text(items) == "    let a = 1\n\nfn b() =\n  2\n"


def test_a_session_defines_redefines_and_evaluates():
    s = Session()
    assert s.enter("fn f(x) = x * 2.0") is None
    assert s.enter("f(3.0)") == "6.0"
    assert s.enter("# a comment") is None and s.enter("   ") is None
    assert s.enter("fn f(x) = x + 1.0") is None  # replaces the old f
    assert s.enter("f(3.0)") == "4.0"
    assert s.enter("let v = [1.0, 2.0]") is None
    assert s.enter(":type (v, {w: 1})") == "(f64[2], {w: i64})"
    assert s.enter(":type f") == "fn f(x)"
    assert s.enter("fn g(x: f64[2]) -> f64 = sum(x * x)") is None
    assert s.enter(":grad g(v)") == "[2.0, 4.0]"
    assert "mul" in s.enter(":ir g")
    ir = s.enter(":grad g")
    assert ir.startswith("# value_and_grad of `g` w.r.t. arguments (0,)") and "reduce_sum" in ir


def test_errors_are_located_at_the_line_entered_and_the_session_goes_on():
    s = Session()
    s.enter("fn f(x) = x * 2.0")
    with pytest.raises(DiffcError) as e:
        s.enter("f(1.0) + undefined_name")
    assert e.value.location == "<repl>:2:10"
    assert e.value.render().splitlines()[1] == "    f(1.0) + undefined_name"
    with pytest.raises(DiffcError) as e:  # in the first line of a session too
        Session().enter("1.0 +* 2.0")
    assert e.value.location.startswith("<repl>:1:")
    with pytest.raises(DiffcError) as e:  # a definition that does not load is not kept
        s.enter("fn f(x) =\n  x + q")
    assert e.value.location == "<repl>:4:7"
    assert s.enter("f(1.0)") == "2.0"
    s.enter("fn h(x) = x @ x")
    with pytest.raises(DiffcError) as e:  # a type error inside a definition, found by a call
        s.enter("h(1.0)")
    assert e.value.location == "<repl>:6:11"  # (h is on line 6, the call on 7)
    with pytest.raises(DiffcError) as e:  # in the arguments of a command, at their columns
        s.enter(":grad f(1.0, nope)")
    assert e.value.location == "<repl>:8:14"
    with pytest.raises(UsageError):
        s.enter(":frob")


def test_load_adds_a_files_definitions(tmp_path):
    (tmp_path / "lib.dfl").write_text("fn sq(x) = x * x\n")
    (tmp_path / "bad.dfl").write_text("fn sq(x) = x * y\n")
    s = Session()
    assert "sq" in s.enter(f":load {tmp_path / 'lib.dfl'}")
    assert s.enter("sq(3.0)") == "9.0"
    with pytest.raises(DiffcError) as e:  # located in the file
        s.enter(f":load {tmp_path / 'bad.dfl'}")
    assert e.value.location == f"{tmp_path / 'bad.dfl'}:1:16"


def test_diffc_repl_reads_standard_input(tmp_path):
    entries = "\n".join(
        [
            "fn f(x) =",
            "  x * 2.0",
            "f(2.0)",
            "f(oops)",
            "[1.0,",
            " 2.0]",
            ":quit",
            "1.0",
        ]
    )
    env = {**os.environ, "DIFFC_CACHE": "0"}
    r = subprocess.run(
        [sys.executable, "-m", "diffc", "repl"],
        input=entries,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0
    assert r.stdout.splitlines() == ["4.0", "[1.0, 2.0]"]
    assert r.stderr.splitlines()[:3] == [
        "<repl>:4:3: error: unknown variable `oops`",
        "    f(oops)",
        "      ^~~~",
    ]


def test_on_a_terminal_ctrl_c_cancels_and_history_is_kept(tmp_path):
    """Ctrl-C ends a computation or an entry being typed, not the session; Ctrl-D leaves."""
    pexpect = pytest.importorskip("pexpect", reason="pexpect is not installed (it comes with IPython)")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "TERM": "dumb", "DIFFC_CACHE": "0"}
    c = pexpect.spawn(sys.executable, ["-m", "diffc", "repl"], env=env, encoding="utf-8", timeout=120)
    try:
        c.expect(">>> ")
        c.sendline("while(fn(x) => x > 0, fn(x) => x + 1, 1)")  # (runs until interrupted)
        time.sleep(2)  # (let the loop start: not an assertion on time)
        c.sendintr()
        c.expect("interrupted")
        c.expect(">>> ")
        c.sendline("[1.0,")
        c.expect(r"\.\.\. ")
        c.sendintr()
        c.expect(">>> ")
        c.sendline("2 + 3")
        c.expect("5\r\n>>> ")
        c.sendeof()
        c.expect(pexpect.EOF)
    finally:
        c.close(force=True)
    assert c.exitstatus == 0
    history = (tmp_path / "diffc" / "repl_history").read_text().splitlines()
    assert history[-1] == "2 + 3"


@pytest.mark.parametrize("command, says", [("repl", ":type, :ir, :grad"), ("lsp", "Language Server Protocol")])
def test_help(command, says):
    r = subprocess.run([sys.executable, "-m", "diffc", command, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and says in " ".join(r.stdout.split())
