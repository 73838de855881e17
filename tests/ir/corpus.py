"""The programs whose IR the round-trip tests read back: every program of examples/,
tests/programs/ and benchmarks/workloads/, at each stage of the pipeline, and their gradients
(as `diffc show --ir` and `diffc show --grad` make them)."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

import diffc
from diffc.cli import given_args
from diffc.gradcheck import draw_args
from diffc.pipeline import PASSES, to_ir
from diffc.pytree import LEAF, unflatten
from diffc.runtime.values import flatten_args, type_of
from diffc.testing import json_argument, main_args

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["specialise"] + [name for name, _ in PASSES]


def _gradcheck_lines(path: Path) -> list[tuple[str, list[str]]]:
    """The `# gradcheck: --fn F --arg ...` lines of an example: (function, --arg pairs)."""
    found = []
    for line in path.read_text().splitlines():
        if line.startswith("# gradcheck:"):
            words = shlex.split(line[len("# gradcheck:") :])
            fn = words[words.index("--fn") + 1] if "--fn" in words else "main"
            found.append((fn, [words[k + 1] for k, w in enumerate(words) if w == "--arg"]))
    return found


def _types(args):
    arrays, tree = flatten_args(tuple(args))
    return unflatten(tree, [type_of(a) for a in arrays])


def _grad_transform(args):
    floats = tuple(k for k, a in enumerate(args) if any(x.dtype.kind == "f" for x in flatten_args((a,))[0]))
    return ("grad", floats, True)


def cases() -> list[tuple[str, object]]:
    """(name, make) pairs; make() returns the Program. Named `folder/program:stage`, and
    `:grad` (value_and_grad of main w.r.t. its float arguments, where main returns a float
    number; of each workload's loss w.r.t. its params) or `:grad-FN` (an example's
    `# gradcheck:` line), each also as traced (`:grad:specialise`)."""
    found = []
    files = sorted(ROOT.glob("examples/*.dfl")) + sorted(ROOT.glob("tests/programs/*.dfl"))
    for path in files:
        m = diffc.load(path)
        if "main" not in m.ast.fns:
            continue
        given = {k: json_argument(v) for k, v in main_args(path).items()}
        names = [p.name for p in m.ast.fns["main"].params]
        args = [given[n] for n in names]
        for stage in STAGES:
            found.append((f"{path.parent.name}/{path.stem}:{stage}", _maker(m, "main", args, stage)))
        if _returns_float_scalar(m, args) and any(x.dtype.kind == "f" for x in flatten_args(tuple(args))[0]):
            found += _grad(f"{path.parent.name}/{path.stem}:grad", m, "main", args, _grad_transform(args))
        for fn, pairs in _gradcheck_lines(path):
            args = draw_args(m, fn, given_args(m, fn, pairs), np.random.default_rng(0))
            found += _grad(f"{path.parent.name}/{path.stem}:grad-{fn}", m, fn, args, _grad_transform(args))
    from benchmarks.data import NAMES, data

    for name in NAMES:
        m = diffc.load(ROOT / "benchmarks" / "workloads" / f"{name}.dfl")
        params, inputs = data(name)
        args = [*params, *inputs]
        for stage in STAGES:
            found.append((f"workloads/{name}:{stage}", _maker(m, "loss", args, stage)))
        transform = ("grad", tuple(range(len(params))), True)
        found += _grad(f"workloads/{name}:grad", m, "loss", args, transform)
    return found


def _returns_float_scalar(m, args) -> bool:
    """Whether main can be differentiated: it returns one float number."""
    prog, tree = to_ir(m.ast, "main", _types(args), after="specialise")
    outs = prog.main.body.out_types
    return tree == LEAF and len(outs) == 1 and outs[0].rank == 0 and outs[0].dtype.is_float


def _grad(name, m, fn, args, transform):
    """A gradient program, optimised (NAME) and as traced (NAME:specialise)."""
    return [
        (name, _maker(m, fn, args, None, transform)),
        (f"{name}:specialise", _maker(m, fn, args, "specialise", transform)),
    ]


def optimised_name(name: str) -> str:
    """The name of the optimised program of a `...:specialise` case."""
    base = name.removesuffix(":specialise")
    return base if ":grad" in base else f"{base}:dce"


def _maker(m, fn, args, stage, transform=()):
    def make():
        prog, _ = to_ir(m.ast, fn, _types(args), after=stage, transform=transform)
        return prog

    return make
