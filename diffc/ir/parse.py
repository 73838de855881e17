"""Text -> IR: reads back what printer.print_program writes, so that IR can be written by hand
(the per-pass golden tests) and so that the text is known to say everything about a program.

The primitives are an argument (`parse_program(text, all_prims())`): ir sits below prims.
Each equation is typed again by its primitive's shape rule and must agree with the types
printed; known values are folded again as ir.build.Builder folds them (see `fold_known`), and
the text carries only the known values that folding would not find (`known=` after a type).
Spans of equations are the `# line N` annotations when printed (a line of no file), else
NO_SPAN. Mistakes are one located IRSyntaxError (line:col of the text)."""

from __future__ import annotations

import ast
import dataclasses
import re

import numpy as np

from ..errors import DiffcError, DiffcSyntaxError
from ..pytree import LEAF, TreeDef
from ..source import NO_SPAN, SourceFile, Span
from ..typesys import DType, TensorType
from .build import fold_known
from .core import Body, Eqn, Func, Program, Var


class IRSyntaxError(DiffcSyntaxError):
    """IR text that does not read back: malformed, an unknown primitive or value, or a type
    that disagrees with what the primitive gives."""


def parse_program(text: str, prims: dict, records=(), name: str = "<ir>") -> Program:
    """The Program that print_program(prog) printed as `text`. `prims` maps a primitive's name
    to its Prim; `records` are the classes of record-valued params (printed `Name(...)` with
    their bodies under the equation), e.g. a while tape's origin."""
    return _Parser(text, prims, {r.__name__: r for r in records}, name).program()


