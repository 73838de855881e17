"""`diffc test`: .dfl files with their expectations in comments (diffc/testing.py), one line
per failure and a summary, exit 1 on a failure; and the small things of the command line:
`--version`, `run -` (the program on standard input), `diffc` alone prints the usage."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from diffc import __version__, cli

OK, PROGRAM, USAGE = 0, 1, 2


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `diffc argv...`, in process."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse: --help, --version and malformed command lines
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def write(folder, name, text):
    p = folder / name
    p.write_text(text)
    return p


# A derivative that custom_vjp gets wrong on purpose: gradcheck must notice.
WRONG_VJP = """\
fn sq(x) = x * x
fn sq_fwd(x) = (x * x, x)
fn sq_bwd(x, ct) = (3.0 * x * ct,)
fn loss(x: f64[3]) = sum(custom_vjp(sq, sq_fwd, sq_bwd)(x))
"""

CASES = {
    "value_ok.dfl": ("# expect: [3, 2.5]\nfn main() = (1 + 2, 2.5)\n", True),
    "value_wrong.dfl": ("# expect: [3, 2.5]\nfn main() = (1 + 2, 2.0)\n", False),
    "kind_wrong.dfl": ("# expect: 3.0\nfn main() = 3\n", False),
    "args_ok.dfl": ('# args: {"xs": [1.0, 2.0]}\n# expect: 3.0\nfn main(xs) = sum(xs)\n', True),
    "args_missing.dfl": ("# expect: 3.0\nfn main(xs) = sum(xs)\n", False),
    "prints_ok.dfl": ('# expect: 1\n# prints: ["hi 2.0"]\nfn main() { print("hi", 2.0); 1 }\n', True),
    "prints_wrong.dfl": ('# expect: 1\n# prints: ["hello"]\nfn main() { print("hi", 2.0); 1 }\n', False),
    "error_ok.dfl": ("# error: 2:13 unknown variable\nfn main() = nope + 1.0\n", True),
    "error_wrong_place.dfl": ("# error: 2:1 unknown variable\nfn main() = nope + 1.0\n", False),
    "error_wrong_text.dfl": ("# error: 2:13 shape mismatch\nfn main() = nope + 1.0\n", False),
    "error_none.dfl": ("# error: 2:13 unknown variable\nfn main() = 1.0\n", False),
    "error_malformed.dfl": ("# error: somewhere\nfn main() = nope\n", False),
    "unexpected_error.dfl": ("# expect: 1.0\nfn main() = nope\n", False),
    "grad_ok.dfl": ("# grad-check: f\nfn f(x: f64[2], s: f64) = sum(tanh(x * s))\n", True),
    "grad_args.dfl": ('# grad-check: f {"x": [1.0, 2.0, 3.0]}\nfn f(x: f64[n], s: f64) = sum(x * s)\n', True),
    "grad_wrong.dfl": ("# grad-check: loss\n" + WRONG_VJP, False),
    "grad_unknown_fn.dfl": ("# grad-check: nothing\nfn f(x: f64) = x\n", False),
    "grad_untyped.dfl": ("# grad-check: f\nfn f(x) = x * x\n", False),
    "xfail_fails.dfl": ("# xfail: a known bug\n# expect: 1\nfn main() = 2\n", True),
    "xfail_passes.dfl": ("# xfail: a known bug\n# expect: 2\nfn main() = 2\n", False),
    "main_unchecked.dfl": ("fn main() = 2\n", False),
    "helper.dfl": ("fn helper(x) = x + 1\n", True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_directive_passes_and_fails(capsys, tmp_path, name):
    text, passes = CASES[name]
    path = write(tmp_path, name, text)
    code, out, _ = run(capsys, "test", path)
    lines = out.splitlines()
    if passes:
        assert code == OK and len(lines) == 1 and " 0 failed" in lines[-1], out
    else:
        assert code == PROGRAM and len(lines) == 2, out
        assert lines[0].startswith(f"FAIL {path}:") and lines[-1].startswith("0 passed, 1 failed")


def test_a_failure_names_the_directive_line(capsys, tmp_path):
    path = write(tmp_path, "p.dfl", "# a comment\n# expect: [1, 2]\nfn main() = (1, 3)\n")
    _, out, _ = run(capsys, "test", path)
    assert out.splitlines()[0] == f"FAIL {path}:2: main() differs from `# expect:`: value[1]: expected int 2, got 3"


def test_folders_summary_and_verbose(capsys, tmp_path):
    for name, (text, _) in CASES.items():
        write(tmp_path, name, text)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "deep.dfl", "# expect: 1\nfn main() = 1\n")
    write(tmp_path, "notes.txt", "# expect: 1\n")
    code, out, _ = run(capsys, "test", tmp_path)
    passed = sum(p for _, p in CASES.values()) - 2 + 1  # less the xfail and the helper, plus deep.dfl
    failed = len(CASES) - sum(p for _, p in CASES.values())
    assert code == PROGRAM
    assert out.splitlines()[-1] == f"{passed} passed, {failed} failed, 1 expected failure, 1 skipped"
    assert sum(line.startswith("FAIL ") for line in out.splitlines()) == failed
    code, out, _ = run(capsys, "test", "-v", tmp_path)
    assert f"PASSED {tmp_path / 'sub' / 'deep.dfl'}" in out and "\n    " in out  # details indented


def test_a_bug_in_diffc_fails_that_file_only(capsys, tmp_path, monkeypatch):
    from diffc import testing

    def broken(path):
        if path.name == "a.dfl":
            raise KeyError("oops")
        return real(path)

    real = testing.api.load
    monkeypatch.setattr(testing.api, "load", broken)
    write(tmp_path, "a.dfl", "# expect: 1\nfn main() = 1\n")
    write(tmp_path, "b.dfl", "# expect: 1\nfn main() = 1\n")
    code, out, _ = run(capsys, "test", tmp_path)
    assert code == PROGRAM
    assert out.splitlines() == [
        f"FAIL {tmp_path / 'a.dfl'}: internal error in diffc: KeyError: 'oops'",
        "1 passed, 1 failed",
    ]


def test_update_rewrites_expect_lines(capsys, tmp_path):
    path = write(tmp_path, "p.dfl", "# expect: 0\nfn main() = (1, [2.0, 3.0])\n")
    assert run(capsys, "test", "--update", path)[0] == OK
    assert path.read_text().splitlines()[0] == "# expect: [1, [2.0, 3.0]]"
    assert run(capsys, "test", path)[0] == OK


def test_paths_that_are_not_there_are_usage_errors(capsys, tmp_path):
    code, _, err = run(capsys, "test", tmp_path / "missing.dfl")
    assert code == USAGE and "no such file or folder" in err
    code, _, err = run(capsys, "test", tmp_path)  # a folder without .dfl files
    assert code == USAGE and "no .dfl files" in err


# --- the command line itself -----------------------------------------------------------------------


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == OK and out.strip() == f"diffc {__version__}"


def test_no_subcommand_prints_the_usage(capsys):
    code, out, err = run(capsys)
    assert code == USAGE and err.startswith("usage: diffc") and "test" in err and "required" not in err


def test_run_reads_the_program_from_standard_input(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("fn main(x) = x * 2.0\n"))
    assert run(capsys, "run", "-", "--arg", "x=1.5")[:2] == (OK, "3.0\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("fn main() = nope\n"))
    code, _, err = run(capsys, "run", "-")
    assert code == PROGRAM and err.startswith("<stdin>:1:13: error:")


def test_standard_input_as_a_process():
    argv = [sys.executable, "-m", "diffc", "run", "--json", "-"]
    r = subprocess.run(argv, input="fn main() = [1, 2]\n", capture_output=True, text=True)
    assert r.returncode == OK and r.stdout == "[1, 2]\n"
    r = subprocess.run(argv, input=b"fn main() = \xff\n", capture_output=True)
    assert r.returncode == USAGE and b"not UTF-8" in r.stderr and b"Traceback" not in r.stderr
