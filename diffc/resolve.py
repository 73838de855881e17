"""Names: load a program and its imports, and check that every name it uses is defined.

Imports are found in the importing file's folder first, then in the standard library.
A module's own definitions shadow built-ins. Errors are reported for all functions, called
or not, so `diffc check` finds them. The result, a table of Modules, is what the specialiser
looks names up in."""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DiffcError, DiffcSyntaxError, NameError_, UsageError, closest
from .source import SourceFile, Span
from .syntax import nodes as n
from .syntax.parse import parse

STDLIB = Path(__file__).resolve().parent.parent / "stdlib"


def stdlib_dir() -> Path:
    if STDLIB.is_dir():
        return STDLIB
    from importlib import resources

    return Path(str(resources.files("diffc") / "stdlib"))


@dataclass(eq=False)
class Module:
    name: str
    source: SourceFile
    fns: dict[str, n.FnDef] = field(default_factory=dict)
    lets: dict[str, n.LetDef] = field(default_factory=dict)
    imports: dict[str, Module] = field(default_factory=dict)
    folder: Path | None = None

    def member(self, name: str):
        return self.fns.get(name) or self.lets.get(name)


class Loader:
    """Loads modules once each, by resolved path. `builtins` are the names every module may
    use without defining them (the specialiser's table, handed down by the caller)."""

    def __init__(self, builtins: Collection[str]):
        self.by_path: dict[Path, Module] = {}
        self.builtins = builtins

    def load_source(self, source: SourceFile, folder: Path | None, name: str = "main") -> Module:
        ast = parse(source)
        mod = Module(name, source, folder=folder)
        for item in ast.items:
            if isinstance(item, n.Import):
                mod.imports[item.name] = self._import(item, folder)
            elif isinstance(item, n.FnDef | n.LetDef):
                table = mod.fns if isinstance(item, n.FnDef) else mod.lets
                if item.name in mod.fns or item.name in mod.lets:
                    raise NameError_(f"`{item.name}` is defined twice in this module", item.span)
                table[item.name] = item
        check_names(mod, self.builtins)
        return mod

    def _import(self, imp: n.Import, folder: Path | None) -> Module:
        candidates = ([folder] if folder else []) + [stdlib_dir()]
        for d in candidates:
            p = (d / f"{imp.name}.dfl").resolve()
            if p.exists():
                if p not in self.by_path:
                    src = read_source(p, _display(p), imp.span)
                    self.by_path[p] = None  # marks an import in progress (a cycle)
                    try:
                        self.by_path[p] = self.load_source(src, p.parent, imp.name)
                    except DiffcError as err:  # (See Note [Call sites] in errors.py)
                        err.called_from(imp.span, "imported")
                        raise
                mod = self.by_path[p]
                if mod is None:
                    raise NameError_(
                        f"importing `{imp.name}` here makes an import cycle: `{imp.name}` is still being "
                        "loaded (modules cannot import each other)",
                        imp.span,
                    )
                return mod
        where = " or ".join(str(d) for d in candidates)
        near = [p.stem for d in candidates for p in d.glob("*.dfl")]
        message = f"no module named `{imp.name}`: no file {imp.name}.dfl in {where}"
        raise NameError_(message, imp.span, misspelt=(imp.name, near))


def _display(p: Path) -> str:
    """How an imported file is named in messages: relative to the current folder when below it."""
    rel = os.path.relpath(p)
    return str(p) if rel.startswith("..") else rel


