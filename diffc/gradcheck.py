"""`diffc gradcheck`: compare a function's compiled derivatives (grad, vjp, jvp) with central
finite differences in f64, leaf by leaf (record field, tuple slot), at random inputs."""

from __future__ import annotations

import numpy as np

from . import api
from .errors import UsageError
from .pytree import flatten, unflatten
from .runtime.values import to_array

STEP = 1e-6
TOLERANCE = 1e-5
ELEMENTWISE_LIMIT = 16  # leaves up to this size are checked element by element


def _leaf_paths(name, value):
    """(path, leaf) pairs of an argument, named like `p.w` or `t[1]`."""
    if isinstance(value, dict):
        for k in sorted(value):
            yield from _leaf_paths(f"{name}.{k}", value[k])
    elif isinstance(value, tuple):
        for k, v in enumerate(value):
            yield from _leaf_paths(f"{name}[{k}]", v)
    else:
        yield name, value


def draw_args(module: api.Module, fn_name: str, given: dict, rng) -> list:
    """Arguments for fn_name: given values, else random normal values of the declared shape."""
    fndef = module.ast.fns[fn_name]
    dims = {}
    for p in fndef.params:
        if p.name in given and p.ann is not None and p.ann.dims is not None:
            for d, n in zip(p.ann.dims, np.shape(given[p.name])):
                if isinstance(d, str):
                    dims[d] = n
    args = []
    for p in fndef.params:
        if p.name in given:
            args.append(given[p.name])
            continue
        if p.ann is None:
            raise UsageError(
                f"parameter `{p.name}` of `{fn_name}` has no declared type: give it with --arg {p.name}=VALUE"
            )
        shape = []
        for d in p.ann.dims or ():
            if isinstance(d, str) and d not in dims:
                raise UsageError(
                    f"dimension `{d}` of parameter `{p.name}` is not known: give an argument that has it with --arg"
                )
            shape.append(dims[d] if isinstance(d, str) else d)
        if p.ann.dtype == "i64":
            args.append(rng.integers(0, 3, size=shape) if shape else int(rng.integers(0, 3)))
        elif p.ann.dtype == "bool":
            args.append(rng.random(shape) < 0.5 if shape else bool(rng.random() < 0.5))
        else:
            v = rng.normal(size=shape)
            args.append(v if shape else float(v))
    return args


def _flat(args):
    leaves, tree = flatten(tuple(args), is_record=lambda v: isinstance(v, dict), record_items=lambda v: v.items())
    return [to_array(x).astype(np.float64) if to_array(x).dtype.kind == "f" else to_array(x) for x in leaves], tree


def _rebuild(tree, leaves):
    return unflatten(
        tree, [x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x for x in leaves], make_record=dict
    )


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.max(np.abs(a), initial=0)), float(np.max(np.abs(b), initial=0)), 1.0)
    return float(np.max(np.abs(a - b), initial=0)) / scale


def gradcheck(module: api.Module, fn_name: str, given: dict, seed: int = 0) -> tuple[list[str], bool]:
    """Lines of a report and whether every check passed."""
    rng = np.random.default_rng(seed)
    fndef = module.ast.fns[fn_name]
    args = draw_args(module, fn_name, given, rng)
    f = module.function(fn_name)
    leaves, tree = _flat(args)
    names = [n for p, a in zip(fndef.params, args) for n, _ in _leaf_paths(p.name, a)]
    floats = [k for k, x in enumerate(leaves) if x.dtype.kind == "f"]
    if not floats:
        raise UsageError(f"`{fn_name}` has no float arguments to differentiate")

    def call(ls):
        return f(*_rebuild(tree, ls))

    y = call(leaves)
    y_leaves, _ = _flat((y,))
    scalar = len(y_leaves) == 1 and y_leaves[0].ndim == 0 and y_leaves[0].dtype.kind == "f"

    def along(direction):  # central difference of every output leaf along a direction
        plus = [x + STEP * d if d is not None else x for x, d in zip(leaves, direction)]
        minus = [x - STEP * d if d is not None else x for x, d in zip(leaves, direction)]
        yp, _ = _flat((call(plus),))
        ym, _ = _flat((call(minus),))
        return [(a - b) / (2 * STEP) for a, b in zip(yp, ym)]

    lines, ok = [], True

    def report(kind, name, err):
        nonlocal ok
        good = err <= TOLERANCE
        ok &= good
        lines.append(f"{kind:5} {name:24} relative error {err:9.2e}  {'ok' if good else 'MISMATCH'}")

    float_args = tuple(k for k, a in enumerate(args) if any(x.dtype.kind == "f" for x in _flat((a,))[0]))
    u = [rng.normal(size=x.shape) for x in y_leaves]
    ct = _rebuild(_flat((y,))[1], u)[0] if not scalar else 1.0
    vjp_cts, _ = _flat(api.vjp(f)(*args, ct))
    vjp_by_leaf = dict(zip(range(len(leaves)), vjp_cts))
    if scalar:
        g = api.grad(f, float_args)(*[a for a in args])
        g_leaves, _ = _flat(g)
        grad_by_leaf = dict(zip([k for k in range(len(leaves)) if k in floats], g_leaves))
    for k in floats:
        x = leaves[k]
        if x.size <= ELEMENTWISE_LIMIT:  # every partial derivative
            num = np.zeros(x.shape)
            for idx in np.ndindex(x.shape):
                d = [None] * len(leaves)
                d[k] = np.zeros(x.shape)
                d[k][idx] = 1.0
                num[idx] = sum(float(np.sum(du * uu)) for du, uu in zip(along(d), u if not scalar else [1.0]))
            if scalar:
                report("grad", names[k], _rel(grad_by_leaf[k], num))
            report("vjp", names[k], _rel(vjp_by_leaf[k], num))
        else:  # one random direction
            d = [None] * len(leaves)
            d[k] = rng.normal(size=x.shape)
            num = sum(float(np.sum(du * uu)) for du, uu in zip(along(d), u if not scalar else [1.0]))
            if scalar:
                report("grad", names[k], _rel(float(np.sum(grad_by_leaf[k] * d[k])), num))
            report("vjp", names[k], _rel(float(np.sum(vjp_by_leaf[k] * d[k])), num))
    v = [rng.normal(size=x.shape) if k in floats else np.zeros(x.shape, x.dtype) for k, x in enumerate(leaves)]
    tangents = _rebuild(tree, v)
    _, dy = api.jvp(f)(*args, *tangents)
    dy_leaves, _ = _flat((dy,))
    num = along([vv if k in floats else None for k, vv in enumerate(v)])
    report("jvp", "(all arguments)", max(_rel(a, b) for a, b in zip(dy_leaves, num)))
    return lines, ok
