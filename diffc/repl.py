"""`diffc repl`: definitions and expressions typed one entry at a time.

The session keeps every line entered (the transcript, reported as `<repl>`) and the live
definitions, each at the line where it was typed: the program compiled is one text with the
definitions at their own lines and blank lines elsewhere, so an error in it is located at
the line of the transcript that holds it, and renders as an error in a file does. One text,
not one per entry, because the compile cache keys a program by its text."""

from __future__ import annotations

import atexit
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import api, bigstack, resolve
from .errors import DiffcError, UsageError
from .gradcheck import draw_args
from .ir.printer import print_program
from .pipeline import to_ir
from .pytree import unflatten
from .runtime.values import flatten_args, type_of, value_text
from .source import SourceFile, Span
from .specialise.builtins import BUILTINS
from .syntax import nodes as n
from .syntax.parse import parse
from .typesys import TensorType

NAME = "<repl>"
VALUE_FN = "__value__"
HELP = """\
Enter definitions (fn, let, import) and expressions; an expression's value is printed.
An entry goes on while brackets are open or a line ends with an operator, `=` or `=>`;
a blank line ends it. Defining a name again replaces the old definition.
  :type EXPR        the type of EXPR's value (of a function: its declared signature)
  :ir NAME          the optimised IR of function NAME, for arguments of its declared types
  :ir NAME(ARGS)    ... for the types of these arguments (DFL expressions)
  :grad NAME        the IR of NAME's value and gradient w.r.t. its float arguments
  :grad NAME(ARGS)  the gradient itself, at these arguments
  :load FILE        add the definitions of a .dfl file
  :help             this text
  :quit             leave (or Ctrl-D); Ctrl-C cancels the entry or the computation"""

# a line ending in one of these continues on the next (longest first, for `**` before `*`)
_CONTINUERS = ("=>", "->", "==", "!=", "<=", ">=", "**", "//", "and", "or", "not", "=", "+", "-", "*", "/", "%", "@")
_CONTINUERS += ("<", ">", ",", ".", ":")
_COMMANDS = (":type", ":t", ":ir", ":grad", ":load", ":help", ":h", ":?", ":quit", ":q")


def open_brackets(text: str) -> int:
    """How many brackets are open at the end of text (strings and comments skipped)."""
    depth, in_string = 0, False
    for line in text.splitlines():
        for ch in line:
            if in_string:
                in_string = ch != '"'
            elif ch == '"':
                in_string = True
            elif ch == "#":
                break
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
        in_string = False  # (strings do not span lines)
    return depth


def _code(line: str) -> str:
    """The line without its comment."""
    in_string = False
    for k, ch in enumerate(line):
        if ch == '"':
            in_string = not in_string
        elif ch == "#" and not in_string:
            return line[:k]
    return line


def needs_more(text: str) -> bool:
    """Whether an entry goes on to the next line: brackets open, or its last line ends with
    an operator (a word operator only as a whole word). Commands are one line."""
    if text.lstrip().startswith(":"):
        return False
    if open_brackets(text) > 0:
        return True
    last = _code(text.rstrip("\n").rsplit("\n", 1)[-1]).rstrip()
    for op in _CONTINUERS:
        if last.endswith(op):
            before = last[: -len(op)]
            return not op.isalpha() or before == "" or not (before[-1].isalnum() or before[-1] == "_")
    return False


def is_definition(text: str) -> bool:
    """`fn NAME`, `let`, `import` start a definition; `fn (` is a lambda, an expression."""
    words = _code(text).split(None, 1)
    if not words:
        return False
    if words[0] in ("let", "import"):
        return True
    return words[0] == "fn" and len(words) > 1 and not words[1].startswith("(")


@dataclass(frozen=True)
class Item:
    """A live definition: its name and its text, placed at line `line`, column `col`."""

    name: str
    line: int
    col: int
    text: str


