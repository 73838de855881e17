"""`%load_ext diffc` and `%%dfl` cells, in an IPython shell without a Jupyter server."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

IPython = pytest.importorskip("IPython", reason="IPython is not installed (pip install '.[notebook]')")


@pytest.fixture(scope="module")
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "diffc")
    return sh


def test_a_cell_binds_its_functions_and_module(shell, tmp_path, monkeypatch):
    (tmp_path / "helpers.dfl").write_text("fn twice(x) = 2.0 * x\n")
    monkeypatch.chdir(tmp_path)  # (imports are found in the notebook's folder)
    shell.run_cell("%%dfl\nimport helpers\nfn sq(x) = x * x\nfn four(x) = helpers.twice(sq(x))\n")
    assert shell.user_ns["sq"](3.0) == 9.0
    assert shell.user_ns["dfl"].four(1.5) == 4.5
    shell.run_cell("%%dfl model\nfn norm(v) = sum(v * v)\n")
    assert shell.user_ns["model"].norm(np.array([1.0, 2.0])) == 5.0
    shell.run_cell("g = __import__('diffc').grad(norm)")
    assert list(shell.user_ns["g"](np.array([1.0, 2.0]))) == [2.0, 4.0]


def test_a_mistake_is_located_in_the_cell_without_a_traceback(shell, capsys):
    result = shell.run_cell("%%dfl\nfn ok(x) = x\nfn bad(x) =\n  x + nope\n")
    assert result.error_in_exec is not None  # the cell fails: "run all" stops here
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "<cell>:4:7: error: unknown variable `nope`",
        "      x + nope",
        "          ^~~~",
    ]
    assert "Traceback" not in err
    assert "ok" not in shell.user_ns  # (a cell with a mistake binds nothing)
    shell.run_cell("%%dfl not-a-name\nfn two() = 2\n")
    assert "expected a Python name for the module" in capsys.readouterr().err


def test_an_error_at_run_time_is_located_without_a_traceback(shell, capsys):
    shell.run_cell("%%dfl\nfn at(xs, i) = xs[i]\n")
    result = shell.run_cell("at([1.0, 2.0], 5)")
    assert result.error_in_exec is not None
    err = capsys.readouterr().err
    assert err.startswith("<cell>:2:16: error: index 5 is out of bounds") and "Traceback" not in err


def test_import_diffc_does_not_import_ipython():
    code = "import sys, diffc; assert callable(diffc.load_ipython_extension); print('IPython' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr
