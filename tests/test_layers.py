"""The stages import one way: every import of diffc's modules, those inside functions too, runs
down the layers below (README, "Inside the compiler"), and no module reaches itself."""

from __future__ import annotations

import ast
from pathlib import Path

import diffc

PACKAGE = Path(diffc.__file__).resolve().parent

# bottom to top: a module imports only from its own layer and the layers before it
LAYERS = [
    {"source", "errors", "typesys", "pytree", "bigstack", "cachedir"},
    {"syntax"},
    {"resolve"},
    {"ir"},
    {"lower"},  # the code-emission toolkit the primitives' lowering rules use
    {"prims"},
    {"ad"},
    {"specialise"},
    {"optimise"},
    {"runtime"},
    {"pipeline"},
    {"api", "build", "cli", "gradcheck", "testing", "repl", "notebook", "lsp", "__init__", "__main__"},
]
TOP = LAYERS[-1]


def stage(module: str) -> str:
    """diffc.prims.shape -> prims; diffc -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> int:
    return next(k for k, names in enumerate(LAYERS) if stage(module) in names)


def module_name(path: Path) -> str:
    parts = ("diffc",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported diffc module, line, whether inside a function) for every import in path."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    inner = {id(n) for f in functions for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` and `from .pkg import mod` name modules; others name members
            names = [f"{target}.{a.name}" for a in node.names]
            found = [n for n in names if _is_module(n)] or [target]
        elif isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        else:
            continue
        for t in found:
            if t == "diffc" or t.startswith("diffc."):
                yield t, node.lineno, id(node) in inner


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def graph():
    return {module_name(p): list(imports(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_import_runs_down_the_layers():
    wrong = [
        f"{mod}:{line} imports {target}"
        for mod, found in graph().items()
        for target, line, _ in found
        if layer(target) > layer(mod)
    ]
    assert not wrong, "imports that run up the layers:\n" + "\n".join(wrong)


def test_no_import_inside_a_function_below_the_top():
    """Lazy imports are for start-up time, in the command line and the API only."""
    found = [
        f"{mod}:{line} imports {target}"
        for mod, imps in graph().items()
        if stage(mod) not in TOP
        for target, line, inside in imps
        if inside
    ]
    assert found == []


def test_no_module_reaches_itself():
    g = {m: {t for t, _, _ in imps if t != m} for m, imps in graph().items()}
    for m in g:  # a package imports its own modules (from . import ...): not a cycle
        g[m] = {t for t in g[m] if not (m.count(".") < t.count(".") and t.startswith(m + "."))}
    cycles, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for t in sorted(g.get(m, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(path[path.index(t) :] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert sorted(set(cycles)) == []