def _item_text(source: SourceFile, s: Span) -> str:
    lines = [source.line(k) for k in range(s.line, s.end_line + 1)]
    if len(lines) == 1:
        return lines[0][s.col - 1 : s.end_col - 1]
    return "\n".join([lines[0][s.col - 1 :], *lines[1:-1], lines[-1][: s.end_col - 1]])


def program_text(items) -> str:
    """The definitions at their lines and columns, blank lines between them."""
    canvas: list[str] = []
    for item in sorted(items, key=lambda i: (i.line, i.col)):
        for k, part in enumerate(item.text.split("\n")):
            row = item.line - 1 + k
            canvas.extend([""] * (row + 1 - len(canvas)))
            canvas[row] = (canvas[row].ljust(item.col - 1) + part) if k == 0 else part
    return "\n".join(canvas) + "\n"


class Session:
    """The state of a REPL: the transcript and the definitions. `enter` takes one complete
    entry and returns what to print; a mistake raises a DiffcError located in the transcript."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or Path.cwd()  # where imports are looked up
        self.lines: list[str] = []
        self.items: dict[str, Item] = {}
        self.ast = self._load(self.items)
        self.done = False
        self._expr_file: SourceFile | None = None  # the text of the expression compiled last

    @property
    def transcript(self) -> SourceFile:
        return SourceFile(NAME, "\n".join(self.lines) + "\n")

    def enter(self, text: str) -> str | None:
        """Run one entry (a definition, an expression or a command); what to print, if anything."""
        line = len(self.lines) + 1
        self.lines.extend(text.rstrip("\n").split("\n"))
        try:
            if text.lstrip().startswith(":"):
                return self._command(text.strip(), line, text.index(":") + 1)
            if is_definition(text):
                self.define("\n" * (line - 1) + text)
                return None
            if not any(_code(row).strip() for row in text.split("\n")):  # (blank, or comments only)
                return None
            return value_text(self.evaluate(text, line, 1))
        except DiffcError as e:
            raise self._relocated(e) from None

    def define(self, text: str) -> None:
        """Add the definitions of text (an entry placed at its line), replacing those of the same names."""
        source = SourceFile(NAME, text)
        items = dict(self.items)
        for d in bigstack.run(parse, source).items:
            name = d.name if not isinstance(d, n.Import) else f"import {d.name}"
            items[name] = Item(name, d.span.line, d.span.col, _item_text(source, d.span))
        self.ast = self._load(items)
        self.items = items

    def _load(self, items) -> resolve.Module:
        return bigstack.run(resolve.load_text, program_text(items.values()), NAME, self.folder, BUILTINS)

    def evaluate(self, expr: str, line: int, col: int):
        """The value of expr, typed at line, col: compiled as the body of a function whose
        header takes the line before (See Note [The header line])."""
        text = "\n" * (line - 1) + f"fn {VALUE_FN}() =\n" + " " * (col - 1) + expr + "\n"
        self._expr_file = SourceFile(NAME, text)
        fndef = bigstack.run(parse, self._expr_file).items[0]
        ast = dataclasses.replace(self.ast, fns={**self.ast.fns, VALUE_FN: fndef})
        bigstack.run(resolve.check_names, ast, BUILTINS)
        return api.Module(ast).function(VALUE_FN)()

    def _relocated(self, e: DiffcError) -> DiffcError:
        """e with its spans in the session's text moved to the transcript."""
        transcript = self.transcript
        expr_file = self._expr_file

        def move(s: Span | None) -> Span | None:
            if s is None or s.file is None or s.file.name != NAME:
                return s
            shift = 1 if s.file is expr_file else 0
            return Span(transcript, s.line - shift, s.col, max(s.end_line - shift, 0), s.end_col)

        e.span = move(e.span)
        e.call_sites = [(how, move(site)) for how, site in e.call_sites]
        return e

    # --- commands ---------------------------------------------------------------------------

    def _command(self, text: str, line: int, col: int) -> str | None:
        word, _, rest = text.partition(" ")
        rest_col = col + len(text) - len(rest.lstrip()) if rest.strip() else col
        rest = rest.strip()
        if word in (":quit", ":q"):
            self.done = True
            return None
        if word in (":help", ":h", ":?"):
            return HELP
        if word == ":load":
            return self.load(rest)
        if word not in _COMMANDS:
            raise UsageError(f"unknown command {word} (:help lists them)", misspelt=(word, _COMMANDS))
        if not rest:
            raise UsageError(f"{word} needs an argument (see :help)")
        if word in (":type", ":t"):
            return self.type_text(rest, line, rest_col)
        if word == ":ir":
            name, args = self._call(rest, line, rest_col)
            prog, _ = to_ir(self.ast, name, self._types(self._args(name, args)))
            return print_program(prog)
        if word == ":grad":
            return self.grad(rest, line, rest_col)

    def load(self, path: str) -> str:
        """:load FILE: the file is checked as a program first (its mistakes located in it), then
        its text joins the transcript as if typed (its imports then found from the session's folder)."""
        if not path:
            raise UsageError(":load needs a file name")
        p = Path(path).expanduser()
        if not p.is_file():
            raise UsageError(f"no such file: {path}")
        bigstack.run(resolve.load_file, p, BUILTINS)
        text = resolve.read_source(p, path).text
        line = len(self.lines) + 1
        self.lines.extend(text.rstrip("\n").split("\n"))
        self.define("\n" * (line - 1) + text)
        return f"loaded {path}: {', '.join(self.ast.fns) or 'no functions'}"

    def type_text(self, expr: str, line: int, col: int) -> str:
        """A function's declared signature, or the type of a value (dtype and shape, per leaf)."""
        fndef = self.ast.fns.get(expr)
        if fndef is not None:
            return signature_text(fndef)
        return type_text(self.evaluate(expr, line, col))

    def _call(self, text: str, line: int, col: int) -> tuple[str, list | None]:
        """`NAME` -> (NAME, None); `NAME(ARGS)` -> (NAME, the values of ARGS)."""
        name, paren, _ = text.partition("(")
        name = name.strip()
        if name not in self.ast.fns:
            raise UsageError(f"no function `{name}`", misspelt=(name, self.ast.fns))
        if not paren:
            return name, None
        start = text.index("(")
        args = text[start:].rstrip()
        if not args.endswith(")"):
            raise UsageError(f"expected {name}(ARGS), with the arguments in parentheses")
        inner = args[1:-1].strip()
        as_tuple = args[:-1] + ("," if inner and not inner.endswith(",") else "") + ")"
        return name, list(self.evaluate(as_tuple, line, col + start))

    def _args(self, name: str, args: list | None) -> list:
        """The arguments given, or values of the types the parameters declare."""
        if args is not None:
            return args
        try:
            return draw_args(api.Module(self.ast), name, {}, np.random.default_rng(0))
        except UsageError:
            raise UsageError(
                f"the parameters of `{name}` do not declare every type and shape: give arguments, as in {name}(ARGS)"
            ) from None

    def _types(self, args):
        return types_of(args)

    def grad(self, text: str, line: int, col: int) -> str:
        """:grad NAME: the IR of the value and gradient; :grad NAME(ARGS): the gradient's value."""
        name, given = self._call(text, line, col)
        args = self._args(name, given)
        floats = tuple(k for k, a in enumerate(args) if any(x.dtype.kind == "f" for x in flatten_args((a,))[0]))
        if not floats:
            raise UsageError(f"`{name}` has no float arguments to differentiate")
        if given is not None:
            argnums = floats[0] if len(floats) == 1 else floats
            return value_text(api.grad(api.Module(self.ast).function(name), argnums)(*args))
        prog, _ = to_ir(self.ast, name, self._types(args), transform=("grad", floats, True))
        head = f"# value_and_grad of `{name}` w.r.t. arguments {floats}: the forward pass, then the backward pass"
        return head + "\n" + print_program(prog, lines_of=True)


