"""`diffc build`: functions of a program, and their gradients, as a C library.

For each `--fn` spec (NAME, grad:NAME or value_and_grad:NAME) the function is compiled for the
given argument types as for a call, to position-independent object code; the system C
compiler then links those objects, the matrix kernels they call (lower/gemm.py) and a C file
into lib<prefix>.so. The C file is build_data/runtime.c (what the generated code imports from
the process under Python: the SIGINT count, print, BLAS's products; and the call itself: ctx,
arena, stack limit, error messages) followed by this library's tables and entry points. C,
compiled by `cc`, rather than LLVM IR: the linker is needed anyway, and thread-local storage,
pthreads and stdio are the C library's own. The library then needs only libc and libm.

The C ABI (docs/language.md, "diffc build"): one function per spec,
    int <prefix>_<name>(inputs..., outputs...)
its arguments the leaves of the arguments, then of the result, in pytree.flatten's order
(tuples in order, records by sorted field name); an input array is `const T *`, an input number
a `T`, every output a `T *` to the caller's buffer; arrays contiguous, row-major, of the fixed
shapes in the header. It returns 0, or an error code whose message <prefix>_last_error() gives
(per thread). <prefix>.py calls the library from Python with NumPy arrays."""

from __future__ import annotations

import json
import keyword
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llvmlite import ir

from .errors import DiffcError, UsageError
from .lower import gemm, jit
from .lower.emit import (
    CTX_A,
    CTX_ARENA,
    CTX_B,
    CTX_ERR,
    CTX_SITE,
    CTX_STACK,
    CTX_WORDS,
    ERR_BOUNDS,
    ERR_DEPTH,
    ERR_MEMORY,
    ERR_NEGATIVE,
    ERR_STACK,
)
from .lower.llvm import ENTRY_SYMBOL, lower_program
from .pipeline import to_ir
from .prims.io import PRINT_BASE
from .pytree import Record, TreeDef, flatten
from .typesys import DType, TensorType

DATA = Path(__file__).parent / "build_data"
KINDS = ("value", "grad", "value_and_grad")
ERROR_CODES = {  # the codes a library function returns, as the header names them
    "BOUNDS": ERR_BOUNDS,
    "DEPTH": ERR_DEPTH,
    "MEMORY": ERR_MEMORY,
    "STACK": ERR_STACK,
    "NEGATIVE": ERR_NEGATIVE,
}
_C_TYPES = {DType.F64: "double", DType.F32: "float", DType.I64: "int64_t", DType.BOOL: "bool"}
_C_DTYPE_CODES = {DType.F64: 0, DType.F32: 1, DType.I64: 2, DType.BOOL: 3}  # runtime.c's DIFFC_F64, ...
_C_KEYWORDS = set(
    "auto bool break case char const continue default do double else enum extern float for goto if inline int long"
    " register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while"
    " int64_t".split()
)


# --- the command line's words ------------------------------------------------------------------


_TYPE_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+)|(.))")


def parse_type(text: str):
    """A --arg TYPE: `f64`, `i64[3]`, `f32[2, 3]`, `bool`, records `{w: f64[3,4], b: f64[3]}`
    and tuples `(f64, i64[2])`, as a tree of TensorTypes (records as pytree.Record); None when
    the text is not a type (then it is an example value)."""
    tokens = [m.group(0).strip() for m in _TYPE_TOKEN.finditer(text) if m.group(0).strip()]
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else ""

    def take(tok=None):
        nonlocal pos
        t = peek()
        if tok is not None and t != tok:
            raise ValueError(t)
        pos += 1
        return t

    def one():
        t = take()
        if t == "{":
            fields = {}
            while peek() != "}":
                name = take()
                if not name.isidentifier() or name in fields:
                    raise ValueError(name)
                take(":")
                fields[name] = one()
                if peek() != "}":
                    take(",")
            take("}")
            return Record(fields)
        if t == "(":
            items = []
            while peek() != ")":
                items.append(one())
                if peek() != ")":
                    take(",")
            take(")")
            return tuple(items)
        dtype = DType(t)
        dims = []
        if peek() == "[":
            take("[")
            while peek() != "]":
                d = take()
                if not d.isdigit():
                    raise ValueError(d)
                dims.append(int(d))
                if peek() != "]":
                    take(",")
            take("]")
        return TensorType(dtype, tuple(dims))

    try:
        t = one()
        if pos != len(tokens):
            return None
        return t
    except (ValueError, IndexError):
        return None