def read_source(path: Path, name: str, span: Span | None = None) -> SourceFile:
    """The text of a program file, reported under `name`. A file that is not a regular file (a
    folder, a FIFO, a device: opened without blocking, never read) or cannot be read is an error
    at `span` (the import), or a UsageError for the program file itself; text that is not UTF-8
    is an error at its first bad byte."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise _unreadable(f"cannot read {name}: {e.strerror}", span) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _unreadable(f"cannot read {name}: it is not a regular file (a folder, a pipe, a device)", span)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    except OSError as e:
        raise _unreadable(f"cannot read {name}: {e.strerror}", span) from None
    finally:
        os.close(fd)
    try:
        return SourceFile(name, data.decode("utf-8"))
    except UnicodeDecodeError as e:
        good = data[: e.start].decode("utf-8")
        line = good.count("\n") + 1
        col = len(good) - (good.rfind("\n") + 1) + 1
        text = SourceFile(name, data.decode("utf-8", errors="replace"))
        raise DiffcSyntaxError(
            f"{name} is not UTF-8 text (byte {e.start}): a .dfl program is text", Span(text, line, col)
        ) from None


def _unreadable(message: str, span: Span | None) -> NameError_ | UsageError:
    return NameError_(message, span) if span is not None else UsageError(message)


def load_file(path: str | Path, builtins: Collection[str]) -> Module:
    """Load a program file and its imports; raise a DiffcError for any mistake in them."""
    p = Path(path)
    return Loader(builtins).load_source(read_source(p, str(path)), p.resolve().parent)


def load_text(text: str, name: str, folder: Path | None, builtins: Collection[str]) -> Module:
    return Loader(builtins).load_source(SourceFile(name, text), folder)


def snapshot(mod: Module) -> tuple:
    """A module and what it imports as plain data: names and texts, no paths to read. A
    pickled function carries it, so a worker on another machine rebuilds the same program
    (and finds the same disk-cache entries, whose keys are these names and texts)."""
    imports = {name: snapshot(sub) for name, sub in mod.imports.items()}
    return (mod.name, mod.source.name, mod.source.text, imports)


def from_snapshot(snap: tuple, builtins: Collection[str]) -> Module:
    """The module of `snapshot`, loaded from its texts; a module imported twice is loaded once."""
    loader = _SnapshotLoader(builtins)
    return loader.module(snap)


class _SnapshotLoader(Loader):
    def __init__(self, builtins: Collection[str]):
        super().__init__(builtins)
        self.done: dict[tuple[str, str], Module] = {}
        self.imports: dict[str, tuple] = {}  # the snapshots of what the module being loaded imports

    def module(self, snap: tuple) -> Module:
        name, file, text, imports = snap
        if (file, text) not in self.done:
            outer, self.imports = self.imports, imports
            try:
                self.done[file, text] = self.load_source(SourceFile(file, text), None, name)
            finally:
                self.imports = outer
        return self.done[file, text]

    def _import(self, imp: n.Import, folder: Path | None) -> Module:
        return self.module(self.imports[imp.name])


# --- the name check ------------------------------------------------------------------------------


def check_names(mod: Module, builtins: Collection[str]):
    """Raise NameError_ for the first use of an undefined name, field of a module, or import,
    with the defined name it most likely misspells."""

    def check(kind, name, node, scope):
        if kind == "member":
            alias, member = name
            other = mod.imports.get(alias)
            if other is not None and other.member(member) is None:
                names = [f"{alias}.{m}" for m in [*other.fns, *other.lets]]
                misspelt = (f"{alias}.{member}", names)
                raise NameError_(f"module `{alias}` has no `{member}`", node.span, misspelt=misspelt)
        elif mod.member(name) is None and name not in mod.imports and name not in builtins:
            known = [*scope, *mod.fns, *mod.lets, *mod.imports, *builtins]
            raise NameError_(f"unknown {kind} `{name}`{_suggestion(name, known, mod)}", node.span)

    for let in mod.lets.values():
        free_uses(let.value, frozenset(), check)
    for fn in mod.fns.values():
        free_uses(fn.body, frozenset(p.name for p in fn.params), check)


def _suggestion(name: str, known: list[str], mod: Module) -> str:
    """`; did you mean ...?` for an unknown name: a function of a module that has this very
    name (`nn.softmax`, with the import to add if the program lacks it), else the defined name
    or built-in it most likely misspells, else a module function it misspells; or ''."""
    modules = dict(_stdlib_members())
    modules.update((alias, [*m.fns, *m.lets]) for alias, m in mod.imports.items())
    owner = {}  # member -> the module it is suggested from: an imported one first
    for alias, members in sorted(modules.items(), key=lambda am: am[0] in mod.imports):
        owner.update(dict.fromkeys(members, alias))
    if name not in owner:
        best = closest(name, known)
        if best is not None:
            return f"; did you mean `{best}`?"
        name = closest(name, owner)
        if name is None:
            return ""
    alias = owner[name]
    add = "" if alias in mod.imports else f" (add `import {alias}`)"
    return f"; did you mean `{alias}.{name}`{add}?"


def _stdlib_members() -> list[tuple[str, list[str]]]:
    """(module name, its functions and lets) for each module of the standard library; read only
    to suggest a name, so a module that does not parse is left out."""
    found = []
    for path in sorted(stdlib_dir().glob("*.dfl")):
        try:
            items = parse(read_source(path, path.name)).items
        except DiffcError:
            continue
        found.append((path.stem, [i.name for i in items if isinstance(i, n.FnDef | n.LetDef)]))
    return found


def free_uses(e, scope: frozenset, visit) -> None:
    """Call visit(kind, name, node, scope) for each name e uses that no parameter, let, lambda
    parameter or comprehension index around it binds (those shadow the module's functions and
    the built-ins): kind "variable" or "function" (the callee of a call) with the name, or
    "member" with (alias, member) for `alias.member`, where alias may be a module; scope is
    the set of local names bound there."""

    def go(e, scope):
        match e:
            case n.Name(id=name):
                if name not in scope:
                    visit("variable", name, e, scope)
            case n.Call(fn=n.Name(id=name) as f, args=args, kwargs=kwargs):
                if name not in scope:
                    visit("function", name, f, scope)
                for a in args:
                    go(a, scope)
                for k in kwargs:
                    go(k.value, scope)
            case n.Field(value=n.Name(id=name) as v, name=member) if name not in scope:
                visit("member", (name, member), e, scope)
                go(v, scope)
            case n.Block(stmts=stmts, result=result):
                for s in stmts:
                    if isinstance(s, n.Let):
                        go(s.value, scope)
                        scope = scope | set(_pattern_names(s.pattern))
                    else:
                        go(s.expr, scope)
                go(result, scope)
            case n.Lambda(params=params, body=body):
                go(body, scope | {p.name for p in params})
            case n.Comprehension(iters=iters, body=body):
                for it in iters:
                    go(it.lo, scope)
                    go(it.hi, scope)
                    scope = scope | {it.name}
                go(body, scope)
            case n.Node():
                for child in _children(e):
                    go(child, scope)

    go(e, scope)


def _pattern_names(p):
    if isinstance(p, n.PName):
        yield p.name
    else:
        for q in p.items:
            yield from _pattern_names(q)


def _children(e):
    for name in e.__dataclass_fields__:
        if name == "span":
            continue
        v = getattr(e, name)
        if isinstance(v, n.Node):
            yield v
        elif isinstance(v, tuple):
            for x in v:
                if isinstance(x, n.Node):
                    yield x
                elif isinstance(x, tuple):  # record fields (name, expr)
                    yield from (y for y in x if isinstance(y, n.Node))


def references(fn: n.FnDef) -> set[str]:
    """The module-level names a function body mentions, `alias.member` for a module's member
    (for the call graph that finds recursion): a parameter or local named like a top-level
    function is not a reference to it."""
    found = set()

    def add(kind, name, node, scope):
        found.add(".".join(name) if kind == "member" else name)

    free_uses(fn.body, frozenset(p.name for p in fn.params), add)
    return found
