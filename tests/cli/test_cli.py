"""The command line: `diffc run | check | show` (and every other subcommand's --help).

Exit status 0 on success, 1 for a mistake in the program (reported as `file:line:col` with the
source line, never a traceback), 2 for a bad command line. Most tests call `cli.main` in
process; two run `python -m diffc` to see what a shell sees."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

from diffc import cli

OK, PROGRAM, USAGE = 0, 1, 2

MAIN = """\
fn main(x, n, b, v) = (x * 2.0, n + 1, not b, v, {half: x / 2.0, n: n})
fn other(s) = s * 10
"""


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `diffc argv...`, in process."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse: --help and malformed command lines
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def prog(tmp_path):
    p = tmp_path / "prog.dfl"
    p.write_text(MAIN)
    return p


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


ARGS = ["--arg", "x=1.5", "--arg", "n=3", "--arg", "b=true", "--arg", "v=[1, 2]"]


# --- run -------------------------------------------------------------------------------------


def test_run_json(prog, capsys):
    code, out, err = run(capsys, "run", "--json", prog, *ARGS)
    assert code == OK and err == ""
    line = out.strip().splitlines()[-1]
    assert json.loads(line) == [3.0, 4, False, [1, 2], {"half": 0.75, "n": 3}]
    assert line.startswith("[3.0, 4, false, [1, 2], ")  # floats keep a fraction, ints do not


def test_run_text(prog, capsys):
    code, out, _ = run(capsys, "run", prog, *ARGS)
    assert code == OK
    assert out.strip() == "(3.0, 4, false, [1, 2], {half: 0.75, n: 3})"


def test_json_floats_always_have_a_fraction_or_exponent(tmp_path, capsys):
    p = write(tmp_path, "f.dfl", "fn main() = (3.0, [1.0, 2.0], 1e300 * 10.0, f32(2.0), 0.0 - 0.0)\n")
    code, out, _ = run(capsys, "run", "--json", p)
    assert code == OK
    text = out.strip()
    assert text.startswith("[3.0, [1.0, 2.0], 1e+301, 2.0, ")
    assert json.loads(text)[2] == 1e301


@pytest.mark.parametrize(
    "value, want",
    [
        ("2", 4.0),
        ("-1.5", -3.0),
        ("1e-3", 0.002),
        ("[1.0, 2.0]", [2.0, 4.0]),
        ("[[1], [2]]", [[2.0], [4.0]]),
    ],
)
def test_arg_values(tmp_path, capsys, value, want):
    p = write(tmp_path, "p.dfl", "fn main(x) = x * 2.0\n")
    code, out, _ = run(capsys, "run", "--json", p, "--arg", f"x={value}")
    assert code == OK and json.loads(out) == want


def test_arg_ints_and_bools_keep_their_type(tmp_path, capsys):
    p = write(tmp_path, "p.dfl", "fn main(n, b, bs) = (n // 2, b and true, bs)\n")
    code, out, _ = run(capsys, "run", "--json", p, "--arg", "n=7", "--arg", "b=false", "--arg", "bs=[true, false]")
    assert code == OK and out.strip() == "[3, false, [true, false]]"


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32, np.bool_])
def test_arg_npy_files(tmp_path, capsys, dtype):
    a = (np.arange(6).reshape(2, 3) % 2).astype(dtype)
    np.save(tmp_path / "a.npy", a)
    p = write(tmp_path, "p.dfl", "fn main(a) = (a, shape(a))\n")
    code, out, _ = run(capsys, "run", "--json", p, "--arg", f"a={tmp_path / 'a.npy'}")
    assert code == OK
    value, shape = json.loads(out)
    assert shape == [2, 3] and value == a.tolist()
    kind = {np.float64: float, np.float32: float, np.int64: int, np.int32: int, np.bool_: bool}[dtype]
    assert all(type(x) is kind for row in value for x in row)


def test_entry_option(prog, capsys):
    code, out, _ = run(capsys, "run", prog, "--entry", "other", "--arg", "s=4")
    assert code == OK and out.strip() == "40"


def test_time_passes(prog, capsys):
    code, out, err = run(capsys, "run", prog, *ARGS, "--time-passes")
    assert code == OK and out.strip().startswith("(3.0")
    assert "lower" in err and "ms" in err


def test_prints_come_before_the_value(tmp_path, capsys):
    p = write(tmp_path, "p.dfl", 'fn main() { print("a", 1); print("b", [true]); 2.5 }\n')
    code, out, _ = run(capsys, "run", p)
    assert code == OK and out.splitlines() == ["a 1", "b [true]", "2.5"]


# --- bad command lines: exit 2 -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arg", "x"], "expected NAME=VALUE"),
        (["--arg", "x=abc"], "expected a number"),
        (["--arg", "x=[[1.0], [2.0, 3.0]]"], "ragged"),
        (["--arg", 'x="text"'], "expected a number"),
        (["--arg", "y=1.0"], "no parameter `y`"),
        ([], "needs a value for parameter `x`"),
        (["--arg", "x=/no/such/file.npy"], "cannot read"),
        (["--arg", "x=1.0", "--entry", "nothing"], "no function `nothing`"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, args, message):
    p = write(tmp_path, "p.dfl", "fn main(x) = x\n")
    code, out, err = run(capsys, "run", p, *args)
    assert code == USAGE
    assert err.startswith("diffc: error:") and message in err, err


def test_missing_file_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "run", tmp_path / "nope.dfl")
    assert code == USAGE and "no such file" in err


def test_folder_instead_of_file_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "run", tmp_path)
    assert code == USAGE and "folder" in err


@pytest.mark.parametrize("argv", [[], ["run"], ["frobnicate", "x.dfl"], ["run", "x.dfl", "--no-such-flag"]])
def test_malformed_command_lines_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == USAGE and "usage:" in err


# --- mistakes in programs: exit 1, file:line:col, no traceback ---------------------------------------


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("fn main() = (1.0 +\n", "p.dfl:1:13", "unclosed"),  # syntax
        ("fn main() = y\n", "p.dfl:1:13", "unknown variable `y`"),  # names
        ("fn main() = [1.0, 2.0] + [1.0, 2.0, 3.0]\n", "p.dfl:1:13", "broadcast"),  # shapes
        ("fn main(i) {\n    let x = [1.0];\n    x[i * 5]\n}\n", "p.dfl:3:5", "out of bounds"),  # at run time
    ],
)
def test_program_errors_exit_1_with_location(tmp_path, capsys, text, where, message):
    p = write(tmp_path, "p.dfl", text)
    code, out, err = run(capsys, "run", p, *(["--arg", "i=1"] if "main(i)" in text else []))
    assert code == PROGRAM
    assert where in err and message in err, err
    lines = err.strip().splitlines()
    assert len(lines) >= 2 and "^" in lines[-1], "the source line and a caret follow the message"


def test_output_printed_before_a_runtime_error_is_kept(tmp_path, capsys):
    p = write(tmp_path, "p.dfl", 'fn main(i) {\n    print("before");\n    let x = [1.0];\n    x[i]\n}\n')
    code, out, err = run(capsys, "run", p, "--arg", "i=1")
    assert code == PROGRAM and out == "before\n" and "p.dfl:4:" in err


# --- check and show --------------------------------------------------------------------------------


def test_check_ok(prog, capsys):
    code, out, _ = run(capsys, "check", prog)
    assert code == OK and out.strip() == f"{prog}: ok"


def test_check_with_args_specialises(prog, capsys):
    code, out, _ = run(capsys, "check", prog, *ARGS)
    assert code == OK and "ok" in out


@pytest.mark.parametrize(
    "text, where",
    [
        ("fn main() = 1.0\nfn unused(x) = x + nope\n", "p.dfl:2:20"),  # found without running anything
        ("fn main() = [1.0] @ [1.0, 2.0]\n", "p.dfl:1:13"),  # found by specialising main
    ],
)
def test_check_reports_mistakes(tmp_path, capsys, text, where):
    p = write(tmp_path, "p.dfl", text)
    code, out, err = run(capsys, "check", p)
    assert code == PROGRAM and where in err


def test_show_ir(prog, capsys):
    code, out, _ = run(capsys, "show", prog, *ARGS)
    assert code == OK
    assert out.startswith("func main(") and "mul" in out and "return" in out
    code, explicit, _ = run(capsys, "show", "--ir", prog, *ARGS)
    assert code == OK and explicit == out


def test_show_ir_after_specialise(prog, capsys):
    code, out, _ = run(capsys, "show", "--ir", "--after", "specialise", prog, *ARGS)
    assert code == OK and out.startswith("func main(")


def test_show_ast_round_trips(prog, capsys):
    code, out, _ = run(capsys, "show", "--ast", prog)
    assert code == OK and "fn main(x, n, b, v)" in out and "fn other(s)" in out


def test_show_llvm(prog, capsys):
    code, out, _ = run(capsys, "show", "--llvm", prog, *ARGS)
    assert code == OK
    assert "define void @diffc_entry" in out or 'define void @"diffc_entry"' in out
    assert "; ---- assembly" in out


# --- help ------------------------------------------------------------------------------------------


def subcommands() -> list[str]:
    parser = cli._parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def test_known_subcommands():
    assert {"run", "check", "show"} <= set(subcommands())


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in subcommands()])
def test_help_exits_0(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == OK and out.startswith("usage: diffc")


# --- as a process ----------------------------------------------------------------------------------


def test_process_exit_codes_and_no_traceback(tmp_path):
    good = write(tmp_path, "good.dfl", "fn main() = [1.0, 2.0] * 2.0\n")
    bad = write(tmp_path, "bad.dfl", "fn main() {\n    let x = [1.0, 2.0];\n    x @ [1.0]\n}\n")
    r = subprocess.run([sys.executable, "-m", "diffc", "run", "--json", str(good)], capture_output=True, text=True)
    assert r.returncode == OK and json.loads(r.stdout) == [2.0, 4.0]
    r = subprocess.run([sys.executable, "-m", "diffc", "run", str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == PROGRAM
    assert "bad.dfl:3:5" in r.stderr and "Traceback" not in r.stderr + r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "diffc", "run", str(good), "--arg", "zzz=1"], capture_output=True, text=True
    )
    assert r.returncode == USAGE and "Traceback" not in r.stderr
