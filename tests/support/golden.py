"""The golden-file plugin: DFL programs that carry their own expectations (style.md, practice 7).

tests/programs/NAME.dfl
    # expect: <JSON>           the value of `main(...)`, converted to JSON-like Python values
    # args: <JSON object>      optional: main's arguments by parameter name (lists become NumPy
                               arrays); arguments are never known at compile time, so this is
                               how a program makes the compiler emit code for run-time values
    # prints: <JSON list>      optional: the lines `main()` writes to standard output, in order
    # xfail: <reason>          optional: a known diffc bug (strict: the test fails once it is fixed)
  A file without `fn main` is a helper module imported by other programs and is not collected;
  a file with `fn main` and no `# expect:` line is reported as a failing test, so that a program
  can never silently stop being checked.

tests/errors/NAME.dfl
    # args: <JSON object>      as above.
    # error: LINE:COL <text>   loading, compiling or running `main(...)` raises a DiffcError
                               (never an InternalError) located at LINE:COL of this file whose
                               message contains <text>; `diffc run NAME.dfl` then exits 1 with
                               `NAME.dfl:LINE:COL` on stderr and no Python traceback.
    # xfail: <reason>          as above.

LINE counts every line of the file, the header lines included.

Comparison: tuples and arrays are lists, records are dicts, and leaves must agree in kind:
a float is expected where the program gives a float (f64 or f32), an int where it gives an
i64, a bool where it gives a bool. Floats agree within rel 1e-9 / abs 1e-12 (NaN equals NaN).

`pytest --update-golden` rewrites the `# expect:` lines of tests/programs from what diffc
computes now; review the diff before keeping it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import diffc
from diffc import cli
from diffc.errors import DiffcError, InternalError, UsageError

REL, ABS = 1e-9, 1e-12
_HEADER = re.compile(r"^#\s*(expect|args|prints|error|xfail):\s?(.*)$")
_HAS_MAIN = re.compile(r"^\s*fn\s+main\s*\(", re.MULTILINE)
_ERROR_AT = re.compile(r"^(\d+):(\d+)\s+(.+)$")


# --- values ------------------------------------------------------------------------------------


def to_jsonlike(v):
    """A value returned by diffc's Python API as plain JSON-like Python values."""
    if isinstance(v, tuple | list):
        return [to_jsonlike(x) for x in v]
    if isinstance(v, dict):
        return {k: to_jsonlike(x) for k, x in v.items()}
    if isinstance(v, np.ndarray | np.generic):
        return to_jsonlike(v.tolist()) if isinstance(v, np.ndarray) else v.item()
    return v


def mismatches(got, want, path: str = "value") -> list[str]:
    """Every place where `got` differs from `want` (empty when they agree)."""
    if isinstance(want, bool):
        ok = isinstance(got, bool) and got == want
        return [] if ok else [f"{path}: expected bool {want!r}, got {got!r}"]
    if isinstance(want, int):
        ok = isinstance(got, int) and not isinstance(got, bool) and got == want
        return [] if ok else [f"{path}: expected int {want!r}, got {got!r}"]
    if isinstance(want, float):
        if not (isinstance(got, float)):
            return [f"{path}: expected float {want!r}, got {got!r}"]
        if math.isnan(want) or math.isnan(got):
            return [] if math.isnan(want) and math.isnan(got) else [f"{path}: expected {want!r}, got {got!r}"]
        return [] if math.isclose(got, want, rel_tol=REL, abs_tol=ABS) else [f"{path}: expected {want!r}, got {got!r}"]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: expected a list of {len(want)}, got {_short(got)}"]
        return [m for k, (g, w) in enumerate(zip(got, want)) for m in mismatches(g, w, f"{path}[{k}]")]
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [f"{path}: expected a record with fields {sorted(want)}, got {_short(got)}"]
        return [m for k in want for m in mismatches(got[k], want[k], f"{path}.{k}")]
    return [] if got == want else [f"{path}: expected {want!r}, got {got!r}"]


def _short(v) -> str:
    text = repr(v)
    return text if len(text) < 200 else text[:200] + "..."


def dumps(v) -> str:
    """JSON text of a JSON-like value, floats always written with a fraction."""
    return json.dumps(v, allow_nan=True)


# --- headers -----------------------------------------------------------------------------------


def read_headers(path: Path) -> dict[str, tuple[int, str]]:
    """The `# key: value` header lines of a file: key -> (line number, text)."""
    found = {}
    for k, line in enumerate(path.read_text().splitlines(), 1):
        m = _HEADER.match(line.strip())
        if m:
            found[m.group(1)] = (k, m.group(2).strip())
    return found


def main_args(path: Path) -> dict:
    """The `# args:` header as {parameter: JSON value} (empty without one)."""
    header = read_headers(path).get("args")
    return json.loads(header[1]) if header else {}


def _argument(v):
    if isinstance(v, list):
        return np.array(v)
    if isinstance(v, dict):
        return {k: _argument(x) for k, x in v.items()}
    return v


