"""The command line: `diffc run | check | show | gradcheck | test | build | cache | repl | lsp`.

Exit status: 0 success, 1 a mistake in the program (printed as file:line:col with the
source line), 2 a bad command line. Nothing else escapes: an unexpected exception is
reported as an internal error with the place of the program being compiled."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, api, bigstack, testing
from .errors import DiffcError, UsageError
from .pipeline import PASSES
from .runtime import params
from .typesys import dtype_of_numpy

EXIT_OK, EXIT_PROGRAM, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # killed by SIGPIPE, as `yes | head -1` leaves `yes`
EXIT_INTERRUPTED = 128 + 2  # killed by SIGINT, as shells report it


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"diffc: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="diffc", description="Compile and run DFL programs as native code.")
    p.add_argument("--version", action="version", version=f"diffc {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    def common(sp):
        sp.add_argument("file", help="the .dfl program (- reads it from standard input)")
        sp.add_argument("--entry", default="main", help="the function to run (default: main)")
        sp.add_argument(
            "--arg",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="bind a parameter: a number, a JSON array, true/false, a .npy path, or a .npz "
            "path of a record or tuple written by --out or diffc.save",
        )

    r = sub.add_parser(
        "run",
        help="compile a program to native code and run it",
        description="Compile FILE's entry function (main) to native code, run it, print its value.",
    )
    common(r)
    shown = r.add_mutually_exclusive_group()  # (--out writes the value rather than print it)
    shown.add_argument("--json", action="store_true", help="print the value as one line of JSON")
    shown.add_argument(
        "--out",
        metavar="FILE.npz",
        help="write the value to FILE.npz (as diffc.save does) instead of printing it, for --arg p=FILE.npz",
    )
    r.add_argument("--time-passes", action="store_true", help="print the time of each compiler stage")
    r.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="run parallel loops and matrix products on N threads (default: DIFFC_THREADS, else all cores)",
    )
    c = sub.add_parser(
        "check",
        help="compile only, and report mistakes",
        description="Parse, resolve and type-check FILE; with --arg values, specialise main too.",
    )
    c.add_argument("file", help="the .dfl program (- reads it from standard input)")
    c.add_argument("--entry", default="main", help="the function to check (default: main)")
    c.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="as for run")
    s = sub.add_parser(
        "show",
        help="print a stage of the compiler's output",
        description="Print the AST, the typed IR or the LLVM IR of FILE's entry function.",
    )
    common(s)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--ast", action="store_true", help="the parsed program")
    g.add_argument("--ir", action="store_true", help="the typed SSA IR (the default)")
    g.add_argument("--llvm", action="store_true", help="LLVM IR before and after optimisation, and assembly")
    g.add_argument(
        "--grad",
        metavar="NAME",
        help="the derivative program of function NAME: forward with residuals, "
        "then backward, with source lines and what each loop tapes",
    )
    s.add_argument(
        "--after",
        metavar="PASS",
        choices=["specialise"] + [name for name, _ in PASSES],
        help="with --ir: stop after this pass (" + ", ".join(["specialise"] + [n for n, _ in PASSES]) + ")",
    )
    ca = sub.add_parser(
        "cache",
        help="the compile cache on disk: where it is, or empty it",
        description="Compiled machine code is kept on disk (DIFFC_CACHE_DIR, default ~/.cache/diffc; "
        "DIFFC_CACHE=0 turns it off) so that a new process does not compile again.",
    )
    ca.add_argument("action", choices=["info", "clear"], help="info: where and how big; clear: remove every entry")
    gc = sub.add_parser(
        "gradcheck",
        help="check a function's derivatives against finite differences",
        description="Draw random inputs of the declared (or --arg given) shapes, and compare grad, "
        "vjp and jvp of function NAME with central finite differences in f64, leaf by "
        "leaf. Exits 1 on a mismatch.",
    )
    gc.add_argument("file", help="the .dfl program (- reads it from standard input)")
    gc.add_argument("--fn", required=True, metavar="NAME", help="the function to check")
    gc.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="fix a parameter's value")
    gc.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    t = sub.add_parser(
        "test",
        help="run .dfl files that carry their expectations in comments",
        description="Check each .dfl file named (and every .dfl file under each folder named) against "
        "its directives: # expect:, # args:, # prints:, # error:, # grad-check:, # xfail: "
        "(docs/language.md, Testing programs). Prints one line per failure and a summary; "
        "exits 1 if any file fails.",
    )
    t.add_argument("paths", nargs="*", default=["."], metavar="PATH", help="files and folders (default: .)")
    t.add_argument("-v", "--verbose", action="store_true", help="print each failure in full, and each file passed")
    t.add_argument("--update", action="store_true", help="rewrite the # expect: lines from what diffc computes")
    bu = sub.add_parser(
        "build",
        help="compile functions and their gradients into a C library",
        description="Compile each --fn of FILE for the --arg types into libPREFIX.so, with PREFIX.h (the C "
        "interface: one function per --fn, error codes, PREFIX_last_error) and PREFIX.py (NumPy through "
        "ctypes). The library needs neither Python, diffc nor LLVM. PREFIX is FILE's name.",
    )
    bu.add_argument("file", help="the .dfl program")
    bu.add_argument(
        "--fn",
        action="append",
        default=[],
        metavar="SPEC",
        help="NAME, grad:NAME or value_and_grad:NAME (the gradient w.r.t. the first argument); repeatable",
    )
    bu.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="a parameter's type: f64[3,4], i64, bool[2], {w: f64[3,4], b: f64[3]}, (f64, f32[2]); or an example "
        "value as for run (a number, a JSON array, a .npy or .npz path)",
    )
    bu.add_argument("-o", "--out-dir", default=".", metavar="DIR", help="where to write the files (default: .)")
    bu.add_argument("--name", metavar="PREFIX", help="the C prefix of every name (default: FILE's name)")
    sub.add_parser(
        "repl",
        help="type definitions and expressions, and see their values",
        description="An interactive session: definitions (fn, let, import) and expressions, one entry at a "
        "time; :type, :ir, :grad, :load, :help, :quit (README, The command line).",
    )
    sub.add_parser(
        "lsp",
        help="a language server for editors, over standard input and output",
        description="Speak the Language Server Protocol on stdin/stdout: diagnostics as a .dfl file changes, "
        "hover on function names (needs pygls: pip install 'diffc[lsp]').",
    )
    return p


def parse_value(name: str, text: str, module: api.Module | None = None):
    """A --arg VALUE: a .npy path, a JSON number/array/bool, or else (given the module) a DFL
    expression evaluated in the program, such as a record made by one of its functions."""
    if text.endswith(".npy"):
        return read_npy(name, text)
    if text.endswith(".npz"):
        return params.load_tree(text, f"--arg {name}")
    if text.strip().lower().lstrip("+-") in ("inf", "infinity", "nan"):
        return float(text)  # as Python and NumPy spell them (JSON's Infinity and NaN work too)
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        if module is not None:
            try:
                return module.evaluate(text)
            except UsageError:
                raise
            except DiffcError as e:
                raise UsageError(
                    f"--arg {name}={text}: expected a number, true/false, a JSON array, a .npy path "
                    f"or a DFL expression of the program; as an expression: {e.message}"
                ) from None
        raise UsageError(
            f"--arg {name}={text}: expected a number, true/false, a JSON array like [1.0, 2.0], or a .npy path"
        ) from None
    if isinstance(v, list):
        try:
            a = np.array(v)
        except ValueError:
            raise UsageError(f"--arg {name}: the JSON array is ragged (rows of different lengths)") from None
        if a.dtype.kind not in "biuf":
            raise UsageError(f"--arg {name}: expected an array of numbers or booleans")
        return a
    if isinstance(v, bool | int | float):
        return v
    raise UsageError(f"--arg {name}={text}: expected a number, true/false, a JSON array, or a .npy path")


def read_npy(name: str, path: str) -> np.ndarray:
    """The array in a .npy file, after checking its header against the file: a damaged or
    truncated file, or one whose header claims more data than the file holds (745 GiB, say),
    is a UsageError before anything is allocated; so is a dtype DFL has no values of."""
    fail = f"--arg {name}: cannot read the array file {path}"
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:  # (a FIFO: no wait)
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise UsageError(f"{fail}: it is not a regular file")
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype.hasobject or dtype_of_numpy(dtype) is None:
                raise UsageError(f"{fail}: arrays of {dtype} are not supported (use float, int or bool)")
            if any(d < 0 for d in shape):
                raise UsageError(f"{fail}: its header announces the shape {shape}")
            need = math.prod(shape) * dtype.itemsize
            have = os.fstat(f.fileno()).st_size - f.tell()
            if have < need:
                raise UsageError(f"{fail}: its header announces {shape} {dtype} ({need} bytes) but it holds {have}")
            data = np.fromfile(f, dtype=dtype, count=math.prod(shape))
            return data.reshape(shape, order="F" if fortran else "C")
    except (OSError, ValueError) as e:
        raise UsageError(f"{fail}: {getattr(e, 'strerror', None) or e}") from None
    except MemoryError:  # (a sparse file as big as its header says)
        raise UsageError(f"{fail}: {shape} {dtype} does not fit in memory") from None


def given_args(module: api.Module, entry: str, pairs: list[str]) -> dict:
    """--arg pairs as {parameter name: value}, checked against the function's parameters."""
    fndef = module.ast.fns.get(entry)
    if fndef is None:
        have = ", ".join(module.ast.fns) or "none"
        message = f"the program has no function `{entry}` (it defines: {have})"
        raise UsageError(message, misspelt=(entry, module.ast.fns))
    names = [p.name for p in fndef.params]
    given = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--arg {pair}: expected NAME=VALUE")
        name, text = pair.split("=", 1)
        if name not in names:
            ps = ", ".join(names) or "no parameters"
            message = f"--arg {name}: `{entry}` has no parameter `{name}` (it takes {ps})"
            raise UsageError(message, misspelt=(name, names))
        given[name] = parse_value(name, text, module)
    return given


