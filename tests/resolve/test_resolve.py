"""Name resolution (diffc/resolve.py): every name a program uses is checked when it is loaded,
called or not, and reported at its use; imports are looked for in the importing file's folder,
then in the standard library; each file is loaded once."""

from __future__ import annotations

import textwrap

import pytest

from diffc import resolve
from diffc.errors import NameError_
from diffc.resolve import stdlib_dir
from diffc.specialise.builtins import BUILTINS


def load_text(text):
    return resolve.load_text(text, "<string>", None, BUILTINS)


def load_file(path):
    return resolve.load_file(path, BUILTINS)


def write(folder, name: str, text: str):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def error_at(text: str) -> NameError_:
    with pytest.raises(NameError_) as info:
        load_text(textwrap.dedent(text))
    return info.value


@pytest.mark.parametrize(
    "text, line, col, message",
    [
        ("fn main() = x + 1.0\n", 1, 13, "unknown variable `x`"),
        ("fn main() = f(1.0)\n", 1, 13, "unknown function `f`"),
        # a function that is never called is checked too
        ("fn unused(a) = a + b\nfn main() = 1.0\n", 1, 20, "unknown variable `b`"),
        ("fn f(x) = x\nfn f(y) = y\n", 2, 1, "`f` is defined twice in this module"),
        ("let k = 1.0\nfn k() = 2.0\n", 2, 1, "`k` is defined twice in this module"),
        ("import nn\nfn main() = nn.nothing([1.0])\n", 2, 13, "module `nn` has no `nothing`"),
        ("import no_such_module\nfn main() = 1.0\n", 1, 1, "no module named `no_such_module`"),
        # a lambda's parameter, a let and a comprehension index are in scope only inside
        ("fn main() { let f = fn(a) => a * 2.0; f(1.0) + a }\n", 1, 48, "unknown variable `a`"),
        ("fn main() = ((for i in 0..3 => i * 2), i)\n", 1, 40, "unknown variable `i`"),
    ],
)
def test_name_errors_are_located(text, line, col, message):
    e = error_at(text)
    assert (e.span.line, e.span.col) == (line, col), e.render()
    assert message in e.message


def test_local_names_shadow_functions_and_builtins():
    """A parameter, a let or a lambda parameter named like a function or a built-in is that
    value; a module's own definition named like a built-in is the module's."""
    mod = load_text("""
fn exp(x) = x + 1.0
fn g(sum) = sum * 2.0
fn main() { let len = 3.0; let f = fn(max) => max + len; (exp(1.0), g(2.0), f(1.0)) }
""")
    assert set(mod.fns) == {"exp", "g", "main"}


def test_the_importing_folder_comes_before_the_standard_library(tmp_path):
    assert (stdlib_dir() / "nn.dfl").exists()
    write(tmp_path, "nn.dfl", "fn only_here(x) = x\n")
    main = write(tmp_path, "main.dfl", "import nn\nfn main() = nn.only_here(1.0)\n")
    mod = load_file(main)
    assert set(mod.imports["nn"].fns) == {"only_here"}
    assert mod.imports["nn"].folder == tmp_path.resolve()


def test_the_standard_library_when_the_folder_has_none(tmp_path):
    main = write(tmp_path, "main.dfl", "import nn\nfn main() = nn.softmax([0.0, 1.0])\n")
    mod = load_file(main)
    assert "softmax" in mod.imports["nn"].fns
    assert mod.imports["nn"].folder == stdlib_dir().resolve()


def test_imports_are_found_next_to_the_importing_module(tmp_path):
    """A module in a sub-folder imports from its own folder, not from the program's."""
    sub = tmp_path / "lib"
    sub.mkdir()
    write(sub, "helper.dfl", "fn h(x) = x * 3.0\n")
    write(sub, "mid.dfl", "import helper\nfn m(x) = helper.h(x)\n")
    write(tmp_path, "helper.dfl", "fn other(x) = x\n")
    main = write(tmp_path, "main.dfl", "import lib_mid\nfn main() = 1.0\n")
    with pytest.raises(NameError_, match="no module named `lib_mid`"):
        load_file(main)
    (tmp_path / "mid.dfl").symlink_to(sub / "mid.dfl")
    main = write(tmp_path, "main.dfl", "import mid\nimport helper\nfn main() = mid.m(1.0)\n")
    mod = load_file(main)
    assert set(mod.imports["mid"].imports["helper"].fns) == {"h"}
    assert set(mod.imports["helper"].fns) == {"other"}


def test_each_file_is_loaded_once(tmp_path):
    write(tmp_path, "shared.dfl", "let k = 2.0\n")
    write(tmp_path, "a.dfl", "import shared\nfn fa() = shared.k\n")
    write(tmp_path, "b.dfl", "import shared\nfn fb() = shared.k\n")
    mod = load_file(write(tmp_path, "main.dfl", "import a\nimport b\nfn main() = a.fa() + b.fb()\n"))
    assert mod.imports["a"].imports["shared"] is mod.imports["b"].imports["shared"]


def test_an_import_cycle_is_located_at_the_import(tmp_path):
    write(tmp_path, "a.dfl", "import b\nfn fa() = 1.0\n")
    write(tmp_path, "b.dfl", "\nimport a\nfn fb() = 2.0\n")
    with pytest.raises(NameError_, match="import cycle") as info:
        load_file(write(tmp_path, "main.dfl", "import a\nfn main() = a.fa()\n"))
    e = info.value
    assert e.span.file.name.endswith("b.dfl") and (e.span.line, e.span.col) == (2, 1)


def test_a_missing_member_in_an_imported_module_is_reported_in_that_module(tmp_path):
    write(tmp_path, "helpers.dfl", "\n\nfn f(x) = x + nothing\n")
    with pytest.raises(NameError_, match="unknown variable `nothing`") as info:
        load_file(write(tmp_path, "main.dfl", "import helpers\nfn main() = helpers.f(1.0)\n"))
    e = info.value
    assert e.span.file.name.endswith("helpers.dfl") and (e.span.line, e.span.col) == (3, 15)