@dataclass(frozen=True)
class FnSpec:
    """One --fn: the function `name`, or its gradient (`grad`) or value and gradient w.r.t. its
    first argument, as diffc.grad and diffc.value_and_grad take them."""

    kind: str
    name: str

    @staticmethod
    def parse(text: str) -> FnSpec:
        kind, _, name = text.rpartition(":")
        kind = kind or "value"
        if kind not in KINDS or not name.isidentifier():
            raise UsageError(f"--fn {text}: expected NAME, grad:NAME or value_and_grad:NAME")
        return FnSpec(kind, name)

    @property
    def label(self) -> str:
        return self.name if self.kind == "value" else f"{self.kind}({self.name})"

    @property
    def c_suffix(self) -> str:
        return self.name if self.kind == "value" else f"{self.kind}_{self.name}"

    @property
    def transform(self) -> tuple:
        return () if self.kind == "value" else ("grad", 0, self.kind == "value_and_grad")


def library_prefix(path: str) -> str:
    """The C prefix of a program's library: its file name's stem as a C identifier (`prog` for
    standard input, `-`)."""
    stem = re.sub(r"\W", "_", Path(path).stem, flags=re.ASCII).strip("_") or "prog"
    return "_" + stem if stem[0].isdigit() else stem


# --- compiling --------------------------------------------------------------------------------


@dataclass
class Leaf:
    name: str  # a C identifier, the leaf's path: p_w, out_1_b
    type: TensorType


@dataclass
class Built:
    """One spec compiled: object code with its entry renamed, and what its wrapper needs."""

    spec: FnSpec
    params: list[str]
    arg_types: tuple
    ins: list[Leaf]
    outs: list[Leaf]
    in_trees: list[TreeDef]
    out_tree: TreeDef
    sites: list
    prints: list
    arena: int
    obj: bytes
    kernels: set


def compile_spec(module, spec: FnSpec, types_by_name: dict, prefix: str, index: int, print_base: int) -> Built:
    """Specialise, optimise and lower one spec; its print sites are numbered from print_base."""
    fndef = module.fns.get(spec.name)
    if fndef is None:
        have = ", ".join(module.fns) or "none"
        raise UsageError(f"--fn {spec.label}: the program has no function `{spec.name}` (it defines: {have})")
    params = [p.name for p in fndef.params]
    for p in params:
        if p not in types_by_name:
            raise UsageError(f"`{spec.name}` needs the type of parameter `{p}`: give it with --arg {p}=TYPE")
    arg_types = tuple(types_by_name[p] for p in params)
    prog, out_tree = to_ir(module, spec.name, arg_types, transform=spec.transform)
    ms = lower_program(prog)
    base = ms.module.globals.get(PRINT_BASE)
    if base is not None:
        base.initializer = ir.Constant(base.value_type, print_base)
        base.linkage = "internal"
    mod = jit.parse(str(ms.module))
    mod.get_function(ENTRY_SYMBOL).name = f"diffc_entry_{index}"  # (local to the library)
    obj = jit.library_object(jit.optimise_module(mod))
    names: set[str] = set()
    ins, in_trees = [], []
    for p, t in zip(params, arg_types):
        leaves, tree = flatten(t)
        in_trees.append(tree)
        ins += [Leaf(_unique(n, names), x) for n, x in zip(_leaf_names(p, tree), leaves)]
    out_types = [o.type for o in prog.main.body.outs]
    outs = [Leaf(_unique(n, names), t) for n, t in zip(_leaf_names("out", out_tree), out_types)]
    return Built(
        spec, params, arg_types, ins, outs, in_trees, out_tree, ms.sites, ms.prints, ms.entry_arena, obj, ms.kernels
    )


def _leaf_names(prefix: str, tree: TreeDef) -> list[str]:
    if tree.kind == "leaf":
        return [prefix]
    labels = tree.names if tree.kind == "record" else [str(k) for k in range(len(tree.children))]
    return [n for label, c in zip(labels, tree.children) for n in _leaf_names(f"{prefix}_{label}", c)]


