"""`diffc test`: DFL programs that carry their own expectations in header comments.

The directives (docs/language.md, "Testing programs"), each a comment line of its own:

    # expect: <JSON>          the value of `main(...)`, as JSON (tuples are lists, records objects)
    # args: <JSON object>     main's arguments by parameter name (lists become NumPy arrays);
                              arrays and floats are run-time values (ints and bools too,
                              unless a shape, bound or axis needs them: then they are static)
    # prints: <JSON list>     the lines `main(...)` writes to standard output, in order
    # error: LINE:COL <text>  loading or running `main(...)` fails with a located error at
                              LINE:COL of this file whose message contains <text>
    # grad-check: NAME [<JSON object>]
                              NAME's grad, vjp and jvp agree with finite differences at random
                              inputs of its declared shapes; the object fixes some arguments
    # xfail: <reason>         a known bug: the file must fail (and passing is a failure)

A file without directives and without `fn main` is a helper module that others import; it
is skipped. A file with `fn main` and no directive fails, so that no program can silently
stop being checked. LINE counts every line of the file, the header lines included.

This is the one implementation: the command line and the project's pytest plugin
(tests/support/golden.py) both call `run_checks`."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from . import api
from .errors import DiffcError, InternalError, UsageError
from .gradcheck import gradcheck

REL, ABS = 1e-9, 1e-12  # how close a float must be to its `# expect:` value
DIRECTIVES = ("expect", "args", "prints", "error", "grad-check", "xfail")
_HEADER = re.compile(r"^#\s*(" + "|".join(DIRECTIVES) + r"):\s?(.*)$")
_HAS_MAIN = re.compile(r"^\s*fn\s+main\s*\(", re.MULTILINE)
_ERROR_AT = re.compile(r"^(\d+):(\d+)\s+(.+)$")
_GRAD_CHECK = re.compile(r"^([A-Za-z_][A-Za-z_0-9]*)\s*(\{.*\})?$")


class TestFailure(Exception):
    """A file that does not meet one of its directives: `line` is the directive's line."""

    __test__ = False  # (not a pytest test class, despite its name)

    def __init__(self, message: str, line: int = 0):
        super().__init__(message)
        self.message, self.line = message, line


class Status(Enum):
    PASSED = "passed"
    FAILED = "failed"
    XFAILED = "expected failure"  # `# xfail:` and it failed
    XPASSED = "unexpected pass"  # `# xfail:` and it passed: a failure, remove the directive
    SKIPPED = "skipped"  # a helper module: no directive, no main


@dataclass(frozen=True)
class Outcome:
    path: Path
    status: Status
    message: str = ""
    line: int = 0

    def summary_line(self) -> str:
        """`path:line: first line of the message`, the one line `diffc test` prints for a failure."""
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        first = self.message.splitlines()[0] if self.message else self.status.value
        return f"{where}: {first}"


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
    """Every place where `got` differs from `want` (empty when they agree). Leaves must agree
    in kind (a float where a float is expected, an int for an int, a bool for a bool); floats
    within rel 1e-9 / abs 1e-12, NaN equal to NaN."""
    if isinstance(want, bool):
        ok = isinstance(got, bool) and got == want
        return [] if ok else [f"{path}: expected bool {want!r}, got {got!r}"]
    if isinstance(want, int):
        ok = isinstance(got, int) and not isinstance(got, bool) and got == want
        return [] if ok else [f"{path}: expected int {want!r}, got {got!r}"]
    if isinstance(want, float):
        if not isinstance(got, float):
            return [f"{path}: expected float {want!r}, got {got!r}"]
        if math.isnan(want) or math.isnan(got):
            return [] if math.isnan(want) and math.isnan(got) else [f"{path}: expected {want!r}, got {got!r}"]
        return [] if math.isclose(got, want, rel_tol=REL, abs_tol=ABS) else [f"{path}: expected {want!r}, got {got!r}"]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: expected a list of {len(want)}, got {short(got)}"]
        return [m for k, (g, w) in enumerate(zip(got, want)) for m in mismatches(g, w, f"{path}[{k}]")]
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [f"{path}: expected a record with fields {sorted(want)}, got {short(got)}"]
        return [m for k in want for m in mismatches(got[k], want[k], f"{path}.{k}")]
    return [] if got == want else [f"{path}: expected {want!r}, got {got!r}"]


