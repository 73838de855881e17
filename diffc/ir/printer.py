"""IR -> text, for `diffc show --ir` and golden tests. Values are named %0, %1, ... in order
of first appearance, so the text of a program is stable from run to run.

The text says everything the passes and lowering read, and ir/parse.py reads it back: not the
source spans (only their lines, with lines_of), nor Var.hint and Var.range, which only the
specialiser reads while it builds. Known values are printed (`known=...` after a type) only
where folding again would not find them (see parse.fold_known)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import DiffcError
from ..pytree import TreeDef
from ..typesys import DType, TensorType
from .core import Body, Program, Var
from .parse import fold_known


class _Names:
    def __init__(self):
        self.names: dict[int, str] = {}
        self.records: dict[int, str] = {}  # id of a record param -> @N
        self.printed: set[int] = set()  # the records whose bodies are printed

    def __call__(self, v: Var) -> str:
        if v.id not in self.names:
            self.names[v.id] = f"%{len(self.names)}"
        return self.names[v.id]


def _value_text(v, names: _Names) -> str:
    """A param's value as text that parse.py reads back."""
    if isinstance(v, TensorType):  # f64[] for a scalar: a type, not the dtype f64
        return f"{v.dtype}[{', '.join(map(str, v.shape))}]"
    if isinstance(v, DType):
        return str(v)
    if isinstance(v, np.ndarray):
        return _array_text(v.tolist())
    if isinstance(v, TreeDef):
        return f"tree{v!r}"
    if isinstance(v, tuple):
        inner = ", ".join(_value_text(x, names) for x in v)
        # Python's (x,), but (f64[3]) for one type (call's out_types): a tuple all the same
        return f"({inner},)" if len(v) == 1 and not isinstance(v[0], TensorType) else f"({inner})"
    if _is_record(v):
        # a record may be shared by several equations (a while tape's origin, by its untape):
        # it is written out where it first appears, and named @N there and wherever else
        first = id(v) not in names.records
        label = names.records.setdefault(id(v), f"@{len(names.records)}")
        if not first:
            return label
        fields = [f"{f.name}={_value_text(getattr(v, f.name), names)}" for f in _record_fields(v, bodies=False)]
        return f"{label} {type(v).__name__}({', '.join(fields)})"
    if isinstance(v, float | np.floating):
        return _float_text(float(v))
    return repr(v) if isinstance(v, str) else str(v)


def _array_text(x) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(_array_text(y) for y in x) + "]"
    return _float_text(x) if isinstance(x, float) else str(x)


def _float_text(x: float) -> str:
    """The shortest text that reads back as x, written as NumPy writes it (`1.`, not `1.0`)."""
    text = repr(x)
    return text[:-1] if text.endswith(".0") else text


def _is_record(v) -> bool:
    return dataclasses.is_dataclass(v) and not isinstance(v, type | Body)


def _record_fields(v, bodies: bool):
    return [f for f in dataclasses.fields(v) if isinstance(getattr(v, f.name), Body) == bodies]


def _typed(v: Var, names: _Names, derived=None) -> str:
    """`%n: T`, with `known=...` where the known value is not what parsing derives."""
    text = f"{names(v)}: {v.type}"
    if not _same(v.known, derived):
        text += f" known={'None' if v.known is None else _array_text(v.known.tolist())}"
    return text


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def print_body(
    body: Body, names: _Names, indent: str, header: str, lines_of: bool = False, tail: str = ""
) -> list[str]:
    params = ", ".join(_typed(p, names) for p in body.params)
    lines = [f"{indent}{header}({params}){tail}:"]
    inner = indent + "  "
    for eqn in body.eqns:
        try:
            derived = fold_known(eqn.prim, eqn.inputs, eqn.params, [o.type for o in eqn.outs])
        except DiffcError:  # folding that fails here fails when read back too
            derived = None
        derived = derived or [None] * len(eqn.outs)
        outs = ", ".join(_typed(o, names, d) for o, d in zip(eqn.outs, derived))
        params = [f"{k}={_value_text(v, names)}" for k, v in eqn.params.items() if not _is_body(v)]
        ptext = f"[{', '.join(params)}]" if params else ""
        args = " ".join(names(x) for x in eqn.inputs)
        lhs = f"{outs} = " if outs else ""
        text = f"{inner}{lhs}{eqn.prim.name}{ptext} {args}".rstrip()
        if lines_of and eqn.span.line:
            text = f"{text:<72} # line {eqn.span.line}"
        lines.append(text)
        if eqn.note:
            lines.append(f"{inner}# {eqn.note}")
        for k, v in eqn.params.items():
            if isinstance(v, Body):
                lines += print_body(v, names, inner + "  ", f"{k} ", lines_of)
            elif _is_body(v):
                for j, b in enumerate(v):
                    lines += print_body(b, names, inner + "  ", f"{k}[{j}] ", lines_of)
            elif _is_record(v) and id(v) not in names.printed:
                names.printed.add(id(v))
                for f in _record_fields(v, bodies=True):
                    lines += print_body(getattr(v, f.name), names, inner + "  ", f"{k}.{f.name} ", lines_of)
    lines.append(f"{inner}return {', '.join(names(o) for o in body.outs)}")
    return lines


def _is_body(v) -> bool:
    return isinstance(v, Body) or (isinstance(v, tuple) and bool(v) and isinstance(v[0], Body))


def body_text(body: Body, header: str = "body") -> str:
    """A body on its own, its values named %0, %1, ... in order of first appearance (its
    params first): two bodies of the same text compute the same from their params."""
    return "\n".join(print_body(body, _Names(), "", header))


def print_program(prog: Program, lines_of: bool = False) -> str:
    """The program as text; lines_of adds the source line of each equation."""
    names = _Names()
    out = []
    for name, f in prog.funcs.items():
        out += print_body(f.body, names, "", f"func {name}", lines_of, " recursive" if f.recursive else "")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