def _unique(name: str, taken: set[str]) -> str:
    while name in _C_KEYWORDS or name in taken or keyword.iskeyword(name):
        name += "_"
    taken.add(name)
    return name


def kernel_object(name: str) -> bytes:
    return jit.library_object(gemm.optimised(name))


# --- the C file, the header and the Python module ----------------------------------------------


def c_string(text: str) -> str:
    """A C string literal of text (UTF-8; anything but printable ASCII escaped in octal)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _site_row(site) -> str:
    span = site.span
    if span is None or span.file is None:
        where, excerpt = "<unknown>", ""
    else:
        where = f"{span.filename}:{span.line}:{span.col}"
        excerpt = "".join("\n" + line for line in DiffcError("", span).render().split("\n")[1:])
    what = site.what.split(".")[0] if site.kind in (ERR_STACK, ERR_DEPTH) else site.what
    return f"    {{{site.kind}, {c_string(where)}, {c_string(what)}, {c_string(excerpt)}}},"


def _c_param(leaf: Leaf, output: bool) -> str:
    t = _C_TYPES[leaf.type.dtype]
    if output:
        return f"{t} *{leaf.name}"
    return f"{t} {leaf.name}" if leaf.type.rank == 0 else f"const {t} *{leaf.name}"


def _prototype(prefix: str, c: Built) -> str:
    params = [_c_param(x, False) for x in c.ins] + [_c_param(x, True) for x in c.outs]
    return f"int {prefix}_{c.spec.c_suffix}({', '.join(params)})"


def _print_site(k: int, label: str, tree: TreeDef, types) -> str:
    """C that writes one print's line as runtime/call.py does: the label, then each value."""
    parts: list = []  # strings and leaf indices

    def walk(t: TreeDef):
        if t.kind == "leaf":
            parts.append(len([p for p in parts if isinstance(p, int)]))
        elif t.kind == "tuple":
            parts.append("(")
            for j, c in enumerate(t.children):
                parts.append(", " if j else "")
                walk(c)
            parts.append(",)" if len(t.children) == 1 else ")")
        else:
            parts.append("{")
            for j, (n, c) in enumerate(zip(t.names, t.children)):
                parts.append((", " if j else "") + f"{n}: ")
                walk(c)
            parts.append("}")

    if label:
        parts.append(label)
    for j, c in enumerate(tree.children):
        parts.append(" " if j or label else "")
        walk(c)
    parts.append("\n")
    lines = [f"static void diffc_print_{k}(void **p) {{"]
    text = ""
    for part in parts + [None]:
        if isinstance(part, str):
            text += part
            continue
        if text:
            lines.append(f"    fputs({c_string(text)}, stdout);")
            text = ""
        if isinstance(part, int):
            t = types[part]
            shape = ", ".join(map(str, t.shape)) or "0"
            lines.append(
                f"    {{ static const int64_t shape[] = {{{shape}}};"
                f" diffc_put_array(p[{part}], {_C_DTYPE_CODES[t.dtype]}, {t.rank}, shape); }}"
            )
    lines.append("}")
    return "\n".join(lines)


def c_source(prefix: str, compiled: list[Built]) -> str:
    words = dict(CTX_WORDS=CTX_WORDS, CTX_ERR=CTX_ERR, CTX_SITE=CTX_SITE, CTX_A=CTX_A, CTX_B=CTX_B, CTX_ARENA=CTX_ARENA)
    words.update(CTX_STACK=CTX_STACK, **{f"ERR_{k}": v for k, v in ERROR_CODES.items()})
    out = [f"#define DIFFC_{k} {v}" for k, v in words.items()]
    out.append((DATA / "runtime.c").read_text(encoding="utf-8"))
    out.append(f'#include "{prefix}.h" /* (so that the compiler checks the definitions against it) */\n')
    out.append("/* --- this library's print sites, tables and entry points --- */\n")
    prints = [p for c in compiled for p in c.prints]
    for k, (label, tree, types) in enumerate(prints):
        out.append(_print_site(k, label, tree, types))
    out.append("void diffc_print(int64_t site, void **ptrs, int64_t *ctx) {\n    (void)ctx;\n    flockfile(stdout);")
    out.append("    switch (site) {")
    out += [f"    case {k}: diffc_print_{k}(ptrs); break;" for k in range(len(prints))]
    out.append("    }\n    funlockfile(stdout);\n    fflush(stdout);\n}\n")
    out.append(f"const char *{prefix}_last_error(void) {{ return diffc_last_error(); }}\n")
    for k, c in enumerate(compiled):
        out.append(_entry_point(prefix, k, c))
    return "\n".join(out)