_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<var>%\d+)
      | (?P<label>@\d+)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)(?![\w.]))
      | (?P<name>[A-Za-z_][\w.]*)
      | (?P<punct>[()\[\]{},:=*])
    """,
    re.VERBOSE,
)
_DTYPES = {d.value: d for d in DType}


class _Line:
    """The tokens of one line: (kind, text, column)."""

    def __init__(self, parser: _Parser, lineno: int, text: str):
        self.p, self.lineno, self.text = parser, lineno, text
        self.toks: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise self.error(f"unexpected character {text[pos]!r}", pos + 1)
            if m.lastgroup != "space":
                self.toks.append((m.lastgroup, m.group(), pos + 1))
            pos = m.end()
        self.k = 0

    def error(self, message: str, col: int | None = None) -> IRSyntaxError:
        if col is None:
            col = self.toks[self.k][2] if self.k < len(self.toks) else len(self.text.rstrip()) + 1
        return IRSyntaxError(message, Span(self.p.file, self.lineno, col))

    def peek(self, ahead: int = 0) -> str | None:
        k = self.k + ahead
        return self.toks[k][1] if k < len(self.toks) else None

    def kind(self) -> str | None:
        return self.toks[self.k][0] if self.k < len(self.toks) else None

    def next(self, kind: str | None = None, what: str = "") -> str:
        if self.k >= len(self.toks) or (kind is not None and self.toks[self.k][0] != kind):
            found = f"`{self.peek()}`" if self.peek() is not None else "the end of the line"
            raise self.error(f"expected {what or kind}, found {found}")
        self.k += 1
        return self.toks[self.k - 1][1]

    def expect(self, text: str):
        if self.peek() != text:
            found = f"`{self.peek()}`" if self.peek() is not None else "the end of the line"
            raise self.error(f"expected `{text}`, found {found}")
        self.k += 1

    def accept(self, text: str) -> bool:
        if self.peek() == text:
            self.k += 1
            return True
        return False

    def done(self):
        if self.k < len(self.toks):
            raise self.error(f"unexpected `{self.peek()}`")

    # --- values -------------------------------------------------------------------------------

    def type(self) -> TensorType:
        word = self.next("name", "a type")
        if word not in _DTYPES:
            raise self.error(f"unknown dtype `{word}`", self.toks[self.k - 1][2])
        dims = []
        if self.accept("["):
            while not self.accept("]"):
                dims.append(self.int())
                if self.peek() != "]":
                    self.expect(",")
        return TensorType(_DTYPES[word], tuple(dims))

    def int(self) -> int:
        text = self.next("num", "an integer")
        try:
            return int(text)
        except ValueError:
            raise self.error(f"expected an integer, found `{text}`", self.toks[self.k - 1][2]) from None

    def value(self):
        """A param's value: a number, True/False/None, a string, a dtype or type, a tuple, an
        array (a list), a tree `tree(*, {a: *})` or a record `Name(field=..., ...)`."""
        kind, text = self.kind(), self.peek()
        if kind == "num":
            self.k += 1
            return _number(text)
        if kind == "str":
            self.k += 1
            return ast.literal_eval(text)
        if text == "(":
            self.k += 1
            items = []
            while not self.accept(")"):
                items.append(self.value())
                if self.peek() != ")":
                    self.expect(",")
            return tuple(items)
        if text == "[":
            return np.array(self.list())  # of the output's dtype and shape: see _Parser.outputs
        if kind == "name":
            if text in ("True", "False", "None"):
                self.k += 1
                return {"True": True, "False": False, "None": None}[text]
            if text in _DTYPES:
                return self.type() if self.peek(1) == "[" else _DTYPES[self.next()]
            if text == "tree" and self.peek(1) in ("(", "{", "*"):
                self.k += 1
                return self.tree()

        if kind == "label":
            return self.record()
        raise self.error(f"expected a value, found `{text}`" if text else "expected a value")

    def list(self):
        self.expect("[")
        items = []
        while not self.accept("]"):
            if self.peek() == "[":
                items.append(self.list())
            elif self.peek() in ("True", "False"):
                items.append(self.next() == "True")
            else:
                items.append(_number(self.next("num", "a number")))
            if self.peek() != "]":
                self.expect(",")
        return items

    def tree(self) -> TreeDef:
        if self.accept("*"):
            return LEAF
        if self.accept("("):
            children = []
            while not self.accept(")"):
                children.append(self.tree())
                if self.peek() != ")":
                    self.expect(",")
            return TreeDef("tuple", tuple(children))
        self.expect("{")
        names, children = [], []
        while not self.accept("}"):
            names.append(self.next("name", "a field name"))
            self.expect(":")
            children.append(self.tree())
            if self.peek() != "}":
                self.expect(",")
        return TreeDef("record", tuple(children), tuple(names))

    def record(self):
        """`@N Name(field=value, ...)` where a record first appears (its body fields are printed
        under the equation), `@N` where it appears again."""
        col = self.toks[self.k][2]
        label = self.next()
        if self.kind() != "name" or self.peek(1) != "(":
            if label not in self.p.labels:
                raise self.error(f"record {label} is not defined", col)
            return self.p.labels[label]
        if label in self.p.labels:
            raise self.error(f"record {label} defined twice", col)
        col = self.toks[self.k][2]
        name = self.next()
        if name not in self.p.records:
            raise self.error(f"unknown record `{name}`", col)
        self.expect("(")
        fields = {}
        while not self.accept(")"):
            key = self.next("name", "a field name")
            self.expect("=")
            fields[key] = self.value()
            if self.peek() != ")":
                self.expect(",")
        self.p.labels[label] = _Pending(self.p.records[name], fields, Span(self.p.file, self.lineno, col))
        return self.p.labels[label]


@dataclasses.dataclass
class _Pending:
    """A record param whose body fields are read from the lines under its equation."""

    cls: type
    fields: dict
    span: Span
    made: object = None


def _number(text: str):
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return float(text)


class _Parser:
    def __init__(self, text: str, prims: dict, records: dict, name: str):
        self.file = SourceFile(name, text)
        self.lines = text.splitlines()
        self.prims, self.records = prims, records
        self.k = 0  # index of the next line
        self.names: dict[str, Var] = {}  # every value of the text: each is defined once
        self.scopes: list[set[str]] = []  # the values each open body may read
        self.labels: dict = {}  # @N -> the record (a _Pending until its bodies are read)

    def line(self, k: int | None = None) -> _Line:
        k = self.k if k is None else k
        return _Line(self, k + 1, self.lines[k])

    def skip_blank(self):
        while self.k < len(self.lines) and not self.lines[self.k].strip():
            self.k += 1

    def indent_of(self, k: int) -> int:
        return len(self.lines[k]) - len(self.lines[k].lstrip(" "))

    def program(self) -> Program:
        prog = Program()
        self.skip_blank()
        if self.k >= len(self.lines):
            raise IRSyntaxError("no function in the IR text", Span(self.file, 1, 1))
        calls = []
        while self.k < len(self.lines):
            ln = self.line()
            if self.indent_of(self.k) != 0:
                raise ln.error("expected `func` at the start of the line", 1)
            ln.expect("func")
            col = ln.toks[ln.k][2] if ln.k < len(ln.toks) else 1
            name = ln.next("name", "a function name")
            if name in prog.funcs:
                raise ln.error(f"function `{name}` defined twice", col)
            body = self.body(ln, 0, calls)
            prog.funcs[name] = Func(name, body, recursive=ln.recursive)
            self.skip_blank()
        prog.entry = "main" if "main" in prog.funcs else next(iter(prog.funcs))
        for ln, col, func in calls:
            if func not in prog.funcs:
                raise ln.error(f"call of an unknown function `{func}`", col)
        return prog

    def params(self, ln: _Line) -> list[Var]:
        """`(%a: T, %b: T known=V, ...)`"""
        ln.expect("(")
        params = []
        while not ln.accept(")"):
            params.append(self.define(ln))
            if ln.peek() != ")":
                ln.expect(",")
        return params

    def define(self, ln: _Line) -> Var:
        """`%n: T` or `%n: T known=V`: a new value (printed known values override folding)."""
        col = ln.toks[ln.k][2] if ln.k < len(ln.toks) else len(ln.text) + 1
        name = ln.next("var", "a value such as %0")
        if name in self.names:
            raise ln.error(f"value {name} defined twice", col)
        ln.expect(":")
        v = Var(ln.type())
        if ln.accept("known"):
            ln.expect("=")
            at = ln.toks[ln.k][2] if ln.k < len(ln.toks) else None
            known = ln.value()
            v.known = None if known is None else _shaped(ln, np.asarray(known), v.type, at)
        self.names[name] = v
        self.scopes[-1].add(name)
        return v

    def body(self, header: _Line, indent: int, calls: list) -> Body:
        """The body whose header line is `header` (its params next), its equations indented
        by indent + 2, up to its `return`."""
        self.scopes.append(set())
        params = self.params(header)
        header.recursive = indent == 0 and header.accept("recursive")  # a function's flag
        header.expect(":")
        header.done()
        self.k += 1
        inner = indent + 2
        eqns: list[Eqn] = []
        while True:
            if self.k >= len(self.lines):
                raise IRSyntaxError("the body has no `return`", Span(self.file, len(self.lines), 1))
            if not self.lines[self.k].strip() or self.indent_of(self.k) != inner:
                where = Span(self.file, self.k + 1, self.indent_of(self.k) + 1)
                raise IRSyntaxError(f"expected an equation or `return` indented by {inner}", where)
            raw = self.lines[self.k].strip()
            if raw.startswith("#"):
                raise IRSyntaxError("a note `# ...` must follow an equation", Span(self.file, self.k + 1, inner + 1))
            if not re.match(r"return\b", raw):
                eqns.append(self.eqn(inner, calls))
                continue
            ln = self.line()
            ln.expect("return")
            outs = []
            while ln.k < len(ln.toks):
                outs.append(self.use(ln))
                if ln.k < len(ln.toks):
                    ln.expect(",")
            self.k += 1
            self.scopes.pop()
            return Body(params, eqns, outs)

    def use(self, ln: _Line) -> Var:
        col = ln.toks[ln.k][2] if ln.k < len(ln.toks) else len(ln.text) + 1
        name = ln.next("var", "a value such as %0")
        if name not in self.scopes[-1]:
            where = "in this body (bodies are closed)" if name in self.names else ""
            raise ln.error(f"value {name} is not defined {where}".rstrip(), col)
        return self.names[name]

    def eqn(self, indent: int, calls: list) -> Eqn:
        """`%a: T, %b: T = prim[k=v, ...] %x %y   # line N`, then its note and bodies."""
        code, line_no = _split_comment(self.lines[self.k])
        ln = _Line(self, self.k + 1, code)
        out_marks = []
        if ln.kind() == "var":
            while True:
                start = ln.k
                ln.next("var")
                ln.expect(":")
                ln.type()
                if ln.accept("known"):
                    ln.expect("=")
                    ln.value()
                out_marks.append((start, ln.k))
                if not ln.accept(","):
                    break
            ln.expect("=")
        col = ln.toks[ln.k][2] if ln.k < len(ln.toks) else 1
        pname = ln.next("name", "a primitive")
        if pname not in self.prims:
            raise ln.error(f"unknown primitive `{pname}`", col)
        prim = self.prims[pname]
        params: dict = {}
        if ln.accept("["):
            while not ln.accept("]"):
                kcol = ln.toks[ln.k][2] if ln.k < len(ln.toks) else 1
                key = ln.next("name", "a param name")
                ln.expect("=")
                params[key] = ln.value()
                if key == "func" and isinstance(params[key], str):
                    calls.append((ln, kcol, params[key]))
                if ln.peek() != "]":
                    ln.expect(",")
        inputs = []
        while ln.k < len(ln.toks):
            inputs.append(self.use(ln))
        self.k += 1
        eqn = Eqn(prim, inputs, params, [], Span(None, line_no, 0) if line_no else NO_SPAN)
        if (
            self.k < len(self.lines)
            and self.indent_of(self.k) == indent
            and self.lines[self.k].lstrip().startswith("#")
        ):
            eqn.note = self.lines[self.k].strip()[1:].strip()
            self.k += 1
        # the bodies come first, as the ops' builders order their params (eqn.bodies())
        eqn.params = {**self.sub_bodies(eqn, indent, calls), **params}
        # the outputs are defined after the inputs and bodies are read: the printer names them
        # first, but nothing before this equation may refer to them
        eqn.outs = self.outputs(ln, out_marks, prim, inputs, eqn.params, col)
        return eqn

    def outputs(self, ln: _Line, marks, prim, inputs, params, col) -> list[Var]:
        outs = []
        for start, _ in marks:
            ln.k = start
            outs.append(self.define(ln))
        if "value" in params:  # the constant of `const`: an array of the output's dtype and shape
            if len(outs) != 1:
                raise ln.error("a `value` param needs exactly one output", col)
            params["value"] = _shaped(ln, np.asarray(params["value"]), outs[0].type, col)
        try:
            types = prim.shape([x.type for x in inputs], **params)
        except DiffcError as e:
            raise ln.error(f"`{prim.name}` does not take these inputs and params: {e.message}", col) from None
        except Exception as e:  # a shape rule given params of the wrong kind (a number for a tuple)
            raise ln.error(f"wrong params for `{prim.name}`: {type(e).__name__}: {e}", col) from None
        if list(types) != [o.type for o in outs]:
            gives, says = ", ".join(map(str, types)), ", ".join(str(o.type) for o in outs)
            raise ln.error(f"`{prim.name}` gives ({gives}), the text says ({says})", col)
        try:
            folded = fold_known(prim, inputs, params, types)
        except DiffcError as e:
            raise ln.error(f"`{prim.name}` of these known values: {e.message}", col) from None
        for (start, end), o, f in zip(marks, outs, folded):
            if not any(ln.toks[j][1] == "known" for j in range(start, end)):
                o.known = f
        return outs

    def sub_bodies(self, eqn: Eqn, indent: int, calls: list) -> dict:
        """The bodies printed under an equation: `key (...)`, `key[j] (...)`, `key.field (...)`.
        Returns the body params; record params are completed in eqn.params."""
        found: dict = {}
        lists: dict[str, list] = {}
        while self.k < len(self.lines) and self.indent_of(self.k) == indent + 2 and self.lines[self.k].strip():
            ln = self.line()
            col = ln.toks[0][2]
            key = ln.next("name", "a body name")
            index = None
            if ln.accept("["):
                index = ln.int()
                ln.expect("]")
            body = self.body(ln, indent + 2, calls)
            head, _, field = key.partition(".")
            if field:
                rec = eqn.params.get(head)
                if not isinstance(rec, _Pending):
                    raise IRSyntaxError(
                        f"`{head}` is not a record param of this equation", Span(self.file, ln.lineno, col)
                    )
                rec.fields[field] = body
            elif index is None:
                found[key] = body
            else:
                got = lists.setdefault(key, [])
                found[key] = got
                if index != len(got):
                    raise IRSyntaxError(f"expected {key}[{len(got)}]", Span(self.file, ln.lineno, col))
                got.append(body)
        for key, bodies in lists.items():
            found[key] = tuple(bodies)
        for key, v in eqn.params.items():
            if isinstance(v, _Pending):
                if v.made is None:
                    try:
                        v.made = v.cls(**v.fields)
                    except TypeError as e:
                        raise IRSyntaxError(f"record `{v.cls.__name__}`: {e}", v.span) from None
                eqn.params[key] = v.made
        return found


def _shaped(ln: _Line, value: np.ndarray, t: TensorType, col: int | None) -> np.ndarray:
    """value (read as nested lists) as an array of type t."""
    if value.size != t.size or value.dtype.kind not in "biuf":
        raise ln.error(f"{value.size} values for a value of type {t}", col)
    return value.astype(t.dtype.np).reshape(t.shape)


def _split_comment(text: str) -> tuple[str, int]:
    """An equation's text without its `# line N` annotation, and N (0 without one)."""
    m = re.search(r"\s#\s*line\s+(\d+)\s*$", text)
    if m is None:
        return text, 0
    return text[: m.start()], int(m.group(1))
