"""IR -> text, for `diffc show --ir` and golden tests. Values are named %0, %1, ... in order
of first appearance, so the text of a program is stable from run to run."""

from __future__ import annotations

import numpy as np

from .core import Body, Program, Var


class _Names:
    def __init__(self):
        self.names: dict[int, str] = {}

    def __call__(self, v: Var) -> str:
        if v.id not in self.names:
            self.names[v.id] = f"%{len(self.names)}"
        return self.names[v.id]


def _param_text(k, v) -> str:
    if isinstance(v, np.ndarray):
        if v.size > 8:
            return f"{k}=<{v.dtype}{list(v.shape)}>"
        return f"{k}={np.array2string(v, separator=', ').replace(chr(10), '')}"
    if isinstance(v, tuple) and v and hasattr(v[0], "dtype"):  # out_types
        return f"{k}=({', '.join(map(str, v))})"
    return f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"


def print_body(body: Body, names: _Names, indent: str, header: str, lines_of: bool = False) -> list[str]:
    params = ", ".join(f"{names(p)}: {p.type}" for p in body.params)
    lines = [f"{indent}{header}({params}):"]
    inner = indent + "  "
    for eqn in body.eqns:
        outs = ", ".join(f"{names(o)}: {o.type}" for o in eqn.outs)
        params = [_param_text(k, v) for k, v in eqn.params.items() if not _is_body(v)]
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
    lines.append(f"{inner}return {', '.join(names(o) for o in body.outs)}")
    return lines


def _is_body(v) -> bool:
    return isinstance(v, Body) or (isinstance(v, tuple) and bool(v) and isinstance(v[0], Body))


def print_program(prog: Program, lines_of: bool = False) -> str:
    """The program as text; lines_of adds the source line of each equation."""
    names = _Names()
    out = []
    for name, f in prog.funcs.items():
        out += print_body(f.body, names, "", f"func {name}", lines_of)
        out.append("")
    return "\n".join(out).rstrip() + "\n"