def _entry_point(prefix: str, k: int, c: Built) -> str:
    """The C function of one spec: its failure sites, and a call of its entry with the
    addresses of its inputs (numbers too: the entry reads every input through a pointer) and
    outputs."""
    entry = f"diffc_entry_{k}"
    out = [f"void {entry}(int64_t *ctx, const void **ins, void **outs);"]
    out.append(f"static const diffc_site {entry}_sites[] = {{")
    out += [_site_row(s) for s in c.sites] or ['    {0, "", "", ""},']
    out += ["};", _prototype(prefix, c) + " {"]
    ins = []
    for x in c.ins:
        if x.type.rank == 0 and x.type.dtype is DType.BOOL:  # a byte in memory, whatever the caller's bool is
            out.append(f"    uint8_t {x.name}_byte = {x.name};")
            ins.append(f"&{x.name}_byte")
        else:
            ins.append(f"&{x.name}" if x.type.rank == 0 else x.name)
    out.append(f"    const void *ins[] = {{{', '.join(ins) or 'NULL'}}};")
    out.append(f"    void *outs[] = {{{', '.join(x.name for x in c.outs) or 'NULL'}}};")
    out.append(f"    return diffc_call({entry}, {c.arena}, {entry}_sites, ins, outs);")
    out.append("}\n")
    return "\n".join(out)


def _signature_text(c: Built) -> str:
    return f"{c.spec.label}({', '.join(f'{p}: {_type_text(t)}' for p, t in zip(c.params, c.arg_types))})"


def _type_text(t) -> str:
    if isinstance(t, Record):
        return "{" + ", ".join(f"{k}: {_type_text(v)}" for k, v in sorted(t.fields.items())) + "}"
    if isinstance(t, tuple):
        return "(" + ", ".join(map(_type_text, t)) + ("," if len(t) == 1 else "") + ")"
    return str(t)


def header(prefix: str, source_name: str, compiled: list[Built]) -> str:
    guard = f"{prefix.upper()}_H"
    out = [
        f"/* {prefix}.h: the C interface of lib{prefix}.so, made by `diffc build` from {source_name}.",
        "   Arrays are contiguous and row-major, of the shapes below; records are flattened by",
        "   sorted field name, tuples in order. Each function returns 0, or an error code whose",
        f"   message {prefix}_last_error() gives (kept per thread). */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdbool.h>",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f"#define {prefix.upper()}_OK 0",
    ]
    out += [f"#define {prefix.upper()}_ERR_{k} {v}" for k, v in ERROR_CODES.items()]
    out += ["", f"const char *{prefix}_last_error(void);", ""]
    for c in compiled:
        out.append(f"/* {_signature_text(c)} */")
        for x in c.ins + c.outs:
            if x.type.rank:
                macro = f"{prefix}_{c.spec.c_suffix}_{x.name}_SIZE".upper()
                out.append(f"#define {macro} {x.type.size} /* {x.name}: {x.type} */")
        out.append(_prototype(prefix, c) + ";")
        out.append("")
    out += ["#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {guard} */", ""]
    return "\n".join(out)


def _tree_json(tree: TreeDef, leaves) -> list:
    if tree.kind == "leaf":
        t = next(leaves)
        return ["leaf", t.dtype.value, list(t.shape)]
    kids = [_tree_json(c, leaves) for c in tree.children]
    return ["tuple", kids] if tree.kind == "tuple" else ["record", list(tree.names), kids]


