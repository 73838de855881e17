"""The pytest plugin for DFL programs that carry their own expectations (style.md, practice 7):
tests/programs/*.dfl (`# expect:`, `# prints:`, `# grad-check:`) and tests/errors/*.dfl
(`# error: LINE:COL message`). The directives and their checks are diffc's own
(diffc/testing.py, the code behind `diffc test`); this plugin makes one pytest item per file
and adds one check of its own: an error program also fails through `diffc run` with exit
status 1, its location on stderr and no traceback.

A file of tests/programs without `fn main` is a helper module imported by other programs and
is not collected. `pytest --update-golden` rewrites the `# expect:` lines of tests/programs
from what diffc computes now; review the diff before keeping it.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from diffc import cli, testing


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the expectations of tests/programs/*.dfl and tests/passes/*/*.ir from diffc's output",
    )


def pytest_collect_file(parent, file_path: Path):
    if file_path.suffix != ".dfl":
        return None
    folder = file_path.parent.name
    if folder == "programs" and testing.has_main(file_path) or folder == "errors":
        return DflFile.from_parent(parent, path=file_path)
    return None


class DflFile(pytest.File):
    def collect(self):
        item = DflItem.from_parent(self, name=self.path.stem)
        xfail = testing.read_headers(self.path).get("xfail")
        if xfail:
            item.add_marker(pytest.mark.xfail(reason=xfail[1], strict=True))
        yield item


class DflItem(pytest.Item):
    """One file: its directives hold (testing.run_checks), and an error program fails through
    the command line too."""

    def runtest(self):
        errors_folder = self.path.parent.name == "errors"
        if errors_folder and "error" not in testing.read_headers(self.path):
            raise testing.TestFailure("the file has no `# error:` header line")
        testing.run_checks(self.path, update=self.config.getoption("--update-golden"))
        if errors_folder:
            _check_cli(self.path)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, testing.TestFailure):
            return f"{self.path.name}:{excinfo.value.line}: {excinfo.value.message}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"{self.path.parent.name}/{self.path.name}"


def _check_cli(path: Path):
    """`diffc run` of an error program exits 1 with `NAME.dfl:LINE:COL` on stderr, no traceback."""
    line, col, _ = testing.error_directive(path)
    args = testing.main_args(path)
    if any(isinstance(v, dict) for v in args.values()):
        return  # --arg takes numbers and arrays only, not records
    argv = ["run", str(path)]
    for name, value in args.items():
        argv += ["--arg", f"{name}={json.dumps(value)}"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    text = err.getvalue()
    where = f"{path.name}:{line}:{col}"
    if code != cli.EXIT_PROGRAM or where not in text or "Traceback" in text + out.getvalue():
        raise testing.TestFailure(
            f"`diffc run` exited {code} (want {cli.EXIT_PROGRAM}) and wrote to stderr:\n{text}"
            f"\n(want `{where}` and no traceback)"
        )
