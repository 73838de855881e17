"""Shared test setup: IR verification after every pass (style.md, practice 5) and the
golden-file plugin for tests/programs and tests/errors (support/golden.py)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Turn on diffc/ir/verify.py after each pass before any test compiles anything, and keep this
# run's compile cache apart (every test run starts cold, so the compiler is what is tested).
os.environ["DIFFC_VERIFY"] = "1"
os.environ["DIFFC_CACHE_DIR"] = tempfile.mkdtemp(prefix="diffc-test-cache-")

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.golden import pytest_addoption, pytest_collect_file  # noqa: E402,F401


def pytest_report_header(config):
    return "diffc: IR verified after every pass (DIFFC_VERIFY=1)"