def python_module(prefix: str, compiled: list[Built]) -> str:
    spec = []
    for c in compiled:
        in_leaves = iter(x.type for x in c.ins)
        spec.append(
            {
                "name": c.spec.c_suffix,
                "label": c.spec.label,
                "signature": _signature_text(c),
                "c_name": f"{prefix}_{c.spec.c_suffix}",
                "params": c.params,
                "in_tree": [_tree_json(t, in_leaves) for t in c.in_trees],
                "out_tree": _tree_json(c.out_tree, iter(x.type for x in c.outs)),
                "ins": [[x.type.dtype.value, list(x.type.shape)] for x in c.ins],
                "outs": [[x.type.dtype.value, list(x.type.shape)] for x in c.outs],
            }
        )
    text = (DATA / "module.py.in").read_text(encoding="utf-8")
    return text.replace("@PREFIX@", prefix).replace("@SPEC@", repr(json.dumps(spec)))


# --- the build ---------------------------------------------------------------------------------


def build(module, source_name: str, specs: list[FnSpec], types_by_name: dict, out_dir: Path, prefix: str) -> list[Path]:
    """Write lib<prefix>.so, <prefix>.h and <prefix>.py into out_dir; their paths."""
    cc = shutil.which("cc")
    if cc is None:
        raise UsageError("diffc build needs a C compiler: no `cc` on PATH")
    if not specs:
        raise UsageError("diffc build: give at least one --fn NAME (or grad:NAME, value_and_grad:NAME)")
    made: dict[str, FnSpec] = {}
    for spec in specs:
        if spec.c_suffix in made:
            first = made[spec.c_suffix].label
            raise UsageError(f"diffc build: --fn {first} and --fn {spec.label} both make {prefix}_{spec.c_suffix}")
        made[spec.c_suffix] = spec
    if prefix == "diffc" or prefix.startswith("diffc_"):  # (the runtime's names)
        raise UsageError(f"diffc build: the prefix {prefix} is diffc's own: choose another with --name")
    for s in specs:
        if s.c_suffix == "last_error":
            raise UsageError(f"--fn last_error: {prefix}_last_error is the library's error message function")
        if s.c_suffix.startswith("_") or s.c_suffix == "Error":  # (the Python module's own names)
            raise UsageError(f"--fn {s.label}: {prefix}.py names its own things Error and _NAME: rename `{s.name}`")
    compiled: list[Built] = []
    base = 0
    for k, spec in enumerate(specs):
        compiled.append(compile_spec(module, spec, types_by_name, prefix, k, base))
        base += len(compiled[-1].prints)
    try:
        return _link(compiled, source_name, out_dir, prefix, cc)
    except OSError as e:
        raise UsageError(f"diffc build: cannot write {e.filename or out_dir}: {e.strerror or e}") from None


def _link(compiled: list[Built], source_name: str, out_dir: Path, prefix: str, cc: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"lib{prefix}.so"
    with tempfile.TemporaryDirectory(prefix="diffc-build-") as tmp:
        work = Path(tmp)
        objects = []
        for k, c in enumerate(compiled):
            objects.append(work / f"{prefix}_{k}.o")
            objects[-1].write_bytes(c.obj)
        for name in sorted(set().union(*(c.kernels for c in compiled))):
            objects.append(work / f"{name}.o")
            objects[-1].write_bytes(kernel_object(name))
        (work / f"{prefix}.h").write_text(header(prefix, source_name, compiled), encoding="utf-8")
        src = work / f"{prefix}_lib.c"
        src.write_text(c_source(prefix, compiled), encoding="utf-8")
        exports = work / "exports.map"
        names = [f"{prefix}_last_error"] + [f"{prefix}_{c.spec.c_suffix}" for c in compiled]
        exports.write_text(f"{{ global: {'; '.join(names)}; local: *; }};\n", encoding="utf-8")
        command = [cc, "-O2", "-std=c11", "-fPIC", "-shared", "-o", str(lib), str(src), *map(str, objects)]
        command += [f"-Wl,--version-script={exports}", "-Wl,-z,defs", "-lm", "-pthread"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise UsageError(f"diffc build: the C compiler failed:\n{done.stderr.strip()}")
        h = out_dir / f"{prefix}.h"
        shutil.copyfile(work / h.name, h)
    py = out_dir / f"{prefix}.py"
    py.write_text(python_module(prefix, compiled), encoding="utf-8")
    return [lib, h, py]