def bind_args(module: api.Module, entry: str, pairs: list[str]) -> list:
    given = given_args(module, entry, pairs)
    names = [p.name for p in module.ast.fns[entry].params]
    missing = [n for n in names if n not in given]
    if missing:
        raise UsageError(f"`{entry}` needs a value for parameter `{missing[0]}`: give it with --arg {missing[0]}=VALUE")
    return [given[n] for n in names]


def _load(path: str) -> api.Module:
    if path == "-":  # (imports are looked up in the current folder)
        raw = getattr(sys.stdin, "buffer", None)  # (bytes: the locale's decoding may mask bad ones)
        try:
            text = raw.read().decode("utf-8") if raw is not None else sys.stdin.read()
        except UnicodeDecodeError as e:
            raise UsageError(f"the program on standard input is not UTF-8 text (byte {e.start})") from None
        return api.compile(text, name="<stdin>")
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such file: {path}")
    if p.is_dir():
        raise UsageError(f"{path} is a folder, not a .dfl program")
    return api.load(path)


def cmd_run(a) -> int:
    from .pipeline import Timings

    if a.out is not None:  # (before the run: a typo should not cost a training run's result)
        if not a.out.endswith(".npz"):
            raise UsageError(f"--out {a.out}: the file of the value must end in .npz")
        if not os.path.isdir(os.path.dirname(a.out) or "."):
            raise UsageError(f"--out {a.out}: there is no folder {os.path.dirname(a.out)}")
    m = _load(a.file)
    args = bind_args(m, a.entry, a.arg)
    fn = m.function(a.entry)
    timings = Timings()
    t0 = time.perf_counter()
    arrays, key = fn.signature(*args)
    native, out_tree = fn.compiled(arrays, key, timings)
    t1 = time.perf_counter()
    from .runtime.values import to_python, value_json, value_text

    value = to_python(native(arrays), out_tree)
    timings["run"] = time.perf_counter() - t1
    if a.out is not None:
        params.save(a.out, value)
    else:
        print(value_json(value) if a.json else value_text(value))
    if a.time_passes:
        for stage, secs in timings.items():
            print(f"{stage:>22}: {secs * 1e3:9.2f} ms", file=sys.stderr)
        print(f"{'compile total':>22}: {(t1 - t0) * 1e3:9.2f} ms", file=sys.stderr)
    return EXIT_OK