def short(v) -> str:
    text = repr(v)
    return text if len(text) < 200 else text[:200] + "..."


def dumps(v) -> str:
    """JSON text of a JSON-like value (floats keep their fraction, NaN and Infinity allowed)."""
    return json.dumps(v, allow_nan=True)


def json_argument(v):
    """A JSON value as a DFL argument: lists become NumPy arrays, objects records."""
    if isinstance(v, list):
        return np.array(v)
    if isinstance(v, dict):
        return {k: json_argument(x) for k, x in v.items()}
    return v


# --- directives --------------------------------------------------------------------------------


def read_headers(path: Path) -> dict[str, tuple[int, str]]:
    """The directive lines of a file: name -> (line number, text after the colon)."""
    found = {}
    for k, line in enumerate(Path(path).read_text().splitlines(), 1):
        m = _HEADER.match(line.strip())
        if m:
            found[m.group(1)] = (k, m.group(2).strip())
    return found


def _json(headers: dict, key: str, default=None):
    if key not in headers:
        return default
    line, text = headers[key]
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TestFailure(f"`# {key}:` is not valid JSON: {e.msg} (column {e.colno})", line) from None


def main_args(path: Path) -> dict:
    """The `# args:` directive as {parameter: JSON value} (empty without one)."""
    headers = read_headers(path)
    args = _json(headers, "args", {})
    if not isinstance(args, dict):
        raise TestFailure("`# args:` must be a JSON object of parameter names", headers["args"][0])
    return args


def error_directive(path: Path) -> tuple[int, int, str] | None:
    """The `# error:` directive as (LINE, COL, text), or None without one."""
    headers = read_headers(path)
    if "error" not in headers:
        return None
    lineno, text = headers["error"]
    m = _ERROR_AT.match(text)
    if not m:
        raise TestFailure(f"`# error: {text}` is not of the form `# error: LINE:COL message`", lineno)
    return int(m.group(1)), int(m.group(2)), m.group(3)


def run_main(path: Path):
    """Load `path` and call its `main` with the `# args:` values; returns (value, printed text)."""
    out = io.StringIO()
    args = main_args(path)
    with contextlib.redirect_stdout(out):
        m = api.load(path)
        if "main" not in m.ast.fns:
            raise TestFailure("the program has no `fn main` to run")
        names = [p.name for p in m.ast.fns["main"].params]
        if set(names) != set(args):
            line = read_headers(path).get("args", (0, ""))[0]
            raise TestFailure(f"`# args:` gives {sorted(args)}, main takes {names}", line)
        value = m.main(*[json_argument(args[n]) for n in names])
    return value, out.getvalue()


# --- checks ------------------------------------------------------------------------------------


def has_main(path: Path) -> bool:
    """Whether the file defines `fn main` (else it is a module others import)."""
    return _HAS_MAIN.search(Path(path).read_text()) is not None


def run_checks(path: Path, update: bool = False) -> bool:
    """Check every directive of `path`; raise TestFailure at the first that does not hold.
    Returns False for a helper module (nothing to check). With `update`, `# expect:` lines
    are rewritten from what diffc computes instead of compared (review the diff)."""
    path = Path(path)
    headers = read_headers(path)
    if not {"expect", "error", "grad-check"} & set(headers):
        if has_main(path):
            raise TestFailure("`fn main` has nothing to check: add `# expect:`, `# error:` or `# grad-check:`")
        return False
    if "error" in headers:
        _check_error(path)
    elif "expect" in headers:
        _check_value(path, headers, update)
    if "grad-check" in headers:
        _check_grads(path, headers["grad-check"])
    return True


def _check_value(path: Path, headers: dict, update: bool):
    lineno = headers["expect"][0]
    try:
        value, printed = run_main(path)
    except DiffcError as e:
        raise TestFailure(f"main() failed: {e.message}\n{e.render()}", lineno) from None
    got = to_jsonlike(value)
    if update:
        rewrite_line(path, lineno, "# expect: " + dumps(got))
        return
    problems = mismatches(got, _json(headers, "expect"))
    if problems:
        raise TestFailure(
            "\n  ".join([f"main() differs from `# expect:`: {problems[0]}"] + problems[1:20])
            + f"\n  whole value: {short(got)}",
            lineno,
        )
    if "prints" in headers:
        want_lines = _json(headers, "prints")
        got_lines = printed.splitlines()
        if got_lines != want_lines:
            raise TestFailure(
                f"printed lines differ from `# prints:`: expected {want_lines}, got {got_lines}", headers["prints"][0]
            )


