"""An error inside an imported module is located in the module's file and also shows the
user's call (or import) that led there, with its line (errors.py, Note [Call sites])."""

from __future__ import annotations

import pytest

import diffc
from diffc import cli

HELPERS = "fn inner(w, x) = w @ x\nfn dense(w, x) = inner(w, x) + 1.0\n"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "helpers.dfl").write_text(HELPERS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err


def test_a_call_into_a_module_shows_the_users_call(capsys, folder):
    (folder / "prog.dfl").write_text(
        "import helpers\nfn layer(w, x) = helpers.dense(w, x)\n"
        "fn main() {\n    let w = [[1.0, 2.0], [3.0, 4.0]];\n    layer(w, [1.0, 2.0, 3.0])\n}\n"
    )
    code, err = run(capsys, "run", "prog.dfl")
    lines = err.splitlines()
    assert code == cli.EXIT_PROGRAM
    assert lines[0].startswith("helpers.dfl:1:18: error: inner dimensions of `@` disagree")
    assert lines[1].strip() == "fn inner(w, x) = w @ x"
    # the crossing from prog.dfl into helpers.dfl; helpers' own call of inner adds nothing
    assert lines[3] == "  called from prog.dfl:2:18"
    assert lines[4].strip() == "fn layer(w, x) = helpers.dense(w, x)"
    assert lines[5].strip().startswith("^~~")
    assert len(lines) == 6


def test_the_standard_library_too(folder):
    src = "import nn\nfn main() = nn.dense({w: [[1.0, 2.0]], b: [0.0]}, [1.0, 2.0, 3.0])\n"
    with pytest.raises(diffc.ShapeError) as info:
        diffc.compile(src, "prog.dfl").main()
    e = info.value
    assert e.span.file.name.endswith("nn.dfl")
    assert [(how, s.file.name, s.line, s.col) for how, s in e.call_sites] == [("called", "prog.dfl", 2, 13)]
    assert "  called from prog.dfl:2:13\n    fn main() = nn.dense(" in e.render()


def test_a_mistake_in_an_imported_file_shows_the_import(capsys, folder):
    (folder / "broken.dfl").write_text("fn f(x) = x\nfn bad(x) = x + nope\n")
    (folder / "prog.dfl").write_text("# a program\nimport broken\nfn main() = broken.f(1.0)\n")
    code, err = run(capsys, "run", "prog.dfl")
    assert code == cli.EXIT_PROGRAM
    assert err.startswith("broken.dfl:2:17: error: unknown variable `nope`")
    assert "  imported from prog.dfl:2:1\n    import broken\n" in err


def test_an_error_in_the_users_own_file_has_no_call_sites(folder):
    with pytest.raises(diffc.ShapeError) as info:
        diffc.compile("fn g(x) = x @ [1.0]\nfn main() = g([1.0, 2.0])\n", "prog.dfl").main()
    assert info.value.call_sites == [] and "called from" not in info.value.render()