def cmd_check(a) -> int:
    m = _load(a.file)
    if a.arg or (a.entry in m.ast.fns and not m.ast.fns[a.entry].params):
        from .pipeline import to_ir
        from .pytree import unflatten
        from .runtime.values import flatten_args, type_of

        args = bind_args(m, a.entry, a.arg)
        arrays, tree = flatten_args(tuple(args))
        to_ir(m.ast, a.entry, unflatten(tree, [type_of(x) for x in arrays]), values=arrays)
    print(f"{m.ast.source.name}: ok")
    return EXIT_OK


def cmd_show(a) -> int:
    from .pytree import unflatten
    from .runtime.values import flatten_args, type_of

    m = _load(a.file)
    if a.ast:
        from .syntax.parse import parse
        from .syntax.pretty import pretty

        print(pretty(parse(m.ast.source)))
        return EXIT_OK
    if a.grad:
        return show_grad(m, a.grad, a.arg)
    args = bind_args(m, a.entry, a.arg)
    arrays, tree = flatten_args(tuple(args))
    types = unflatten(tree, [type_of(x) for x in arrays])
    if a.llvm:
        from .pipeline import llvm_text

        raw, opt, asm = llvm_text(m.ast, a.entry, types, arrays)
        print("; ---- LLVM IR, as generated\n" + raw)
        print("; ---- LLVM IR, optimised\n" + opt)
        print("; ---- assembly\n" + asm)
        return EXIT_OK
    from .ir.printer import print_program
    from .pipeline import to_ir_static
    from .specialise import static_text

    prog, _, signature = to_ir_static(m.ast, a.entry, types, after=a.after, values=arrays)
    static = static_text([p.name for p in m.ast.fns[a.entry].params], signature)
    if static:
        print(f"# static arguments (compiled for these values): {static}")
    print(print_program(prog))
    return EXIT_OK