def _check_error(path: Path):
    line, col, needle = error_directive(path)
    lineno = read_headers(path)["error"][0]
    try:
        value, _ = run_main(path)
    except InternalError as e:
        raise TestFailure(f"an internal error instead of a located one: {e.message}\n{e.render()}", lineno) from None
    except UsageError as e:
        raise TestFailure(f"a UsageError is for command lines, not programs: {e.message}", lineno) from None
    except DiffcError as e:
        s = e.span
        if s is None or s.file is None:
            raise TestFailure(f"the error has no source location: {e.message}", lineno) from None
        if Path(s.file.name).name != path.name or (s.line, s.col) != (line, col):
            raise TestFailure(
                f"expected the error at {path.name}:{line}:{col}, got {Path(s.file.name).name}:{s.line}:{s.col}: "
                f"{e.message}\n{e.render()}",
                lineno,
            ) from None
        if needle not in e.message:
            raise TestFailure(f"the message does not contain {needle!r}: {e.message}\n{e.render()}", lineno) from None
    else:
        raise TestFailure(f"expected an error at {line}:{col}, but main() returned {short(value)}", lineno)


def _check_grads(path: Path, directive: tuple[int, str]):
    lineno, text = directive
    m = _GRAD_CHECK.match(text)
    if not m:
        raise TestFailure(f"`# grad-check: {text}` is not of the form `# grad-check: NAME [{{JSON object}}]`", lineno)
    name, given = m.group(1), {}
    if m.group(2):
        try:
            given = json.loads(m.group(2))
        except json.JSONDecodeError as e:
            raise TestFailure(f"`# grad-check:` arguments are not valid JSON: {e.msg}", lineno) from None
    try:
        module = api.load(path)
        if name not in module.ast.fns:
            raise TestFailure(f"`# grad-check:` names `{name}`, which the program does not define", lineno)
        with contextlib.redirect_stdout(io.StringIO()):
            lines, ok = gradcheck(module, name, {k: json_argument(v) for k, v in given.items()})
    except DiffcError as e:
        raise TestFailure(f"grad-check of `{name}` failed: {e.message}\n{e.render()}", lineno) from None
    if not ok:
        bad = [x for x in lines if x.endswith("MISMATCH")]
        raise TestFailure(f"`{name}`'s derivatives differ from finite differences: {' '.join(bad[0].split())}", lineno)


def rewrite_line(path: Path, lineno: int, new: str):
    """Replace line `lineno` of a file, keeping its line ending."""
    lines = path.read_text().splitlines(keepends=True)
    end = "\n" if lines[lineno - 1].endswith("\n") else ""
    lines[lineno - 1] = new + end
    path.write_text("".join(lines))


# --- many files --------------------------------------------------------------------------------


def check_file(path: Path, update: bool = False) -> Outcome:
    """The outcome of one file, `# xfail:` taken into account."""
    path = Path(path)
    xfail = read_headers(path).get("xfail")
    try:
        checked = run_checks(path, update)
    except TestFailure as e:
        if xfail:
            return Outcome(path, Status.XFAILED, e.message, e.line)
        return Outcome(path, Status.FAILED, e.message, e.line)
    except DiffcError as e:  # (a mistake in the file that no directive expects)
        return Outcome(path, Status.XFAILED if xfail else Status.FAILED, f"{e.message}\n{e.render()}")
    except Exception as e:  # a bug in diffc: this file fails, the others still run
        message = f"internal error in diffc: {type(e).__name__}: {e}"
        return Outcome(path, Status.XFAILED if xfail else Status.FAILED, message)
    if not checked:
        return Outcome(path, Status.SKIPPED)
    if xfail:
        return Outcome(path, Status.XPASSED, f"passes, but is marked `# xfail: {xfail[1]}`", xfail[0])
    return Outcome(path, Status.PASSED)


def dfl_files(paths: list[str]) -> list[Path]:
    """The .dfl files named, and those under the folders named, in order; a missing path is a
    UsageError."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(p.rglob("*.dfl")))
        elif p.is_file():
            found.append(p)
        else:
            raise UsageError(f"no such file or folder: {p}")
    return found
