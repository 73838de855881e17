"""What the command line reads and writes when it is not what it should be: program files and
imports that are not UTF-8 text or not regular files (a FIFO must not hang), damaged or
oversized .npy arguments, and a standard output that cannot be written. Each ends in one
message and a non-zero exit, never a traceback, a hang or an allocation attempt."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from diffc import cli

OK, PROGRAM, USAGE = 0, 1, 2
TIMEOUT = 60


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `diffc argv...`, in process."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def write(folder, name, data):
    p = folder / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


# --- program files and imports ---------------------------------------------------------------------


def test_program_file_not_utf8_is_located_at_the_bad_byte(tmp_path, capsys):
    p = write(tmp_path, "p.dfl", b"fn main() = 1.0\nfn f() = \xff\n")
    code, _, err = run(capsys, "run", p)
    assert code == PROGRAM and "p.dfl:2:10: error:" in err and "not UTF-8" in err


def test_imported_file_not_utf8(tmp_path, capsys):
    write(tmp_path, "lib.dfl", b"\xfe\xff")
    p = write(tmp_path, "p.dfl", "import lib\nfn main() = 1.0\n")
    code, _, err = run(capsys, "run", p)
    assert code == PROGRAM and "lib.dfl:1:1: error:" in err and "not UTF-8" in err


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_import_that_is_not_a_regular_file(tmp_path, capsys, kind):
    lib = tmp_path / "lib.dfl"
    os.mkfifo(lib) if kind == "fifo" else lib.mkdir()
    p = write(tmp_path, "p.dfl", "fn f() = 2.0\nimport lib\nfn main() = 1.0\n")
    code, _, err = run(capsys, "run", p)
    assert code == PROGRAM and "p.dfl:2:1: error:" in err and "not a regular file" in err


@pytest.mark.parametrize("path", ["fifo", "/dev/null"])
def test_program_file_that_is_not_a_regular_file(tmp_path, capsys, path):
    if path == "fifo":
        path = tmp_path / "p.dfl"
        os.mkfifo(path)
    code, _, err = run(capsys, "run", path)
    assert code == USAGE and "not a regular file" in err


def test_fifo_given_to_the_python_api_does_not_hang(tmp_path):
    import diffc

    os.mkfifo(tmp_path / "p.dfl")
    with pytest.raises(diffc.errors.UsageError, match="not a regular file"):
        diffc.load(tmp_path / "p.dfl")


# --- .npy arguments ----------------------------------------------------------------------------------


def npy_bytes(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def npy_header(shape, descr: str) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
    return f.getvalue()


@pytest.mark.parametrize(
    "data, message",
    [
        (npy_bytes(np.arange(6.0))[:-5], "holds 43"),  # truncated data
        (npy_bytes(np.arange(6.0))[:20], "cannot read"),  # truncated header
        (b"hello, world", "magic string"),  # not a .npy
        (npy_header((100_000_000_000,), "<f8") + bytes(64), "800000000000 bytes"),  # claims 745 GiB
        (npy_header((-2, 3), "<f8") + bytes(48), "the shape (-2, 3)"),
        (npy_header((2,), "|O") + bytes(16), "object"),
        (npy_bytes(np.ones(2, complex)), "complex128"),
        (npy_bytes(np.array([2**64 - 1], np.uint64)), "18446744073709551615"),
    ],
)
def test_bad_npy_arguments_exit_2(tmp_path, capsys, data, message):
    p = write(tmp_path, "p.dfl", "fn main(x) = x\n")
    arr = write(tmp_path, "x.npy", data)
    code, _, err = run(capsys, "run", p, "--arg", f"x={arr}")
    assert code == USAGE and err.startswith("diffc: error:") and message in err, err


def test_npy_arguments_in_fortran_order_and_empty(tmp_path, capsys):
    p = write(tmp_path, "p.dfl", "fn main(x, e) = (x[1], shape(e))\n")
    x = write(tmp_path, "x.npy", npy_bytes(np.asfortranarray(np.arange(6.0).reshape(2, 3))))
    e = write(tmp_path, "e.npy", npy_bytes(np.zeros((0, 3))))
    code, out, _ = run(capsys, "run", "--json", p, "--arg", f"x={x}", "--arg", f"e={e}")
    assert code == OK and out.strip() == "[[3.0, 4.0, 5.0], [0, 3]]"


def test_npy_fifo_does_not_hang(tmp_path, capsys):
    p = write(tmp_path, "p.dfl", "fn main(x) = x\n")
    os.mkfifo(tmp_path / "x.npy")
    code, _, err = run(capsys, "run", p, "--arg", f"x={tmp_path / 'x.npy'}")
    assert code == USAGE and "not a regular file" in err


# --- standard output ---------------------------------------------------------------------------------


def diffc_process(args, **kw):
    return subprocess.run([sys.executable, "-m", "diffc", *map(str, args)], timeout=TIMEOUT, **kw)


@pytest.mark.parametrize("text", ["fn main() = arange(10)\n", 'fn main() { print("x", 1.0); 2.0 }\n'])
def test_full_disk_on_stdout_is_one_line(tmp_path, text):
    p = write(tmp_path, "p.dfl", text)
    with open("/dev/full", "w") as full:
        r = diffc_process(["run", p], stdout=full, stderr=subprocess.PIPE, text=True)
    assert r.returncode == PROGRAM
    assert r.stderr == "diffc: error: cannot write the output: No space left on device\n"


@pytest.mark.parametrize("text", ["fn main() = arange(100000)\n", 'fn main() { print("x", arange(100000)); 2.0 }\n'])
def test_closed_pipe_exits_quietly(tmp_path, text):
    """(More than a pipe's buffer is written, so the write fails whenever `head` exits.)"""
    p = write(tmp_path, "p.dfl", text)
    r = subprocess.run(
        f"{sys.executable} -m diffc run {p} | head -c 0; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert r.returncode == cli.EXIT_BROKEN_PIPE and r.stderr == ""


@pytest.mark.parametrize(
    "text, want",
    [("inf", "Infinity"), ("-inf", "-Infinity"), ("+Inf", "Infinity"), ("nan", "NaN"), ("Infinity", "Infinity")],
)
def test_infinities_and_nan_as_arguments(tmp_path, capsys, text, want):
    p = write(tmp_path, "p.dfl", "fn main(x) = x\n")
    assert run(capsys, "run", p, "--arg", f"x={text}") == (OK, want + "\n", "")
