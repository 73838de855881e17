"""Loading programs and their imports from files: a module in the program's folder wins over
the standard library, imported modules are loaded once, cycles and missing files are errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import diffc
from diffc.errors import DiffcError, DiffcNameError


def write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.write_text(text)
    return p


def test_local_module_shadows_the_standard_library(tmp_path):
    write(tmp_path, "nn.dfl", "fn softmax(x) = x * 0.0 + 42.0\n")
    main = write(tmp_path, "main.dfl", "import nn\nfn main() = nn.softmax([1.0, 2.0])\n")
    assert diffc.load(main).main().tolist() == [42.0, 42.0]


def test_standard_library_is_found_from_anywhere(tmp_path):
    main = write(tmp_path, "main.dfl", "import nn\nfn main() = nn.mse([1.0, 3.0], [1.0, 1.0])\n")
    assert diffc.load(main).main() == 2.0


def test_modules_import_modules_and_diamonds_load_once(tmp_path):
    write(tmp_path, "base.dfl", "let k = 2.0\nfn scale(x) = x * k\n")
    write(tmp_path, "left.dfl", "import base\nfn f(x) = base.scale(x) + 1.0\n")
    write(tmp_path, "right.dfl", "import base\nfn g(x) = base.scale(x) - 1.0\n")
    main = write(tmp_path, "main.dfl", "import left\nimport right\nfn main() = (left.f(1.0), right.g(1.0))\n")
    m = diffc.load(main)
    assert m.main() == (3.0, 1.0)
    left, right = m.ast.imports["left"], m.ast.imports["right"]
    assert left.imports["base"] is right.imports["base"]


def test_import_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.dfl", "import b\nfn fa() = 1\n")
    write(tmp_path, "b.dfl", "import a\nfn fb() = 2\n")
    main = write(tmp_path, "main.dfl", "import a\nfn main() = a.fa()\n")
    with pytest.raises(DiffcNameError, match="cycle"):
        diffc.load(main)


def test_error_in_an_imported_module_points_into_that_file(tmp_path):
    write(tmp_path, "helper.dfl", "fn bad(x) = x + [1.0, 2.0, 3.0]\n")
    main = write(tmp_path, "main.dfl", "import helper\nfn main() = helper.bad([1.0, 2.0])\n")
    with pytest.raises(DiffcError) as info:
        diffc.load(main).main()
    assert Path(info.value.span.file.name).name == "helper.dfl"
    assert (info.value.span.line, info.value.span.col) == (1, 13)


def test_compile_imports_from_the_current_folder(tmp_path, monkeypatch):
    write(tmp_path, "util.dfl", "fn inc(x) = x + 1\n")
    monkeypatch.chdir(tmp_path)
    assert diffc.compile("import util\nfn main() = util.inc(1)").main() == 2


def test_missing_file(tmp_path):
    with pytest.raises(DiffcError, match="cannot read"):
        diffc.load(tmp_path / "nope.dfl")


def test_load_accepts_str_and_path(tmp_path):
    p = write(tmp_path, "p.dfl", "fn main() = 1 + 1\n")
    assert diffc.load(str(p)).main() == 2
    assert diffc.load(Path(os.path.relpath(p))).main() == 2