def run_main(path: Path):
    """Load `path` and call its `main` with the `# args:` values; returns (value, stdout text)."""
    out = io.StringIO()
    args = main_args(path)
    with contextlib.redirect_stdout(out):
        m = diffc.load(path)
        names = [p.name for p in m.ast.fns["main"].params]
        if set(names) != set(args):
            raise GoldenFailure(f"`# args:` gives {sorted(args)}, main takes {names}")
        value = m.main(*[_argument(args[n]) for n in names])
    return value, out.getvalue()


# --- collection ----------------------------------------------------------------------------------


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the `# expect:` lines of tests/programs/*.dfl from diffc's output",
    )


def pytest_collect_file(parent, file_path: Path):
    if file_path.suffix != ".dfl":
        return None
    folder = file_path.parent.name
    if folder == "programs" and _HAS_MAIN.search(file_path.read_text()):
        return DflFile.from_parent(parent, path=file_path, kind=ProgramItem)
    if folder == "errors":
        return DflFile.from_parent(parent, path=file_path, kind=ErrorItem)
    return None


class DflFile(pytest.File):
    def __init__(self, *args, kind, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind

    def collect(self):
        item = self.kind.from_parent(self, name=self.path.stem)
        headers = read_headers(self.path)
        if "xfail" in headers:
            item.add_marker(pytest.mark.xfail(reason=headers["xfail"][1], strict=True))
        yield item


class GoldenFailure(Exception):
    pass


class DflItem(pytest.Item):
    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, GoldenFailure):
            return f"{self.path.name}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"{self.path.parent.name}/{self.path.name}"

    def header(self, key: str) -> tuple[int, str]:
        headers = read_headers(self.path)
        if key not in headers:
            raise GoldenFailure(f"the file has no `# {key}:` header line")
        return headers[key]


class ProgramItem(DflItem):
    """A program whose `main()` must give the value of its `# expect:` header."""

    def runtest(self):
        lineno, text = self.header("expect")
        try:
            value, printed = run_main(self.path)
        except DiffcError as e:
            raise GoldenFailure(f"main() failed:\n{e.render()}") from e
        got = to_jsonlike(value)
        if self.config.getoption("--update-golden"):
            _rewrite_line(self.path, lineno, "# expect: " + dumps(got))
            return
        want = json.loads(text)
        problems = mismatches(got, want)
        if problems:
            raise GoldenFailure(
                "\n  ".join(["main() differs from `# expect:`"] + problems[:20]) + f"\n  whole value: {_short(got)}"
            )
        headers = read_headers(self.path)
        if "prints" in headers:
            want_lines = json.loads(headers["prints"][1])
            got_lines = printed.splitlines()
            if got_lines != want_lines:
                raise GoldenFailure(
                    f"printed lines differ from `# prints:`\n  expected {want_lines}\n  got      {got_lines}"
                )


class ErrorItem(DflItem):
    """A program with one mistake, reported at the right place with the right message."""

    def runtest(self):
        _, text = self.header("error")
        m = _ERROR_AT.match(text)
        if not m:
            raise GoldenFailure(f"`# error: {text}` is not of the form `# error: LINE:COL message`")
        line, col, needle = int(m.group(1)), int(m.group(2)), m.group(3)
        try:
            value, _ = run_main(self.path)
        except InternalError as e:
            raise GoldenFailure(f"diffc failed with an internal error instead of a user error:\n{e.render()}") from e
        except UsageError as e:
            raise GoldenFailure(f"a UsageError is for command lines, not programs:\n{e.render()}") from e
        except DiffcError as e:
            self._check(e, line, col, needle)
        else:
            raise GoldenFailure(f"expected an error at {line}:{col}, but main() returned {_short(value)}")
        self._check_cli(line, col)

    def _check(self, e: DiffcError, line: int, col: int, needle: str):
        s = e.span
        if s is None or s.file is None:
            raise GoldenFailure(f"the error has no source location:\n{e.render()}")
        if Path(s.file.name).name != self.path.name or (s.line, s.col) != (line, col):
            raise GoldenFailure(
                f"expected the error at {self.path.name}:{line}:{col}, got "
                f"{Path(s.file.name).name}:{s.line}:{s.col}:\n{e.render()}"
            )
        if needle not in e.message:
            raise GoldenFailure(f"the message does not contain {needle!r}:\n{e.render()}")

    def _check_cli(self, line: int, col: int):
        out, err = io.StringIO(), io.StringIO()
        argv = ["run", str(self.path)]
        args = main_args(self.path)
        if any(isinstance(v, dict) for v in args.values()):
            return  # --arg takes numbers and arrays only, not records
        for name, value in args.items():
            argv += ["--arg", f"{name}={json.dumps(value)}"]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
        text = err.getvalue()
        where = f"{self.path.name}:{line}:{col}"
        if code != cli.EXIT_PROGRAM or where not in text or "Traceback" in text + out.getvalue():
            raise GoldenFailure(
                f"`diffc run` exited {code} (want {cli.EXIT_PROGRAM}) and wrote to stderr:\n{text}"
                f"\n(want `{where}` and no traceback)"
            )


def _rewrite_line(path: Path, lineno: int, new: str):
    lines = path.read_text().splitlines(keepends=True)
    end = "\n" if lines[lineno - 1].endswith("\n") else ""
    lines[lineno - 1] = new + end
    path.write_text("".join(lines))