def types_of(args) -> tuple:
    """The argument types a list of argument values specialises a function for."""
    arrays, tree = flatten_args(tuple(args))
    return unflatten(tree, [type_of(a) for a in arrays])


def signature_text(fndef: n.FnDef) -> str:
    """`fn f(x: f64[n], y) -> f64`: a function's header as declared."""
    params = ", ".join(p.name + (f": {_ann_text(p.ann)}" if p.ann else "") for p in fndef.params)
    ret = f" -> {_ann_text(fndef.ret)}" if fndef.ret else ""
    return f"fn {fndef.name}({params}){ret}"


def _ann_text(ann: n.TypeAnn) -> str:
    if ann.dims is None:
        return ann.dtype
    return f"{ann.dtype}[{', '.join(str(d) for d in ann.dims)}]"


def type_text(v) -> str:
    """DFL-style text of the type of a value (or of a tree of types): `f64[3]`, `(f64, i64)`,
    `{w: f64[2, 2]}`."""
    if isinstance(v, tuple):
        return "(" + ", ".join(type_text(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {type_text(x)}" for k, x in v.items()) + "}"
    return str(v if isinstance(v, TensorType) else type_of(np.asarray(v)))


# --- the loop ---------------------------------------------------------------------------------


def history_file() -> Path:
    """Where the history is kept: $XDG_STATE_HOME/diffc, else ~/.local/state/diffc."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "diffc" / "repl_history"


def _start_history() -> None:
    """readline's line editing and history, when there is a terminal and readline."""
    try:
        import readline  # (here, not at the top: loading it may write to the terminal)
    except ImportError:
        return
    path = history_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError:
        return
    readline.set_history_length(1000)
    atexit.register(_save_history, readline, path)


def _save_history(readline, path: Path) -> None:
    try:
        readline.write_history_file(path)
    except OSError:
        pass


def read_entry(read, interactive: bool) -> str | None:
    """One complete entry from read(prompt) (None at the end of input): lines while the entry
    needs more, up to a blank line."""
    text = read(">>> " if interactive else "")
    if text is None:
        return None
    while needs_more(text):
        more = read("... " if interactive else "")
        if more is None or not more.strip():
            break
        text += "\n" + more
    return text


def run(stdin=None, stdout=None, stderr=None) -> int:
    """The loop: an entry at a time until :quit or the end of input. An error is printed as
    for a file and the session goes on; Ctrl-C cancels the entry or the computation."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    interactive = stdin.isatty()
    if interactive:
        _start_history()
        print("diffc repl: :help for help, Ctrl-D to leave", file=stdout)

    def read(prompt: str) -> str | None:
        if interactive:
            try:
                return input(prompt)
            except EOFError:
                return None
        line = stdin.readline()
        return line.rstrip("\n") if line else None

    session = Session()
    while not session.done:
        try:
            text = read_entry(read, interactive)
            if text is None:
                if interactive:
                    print(file=stdout)
                break
            out = bigstack.run(session.enter, text)
            if out is not None:
                print(out, file=stdout, flush=True)
        except KeyboardInterrupt:
            print("\ninterrupted" if interactive else "interrupted", file=stderr)
        except UsageError as e:
            print(f"error: {e.message}", file=stderr, flush=True)
        except DiffcError as e:
            print(e.render(), file=stderr, flush=True)
        except RecursionError:
            print("error: the entry is nested too deeply for the compiler", file=stderr, flush=True)
        except Exception as e:  # a bug in diffc: one line, and the session goes on
            if os.environ.get("DIFFC_DEBUG"):
                raise
            print(f"internal error in diffc: {type(e).__name__}: {e}", file=stderr, flush=True)
    return 0


# Note [The header line]
# ~~~~~~~~~~~~~~~~~~~~~~
# An expression is compiled as the body of `fn __value__() =`, a header that must come before
# the body. The expression's own text is placed at its line (and column) plus one, with the
# header on the line of the entry itself, so that its spans are those of the transcript shifted
# by one line whatever the line (the first line of a session has no line before it), and
# _relocated shifts them back. Its SourceFile is its own, kept apart from the definitions': the
# cache keys an entry by both texts (runtime/cache.py).