def show_grad(m: api.Module, name: str, pairs: list[str]) -> int:
    """The derivative program of `name` w.r.t. its float arguments."""
    import numpy as np

    from .gradcheck import draw_args
    from .ir.printer import print_program
    from .pipeline import to_ir
    from .pytree import unflatten
    from .runtime.values import flatten_args, type_of

    args = draw_args(m, name, given_args(m, name, pairs), np.random.default_rng(0))
    floats = tuple(k for k, a in enumerate(args) if any(x.dtype.kind == "f" for x in flatten_args((a,))[0]))
    arrays, tree = flatten_args(tuple(args))
    types = unflatten(tree, [type_of(x) for x in arrays])
    prog, _ = to_ir(m.ast, name, types, transform=("grad", floats, True), values=arrays)
    print(
        f"# value_and_grad of `{name}` w.r.t. arguments {floats}: the forward pass (saving residuals) comes "
        "first, then the backward pass"
    )
    print(print_program(prog, lines_of=True))
    return EXIT_OK


def cmd_build(a) -> int:
    from . import build
    from .pytree import unflatten
    from .runtime.values import flatten_args, type_of

    m = _load(a.file)
    specs = [build.FnSpec.parse(text) for text in a.fn]
    types = {}
    for pair in a.arg:
        name, eq, text = pair.partition("=")
        if not eq:
            raise UsageError(f"--arg {pair}: expected NAME=TYPE")
        t = build.parse_type(text)
        if t is None:  # an example value
            arrays, tree = flatten_args((parse_value(name, text, m),))
            t = unflatten(tree, [type_of(x) for x in arrays])[0]
        types[name] = t
    prefix = a.name or build.library_prefix(a.file)
    if not prefix.isidentifier() or not prefix.isascii():
        raise UsageError(f"--name {prefix}: expected a C identifier")
    for path in build.build(m.ast, m.ast.source.name, specs, types, Path(a.out_dir), prefix):
        print(path)
    return EXIT_OK


def cmd_cache(a) -> int:
    from .runtime import cache

    d = cache.cache_dir()
    if d is None:
        print("the compile cache is off (DIFFC_CACHE=0, or a folder others can write)")
    elif a.action == "clear":
        print(f"removed {cache.clear()} entries from {d}")
    else:
        entries = cache.entries(d)
        print(f"{d}: {len(entries)} entries, {sum(p.stat().st_size for p in entries) / 1e6:.1f} MB")
    return EXIT_OK


