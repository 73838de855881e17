"""Shared test setup: IR verification after every pass (style.md, practice 5), the golden-file
plugin for tests/programs and tests/errors, and helpers for compiling small programs once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Turn on diffc/ir/verify.py after each pass before any test compiles anything.
os.environ["DIFFC_VERIFY"] = "1"

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.golden import pytest_addoption, pytest_collect_file  # noqa: E402,F401

try:  # the verifier is switched on above; say so (or say why not) in the report header
    import diffc.ir.verify  # noqa: F401

    _VERIFY = "on"
except ModuleNotFoundError as e:
    if e.name != "diffc.ir.verify":
        raise
    _VERIFY = "MISSING (diffc/ir/verify.py does not exist: every compile will fail)"


def pytest_report_header(config):
    return f"diffc IR verification after each pass (DIFFC_VERIFY=1): {_VERIFY}"


@pytest.fixture
def compile_src():
    """diffc.compile with the source dedented, for programs written inline in tests."""
    import textwrap

    import diffc

    return lambda src: diffc.compile(textwrap.dedent(src))