def cmd_gradcheck(a) -> int:
    from .gradcheck import gradcheck

    m = _load(a.file)
    lines, ok = gradcheck(m, a.fn, given_args(m, a.fn, a.arg), a.seed)
    print("\n".join(lines))
    print(f"{a.fn}: {'all derivatives agree with finite differences' if ok else 'MISMATCH'}")
    return EXIT_OK if ok else EXIT_PROGRAM


def cmd_test(a) -> int:
    """One line per file that fails (and, with -v, its details), then the counts."""
    files = testing.dfl_files(a.paths)
    if not files:
        raise UsageError(f"no .dfl files in {' '.join(a.paths)}")
    counts = dict.fromkeys(testing.Status, 0)
    for path in files:
        outcome = testing.check_file(path, update=a.update)
        counts[outcome.status] += 1
        if outcome.status in (testing.Status.FAILED, testing.Status.XPASSED):
            print(f"FAIL {outcome.summary_line()}")
            if a.verbose and "\n" in outcome.message:
                print("\n".join("    " + line for line in outcome.message.splitlines()[1:]))
        elif a.verbose:
            print(f"{outcome.status.value.upper()} {path}")
    failed = counts[testing.Status.FAILED] + counts[testing.Status.XPASSED]
    parts = [f"{counts[testing.Status.PASSED]} passed", f"{failed} failed"]
    parts += [f"{counts[s]} {s.value}" for s in (testing.Status.XFAILED, testing.Status.SKIPPED) if counts[s]]
    print(", ".join(parts))
    return EXIT_PROGRAM if failed else EXIT_OK


def cmd_repl(a) -> int:
    from . import repl

    return repl.run()


def cmd_lsp(a) -> int:
    from . import lsp

    return lsp.serve()


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd is None:  # `diffc` alone: what it can do, rather than a complaint
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        os.environ["DIFFC_THREADS"] = str(args.threads)  # (read when the threads start)
    try:
        commands = {
            "run": cmd_run,
            "check": cmd_check,
            "show": cmd_show,
            "gradcheck": cmd_gradcheck,
            "test": cmd_test,
            "cache": cmd_cache,
            "build": cmd_build,
            "repl": cmd_repl,
            "lsp": cmd_lsp,
        }
        # (the repl and the server stay on the main thread, where Ctrl-C arrives, and compile
        # on workers of their own; a Ctrl-C there ends one entry, not the session)
        interactive = args.cmd in ("repl", "lsp")
        status = commands[args.cmd](args) if interactive else bigstack.run(commands[args.cmd], args)
        sys.stdout.flush()  # (a failure to write is reported here, not at the interpreter's exit)
        return status
    except UsageError as e:
        print(f"diffc: error: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except DiffcError as e:
        sys.stdout.flush()
        print(e.render(), file=sys.stderr)
        return EXIT_PROGRAM
    except RecursionError:
        print(
            f"{getattr(args, 'file', 'diffc')}: error: the program is nested too deeply for the compiler",
            file=sys.stderr,
        )
        return EXIT_PROGRAM
    except KeyboardInterrupt:  # Ctrl-C, in Python or in native code (See Note [Interrupts] in lower/emit.py)
        print("diffc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        if e.filename is not None:  # a file of diffc's, not standard output
            return _internal_error(args, e)
        return _output_failed(e)
    except Exception as e:  # a bug in diffc: say so in one line, never a traceback
        return _internal_error(args, e)


def _internal_error(args, e: Exception) -> int:
    """A bug in diffc: one line naming it, never a traceback (unless DIFFC_DEBUG is set)."""
    if os.environ.get("DIFFC_DEBUG"):
        raise e
    print(f"{getattr(args, 'file', 'diffc')}: internal error in diffc: {type(e).__name__}: {e}", file=sys.stderr)
    print("please report this with the program that caused it", file=sys.stderr)
    return EXIT_PROGRAM


def _output_failed(e: OSError) -> int:
    """Standard output cannot be written. A reader that went away (`diffc run p.dfl | head -1`)
    ends diffc quietly with the status of a SIGPIPE, as other Unix tools do; anything else (a
    full disk) is one line on stderr and exit 1. Either way what is still buffered is dropped
    rather than written, and failing, at the interpreter's exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    if isinstance(e, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    print(f"diffc: error: cannot write the output: {e.strerror or e}", file=sys.stderr)
    return EXIT_PROGRAM
