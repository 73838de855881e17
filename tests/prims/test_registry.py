"""The registry test (style.md, practice 2): walk `all_prims()` and check every primitive.

1. Every primitive has a shape rule and a lowering, and a derivative rule or a `nondiff` mark.
2. Every primitive is checked somewhere: elementwise, reduction, shape and linalg primitives by
   the NumPy table below; the others are listed in TESTED_ELSEWHERE with the test that runs them.
   A new primitive fails `test_every_primitive_is_checked` until it joins one or the other.
3. Each row of the table compiles a tiny DFL program through `diffc.compile` with array
   arguments (so nothing is known at compile time and the native lowering runs), checks that
   the primitive really is in the program's IR, and compares the result with NumPy.
"""

from __future__ import annotations

import itertools
import warnings
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from support import reference as R
from support.native import ir_of, module, prim_names

from diffc.prims import core, elementwise, linalg, reduce, shape

PRIMS = core.all_prims()

FAMILIES = {"elementwise": elementwise, "reduce": reduce, "shape": shape, "linalg": linalg}


def family_prims() -> set[str]:
    return {v.name for m in FAMILIES.values() for v in vars(m).values() if isinstance(v, core.Prim)}


# Primitives outside the NumPy table, and where their lowering is checked.
TESTED_ELSEWHERE = {
    "copy": "lower/test_ir_lowering.py (an AD-internal identity, built directly as IR)",
    "print": "programs/print_order.dfl, runtime/test_values.py",
    "map": "programs/map.dfl, comprehensions.dfl, lower/test_views.py",
    "scan": "programs/fold_scan.dfl, unfold_iterate.dfl, lower/test_llvm.py",
    "while": "programs/while_loops.dfl",
    "count": "ad/test_iterate_dynamic.py (iterate with a run-time count, a negative one)",
    "cond": "programs/conditionals.dfl",
    "call": "programs/recursion.dfl, errors/infinite_recursion.dfl",
    "checkpoint": "test_registry.py::test_structured_ad_primitives_lower",
    "custom_vjp": "test_registry.py::test_structured_ad_primitives_lower",
    "random_bits": "prims/test_random.py",
    "random_uniform": "prims/test_random.py",
    "random_normal": "prims/test_random.py",
    "random_int": "prims/test_random_draws.py (randint against the Threefry reference)",
    "linrec": "prims/test_cumulative.py (cumsum and cumprod against NumPy)",
    "cumargmax": "prims/test_cumulative.py (cummax against NumPy)",
    "argsort": "prims/test_sort.py (sort, argsort, top_k against NumPy), prims/test_random_draws.py",
    "tape_pack": "test_registry.py::test_structured_ad_primitives_lower (grad through recursion)",
    "tape_unpack": "test_registry.py::test_structured_ad_primitives_lower (grad through recursion)",
    "acc_new": "test_registry.py::test_structured_ad_primitives_lower (grad w.r.t. data a recursion reads)",
    "acc_add": "test_registry.py::test_structured_ad_primitives_lower (grad w.r.t. data a recursion reads)",
    "acc_add_at": "test_registry.py::test_structured_ad_primitives_lower (grad w.r.t. data a recursion reads)",
    "acc_take": "test_registry.py::test_structured_ad_primitives_lower (grad w.r.t. data a recursion reads)",
    "while_tape": "test_registry.py::test_structured_ad_primitives_lower (grad through while)",
    "while_untape": "test_registry.py::test_structured_ad_primitives_lower (grad through while)",
}


# --- 1. every primitive has its rules -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRIMS))
def test_primitive_has_shape_rule_and_lowering(name):
    p = PRIMS[name]
    assert p.name == name
    assert callable(p.shape), f"{name} has no shape rule"
    assert callable(p.lower), f"{name} has no lowering"


# Made only inside a recursive function's .fwd and .bwd, which are never differentiated: no
# rule and no nondiff mark (a nondiff mark would silently give zero).
SECOND_ORDER_REFUSED = {"tape_pack", "tape_unpack", "acc_new", "acc_add", "acc_add_at", "acc_take"}


@pytest.mark.parametrize("name", sorted(PRIMS))
def test_primitive_is_differentiable_or_marked(name):
    p = PRIMS[name]
    if name in SECOND_ORDER_REFUSED:
        assert not p.nondiff and p.vjp is None and p.jvp is None and p.jvp_full is None
        return
    assert p.nondiff or p.vjp is not None or p.jvp is not None or p.jvp_full is not None, (
        f"{name} has no derivative rule and is not marked nondiff"
    )


def test_registry_names_are_unique_and_complete():
    assert len(PRIMS) == len({id(p) for p in PRIMS.values()})
    assert core.get("add") is PRIMS["add"]
    with pytest.raises(ValueError, match="declared twice"):
        core.primitive("add", shape=lambda ts: ts)


# --- 2. the NumPy table ------------------------------------------------------------------------------


@dataclass
class Case:
    """One check of a primitive: `fn f(params) = expr` against `ref` on `args(rng)`."""

    prim: str
    params: str
    expr: str
    args: Callable[[np.random.Generator], tuple]
    ref: Callable[..., object]
    rtol: float = 1e-12
    label: str = ""
    xfail: str = ""  # a known diffc bug: the row is a strict xfail

    @property
    def source(self) -> str:
        return f"fn f({self.params}) = {self.expr}\n"

    @property
    def id(self) -> str:
        return f"{self.prim}:{self.label or self.expr}"


def _floats(dtype, lo=-3.0, hi=3.0, nonzero=False):
    def make(rng, shp):
        x = rng.uniform(lo, hi, size=shp)
        if nonzero:
            x = np.where(np.abs(x) < 0.25, 0.5, x)
        return np.asarray(x, dtype=dtype)[()]  # 0-d arrays become NumPy scalars

    return make


def _ints(lo=-20, hi=20, nonzero=False):
    def make(rng, shp):
        x = rng.integers(lo, hi + 1, size=shp)
        if nonzero:
            x = np.where(x == 0, 3, x)
        return np.asarray(x, dtype=np.int64)[()]

    return make


def _bools(rng, shp):
    return np.asarray(rng.random(shp) < 0.5)[()]


BINARY_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 4)), ((), (5,)), ((), ())]
UNARY_SHAPES = [(7,), (2, 3), ()]

F64, F32 = np.float64, np.float32
FLOAT_RTOL = {F64: 1e-12, F32: 2e-6}


def binary_cases(prim, op, ref, kinds, shapes=BINARY_SHAPES):
    """kinds: (label, maker for x, maker for y, rtol)."""
    cases = []
    for (label, mx, my, rtol), (sx, sy) in itertools.product(kinds, shapes):
        cases.append(
            Case(
                prim,
                "x, y",
                op,
                lambda rng, mx=mx, my=my, sx=sx, sy=sy: (mx(rng, sx), my(rng, sy)),
                ref,
                rtol,
                f"{label} {sx}{sy}",
            )
        )
    return cases


def unary_cases(prim, expr, ref, kinds, shapes=UNARY_SHAPES):
    cases = []
    for (label, mx, rtol), sx in itertools.product(kinds, shapes):
        cases.append(Case(prim, "x", expr, lambda rng, mx=mx, sx=sx: (mx(rng, sx),), ref, rtol, f"{label} {sx}"))
    return cases


def float_kinds(**kw):
    return [(np.dtype(d).name, _floats(d, **kw), FLOAT_RTOL[d]) for d in (F64, F32)]


def numeric_pairs(fkw=None, ikw=None, ykw=None, iykw=None):
    fkw, ikw = fkw or {}, ikw or {}
    ykw = ykw if ykw is not None else fkw
    iykw = iykw if iykw is not None else ikw
    return [(np.dtype(d).name, _floats(d, **fkw), _floats(d, **ykw), FLOAT_RTOL[d]) for d in (F64, F32)] + [
        ("int64", _ints(**ikw), _ints(**iykw), 0)
    ]


CASES: list[Case] = []

# elementwise arithmetic, on f64, f32 and i64, with broadcasting
CASES += binary_cases("add", "x + y", np.add, numeric_pairs())
CASES += binary_cases("sub", "x - y", np.subtract, numeric_pairs())
CASES += binary_cases("mul", "x * y", np.multiply, numeric_pairs())
CASES += binary_cases("div", "x / y", np.divide, numeric_pairs(ykw={"nonzero": True})[:2])


def _with_edges(dtype, edges):
    """_floats with some elements replaced by the given edge values (zeros, infinities, NaN)."""

    def make(rng, shp):
        x = np.array(_floats(dtype)(rng, shp), dtype=dtype)
        flat = x.reshape(-1)
        picks = rng.random(flat.shape) < 0.4
        flat[picks] = rng.choice(np.array(edges, dtype=dtype), size=int(picks.sum()))
        return x[()]

    return make


# guarded_mul (a derivative's product, only made by AD): forward mode along x makes x * y,
# exactly 0 where x is 0 even if y is inf or NaN
CASES += binary_cases(
    "guarded_mul",
    "jvp(fn(a) => a * y, (y,), (x,)).1",
    lambda x, y: np.where(x == 0, np.zeros_like(x * y), x * y),
    [(np.dtype(d).name, _with_edges(d, [0.0]), _with_edges(d, [np.inf, -np.inf, np.nan, 0.0]), 0) for d in (F64, F32)],
    shapes=[((3, 4), (3, 4)), ((), ())],
)
CASES += binary_cases(
    "floordiv",
    "x // y",
    np.floor_divide,
    numeric_pairs(ykw={"nonzero": True}, iykw={"lo": -5, "hi": 5, "nonzero": True}),
)
CASES += binary_cases(
    "mod", "x % y", np.mod, numeric_pairs(ykw={"nonzero": True}, iykw={"lo": -5, "hi": 5, "nonzero": True})
)
CASES += binary_cases(
    "pow",
    "x ** y",
    np.power,
    numeric_pairs(
        fkw={"lo": 0.1, "hi": 3.0}, ykw={"lo": -2.0, "hi": 2.0}, ikw={"lo": -4, "hi": 4}, iykw={"lo": 0, "hi": 5}
    ),
)
CASES += binary_cases(
    "pow",
    "x ** y",
    R.ipow,
    [("int64 negative exponents", _ints(lo=-3, hi=3), _ints(lo=-4, hi=4), 0)],
    BINARY_SHAPES[:3],
)
CASES += binary_cases("max", "maximum(x, y)", np.maximum, numeric_pairs())
CASES += unary_cases("max", "relu(x)", R.relu, float_kinds() + [("int64", _ints(), 0)])
CASES += binary_cases("min", "minimum(x, y)", np.minimum, numeric_pairs())
CASES += unary_cases("neg", "-x", np.negative, float_kinds() + [("int64", _ints(), 0)])
CASES += unary_cases("abs", "abs(x)", np.abs, float_kinds() + [("int64", _ints(), 0)])
CASES += unary_cases("exp", "exp(x)", np.exp, float_kinds())
CASES += unary_cases("log", "log(x)", np.log, float_kinds(lo=0.01, hi=10.0))
CASES += unary_cases("log1p", "log1p(x)", np.log1p, float_kinds(lo=-0.9, hi=10.0))
CASES += unary_cases("sqrt", "sqrt(x)", np.sqrt, float_kinds(lo=0.0, hi=10.0))
CASES += unary_cases("sin", "sin(x)", np.sin, float_kinds())
CASES += unary_cases("cos", "cos(x)", np.cos, float_kinds())
CASES += unary_cases("tanh", "tanh(x)", np.tanh, float_kinds())
CASES += unary_cases("sigmoid", "sigmoid(x)", R.sigmoid, float_kinds(lo=-40.0, hi=40.0))
CASES += unary_cases("erf", "erf(x)", R.erf, float_kinds())


# rounding, sign, tan, and the float tests; halves are the ties of round (half to even)
def _halves(dtype):
    return lambda rng, shp: (rng.integers(-9, 10, size=shp) / 2).astype(dtype)[()]


for _fn, _ref in [("floor", np.floor), ("ceil", np.ceil), ("round", np.round)]:
    CASES += unary_cases(_fn, f"{_fn}(x)", _ref, float_kinds(lo=-9.0, hi=9.0))
    CASES += unary_cases(_fn, f"{_fn}(x)", _ref, [(f"{np.dtype(d).name} halves", _halves(d), 0) for d in (F64, F32)])
CASES += unary_cases("sign", "sign(x)", np.sign, float_kinds() + [("int64", _ints(lo=-2, hi=2), 0)])
_extremes = [("int64 extremes", lambda rng, s: np.array([-(2**63), 2**63 - 1, 0]), 0)]
CASES += unary_cases("sign", "sign(x)", np.sign, _extremes)
CASES += unary_cases("tan", "tan(x)", np.tan, float_kinds(lo=-1.5, hi=1.5))
CASES += unary_cases("tan", "tan(x)", np.tan, [("float64 wide", _floats(F64, lo=-100.0, hi=100.0), 1e-12)])
CASES += unary_cases("isnan", "isnan(x)", np.isnan, float_kinds())
CASES += unary_cases("isfinite", "isfinite(x)", np.isfinite, float_kinds())
CASES += binary_cases("max", "clip(x, 0.5, y)", lambda x, y: np.clip(x, 0.5, y), numeric_pairs()[:2])
CASES += binary_cases("min", "clip(x, y, 1.0)", lambda x, y: np.clip(x, y, 1.0), numeric_pairs()[:2])
CASES += binary_cases("min", "clip(x, y - 1, y)", lambda x, y: np.clip(x, y - 1, y), numeric_pairs()[2:])
CASES += binary_cases("max", "max(x, y)", np.maximum, numeric_pairs(), BINARY_SHAPES[:2])
CASES += binary_cases("min", "min(x, y)", np.minimum, numeric_pairs(), BINARY_SHAPES[:2])

# domain edges: zeros, infinities and NaN among ordinary values; ties for maximum and minimum
EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan]
_edge_kinds = [(f"{np.dtype(d).name} edges", _with_edges(d, EDGES), FLOAT_RTOL[d]) for d in (F64, F32)]
for _prim, _expr, _ref in [
    ("exp", "exp(x)", np.exp),
    ("log", "log(x)", np.log),
    ("log1p", "log1p(x)", np.log1p),
    ("sqrt", "sqrt(x)", np.sqrt),
    ("sin", "sin(x)", np.sin),
    ("cos", "cos(x)", np.cos),
    ("tanh", "tanh(x)", np.tanh),
    ("sigmoid", "sigmoid(x)", R.sigmoid),
    ("erf", "erf(x)", R.erf),
    ("abs", "abs(x)", np.abs),
    ("max", "relu(x)", R.relu),
]:
    CASES += unary_cases(_prim, _expr, _ref, _edge_kinds, UNARY_SHAPES[:1])
for _prim, _expr, _ref in [
    ("floor", "floor(x)", np.floor),
    ("ceil", "ceil(x)", np.ceil),
    ("round", "round(x)", np.round),
    ("sign", "sign(x)", np.sign),
    ("tan", "tan(x)", np.tan),
    ("isnan", "isnan(x)", np.isnan),
    ("isfinite", "isfinite(x)", np.isfinite),
    ("max", "clip(x, 0.5, 1.0)", lambda x: np.clip(x, 0.5, 1.0)),
]:
    CASES += unary_cases(_prim, _expr, _ref, _edge_kinds, UNARY_SHAPES[:1])
_tie_kinds = [(f"{np.dtype(d).name} ties", _with_edges(d, [1.0]), _with_edges(d, [1.0]), 0) for d in (F64, F32)]
CASES += binary_cases("max", "maximum(x, y)", np.maximum, _tie_kinds, BINARY_SHAPES[:1])
CASES += binary_cases("min", "minimum(x, y)", np.minimum, _tie_kinds, BINARY_SHAPES[:1])
_edge_pairs = [(n, m, m, r) for n, m, r in _edge_kinds]
for _prim, _expr, _ref in [("mul", "x * y", np.multiply), ("div", "x / y", np.divide), ("pow", "x ** y", np.power)]:
    CASES += binary_cases(_prim, _expr, _ref, _edge_pairs, BINARY_SHAPES[:1])

# comparisons and logic: small integer values so that equality happens
_small = {"lo": -2, "hi": 2}
_small_f = [
    (
        np.dtype(d).name,
        lambda rng, s, d=d: _ints(**_small)(rng, s).astype(d)[()],
        lambda rng, s, d=d: _ints(**_small)(rng, s).astype(d)[()],
        0,
    )
    for d in (F64, F32)
]
_cmp_kinds = _small_f + [("int64", _ints(**_small), _ints(**_small), 0)]
for _prim, _op, _ref in [
    ("lt", "<", np.less),
    ("le", "<=", np.less_equal),
    ("gt", ">", np.greater),
    ("ge", ">=", np.greater_equal),
    ("eq", "==", np.equal),
    ("ne", "!=", np.not_equal),
]:
    CASES += binary_cases(_prim, f"x {_op} y", _ref, _cmp_kinds)
CASES += binary_cases("eq", "x == y", np.equal, [("bool", _bools, _bools, 0)], BINARY_SHAPES[:3])
CASES += binary_cases("ne", "x != y", np.not_equal, [("bool", _bools, _bools, 0)], BINARY_SHAPES[:3])
# on arrays `and`/`or` are elementwise (on scalars they short-circuit through `cond` instead)
CASES += binary_cases("and", "x and y", np.logical_and, [("bool", _bools, _bools, 0)], BINARY_SHAPES[:3])
CASES += binary_cases("or", "x or y", np.logical_or, [("bool", _bools, _bools, 0)], BINARY_SHAPES[:3])
CASES += unary_cases("not", "not x", np.logical_not, [("bool", _bools, 0)])
CASES += [
    Case(
        "eq",
        "ids",
        "one_hot(ids, 4)",
        lambda rng, s=s: (_ints(lo=-1, hi=4)(rng, s),),
        lambda ids: R.one_hot(ids, 4),
        0,
        f"one_hot {s}",
    )
    for s in [(5,), (2, 3), ()]
]

# select and conversions
CASES += [
    Case(
        "select",
        "c, x, y",
        "where(c, x, y)",
        lambda rng, sc=sc, sx=sx, sy=sy: (_bools(rng, sc), _floats(F64)(rng, sx), _floats(F64)(rng, sy)),
        np.where,
        0,
        f"{sc}{sx}{sy}",
    )
    for sc, sx, sy in [((3, 4), (3, 4), (3, 4)), ((3, 1), (4,), ()), ((), (2, 2), (2, 2))]
]
CASES += [
    Case(
        "select",
        "c, x, y",
        "where(c, x, y)",
        lambda rng: (_bools(rng, (5,)), _ints()(rng, (5,)), _ints()(rng, (5,))),
        np.where,
        0,
        "int64",
    )
]
CASES += unary_cases("convert", "f32(x)", lambda x: np.asarray(x, F32), [("f64->f32", _floats(F64), 0)])
CASES += unary_cases(
    "convert", "f64(x)", lambda x: np.asarray(x, F64), [("f32->f64", _floats(F32), 0), ("i64->f64", _ints(), 0)]
)
CASES += unary_cases(
    "convert",
    "i64(x)",
    R.to_i64,
    [("f64->i64", _floats(F64, lo=-9.0, hi=9.0), 0), ("f32->i64", _floats(F32, lo=-9.0, hi=9.0), 0)],
)
CASES += unary_cases("convert", "i64(x)", lambda x: np.asarray(x, np.int64), [("bool->i64", _bools, 0)])
CASES += unary_cases("convert", "f64(x)", lambda x: np.asarray(x, F64), [("bool->f64", _bools, 0)])
CASES += unary_cases("stop_gradient", "stop_gradient(x)", lambda x: x, float_kinds())

# reductions
_red_shapes = [(7,), (3, 4), (2, 3, 4)]
for _prim, _fn, _np in [
    ("reduce_sum", "sum", np.sum),
    ("reduce_prod", "prod", np.prod),
    ("reduce_max", "max", np.max),
    ("reduce_min", "min", np.min),
]:
    for _axis, _shp in [(None, s) for s in _red_shapes] + [(0, (3, 4)), (-1, (3, 4)), (1, (2, 3, 4)), (-3, (2, 3, 4))]:
        _kw = "" if _axis is None else f", axis={_axis}"
        for _label, _mk, _rtol in float_kinds(lo=0.5, hi=1.5) + [("int64", _ints(lo=-3, hi=3), 0)]:
            CASES.append(
                Case(
                    _prim,
                    "x",
                    f"{_fn}(x{_kw})",
                    lambda rng, mk=_mk, s=_shp: (mk(rng, s),),
                    lambda x, f=_np, a=_axis: f(x, axis=a),
                    max(_rtol, 1e-5 if _rtol else 0),
                    f"{_label} {_shp}",
                )
            )
for _axis, _shp in [(None, (7,)), (None, (3, 4)), (None, (2, 3, 4)), (0, (3, 4)), (-1, (3, 4)), (1, (2, 3, 4))]:
    _kw = "" if _axis is None else f", axis={_axis}"
    for _label, _mk in [
        ("float64", lambda rng, s: _ints(lo=-2, hi=2)(rng, s).astype(F64)),
        ("int64", _ints(lo=-2, hi=2)),
    ]:
        CASES.append(
            Case(
                "argmax",
                "x",
                f"argmax(x{_kw})",
                lambda rng, mk=_mk, s=_shp: (mk(rng, s),),
                (lambda x: R.argmax_flat(x)) if _axis is None else (lambda x, a=_axis: np.argmax(x, axis=a)),
                0,
                f"{_label} {_shp} ties",
            )
        )
CASES += [
    Case(
        "argmax",
        "x",
        f"argmax(x{kw})",
        lambda rng: (_bools(rng, (3, 5)),),
        (lambda x: R.argmax_flat(x)) if not kw else (lambda x: np.argmax(x, axis=-1)),
        0,
        f"bool{kw}",
    )
    for kw in ("", ", axis=-1")
]

# shapes


def _arr(shp, dtype=F64):
    return lambda rng: (_floats(dtype)(rng, shp),)


# argmin (the argmax of a decreasing map of x); NaN: both find the first NaN, as NumPy
for _axis, _shp in [(None, (7,)), (None, (3, 4)), (0, (3, 4)), (-1, (3, 4)), (1, (2, 3, 4))]:
    _kw = "" if _axis is None else f", axis={_axis}"
    for _label, _mk in [
        ("float64", lambda rng, s: _ints(lo=-2, hi=2)(rng, s).astype(F64)),
        ("float32", lambda rng, s: _ints(lo=-2, hi=2)(rng, s).astype(F32)),
        ("int64", _ints(lo=-2, hi=2)),
        ("float64 edges", _with_edges(F64, EDGES)),
        ("int64 extremes", lambda rng, s: rng.choice(np.array([-(2**63), 2**63 - 1, 0, -1]), size=s)),
    ]:
        for _fn, _np, _flat in [("argmin", np.argmin, R.argmin_flat), ("argmax", np.argmax, R.argmax_flat)]:
            CASES.append(
                Case(
                    "argmax",
                    "x",
                    f"{_fn}(x{_kw})",
                    lambda rng, mk=_mk, s=_shp: (mk(rng, s),),
                    _flat if _axis is None else (lambda x, f=_np, a=_axis: f(x, axis=a)),
                    0,
                    f"{_fn} {_label} {_shp}",
                )
            )
CASES += [
    Case("argmax", "x", "argmin(x, axis=1, keepdims=true)", _arr((3, 4)), lambda x: np.argmin(x, 1, keepdims=True)),
    Case("argmax", "x", "argmax(x, keepdims=true)", _arr((3, 4)), lambda x: np.argmax(x, keepdims=True)),
    Case("argmax", "x", "argmin(x)", lambda rng: (_bools(rng, (6,)),), R.argmin_flat, label="argmin bool"),
]

# max and min's cotangent (extreme_scatter, made by grad): g at each group's first extreme
_ties = lambda shp, gshp: lambda rng: (_ints(lo=-2, hi=2)(rng, shp).astype(F64), _floats(F64)(rng, gshp))  # noqa: E731
CASES += [
    Case(
        "extreme_scatter",
        "x, g",
        f"grad(fn(y) => sum({_kind}(y, axis={list(_axes)}) * g))(x)",
        _ties((2, 3, 4), tuple(d for k, d in enumerate((2, 3, 4)) if k not in _axes)),
        lambda x, g, a=_axes, k=_kind: R.extreme_scatter(x, g, a, k),
    )
    for _kind in ("max", "min")
    for _axes in [(2,), (1,), (0, 2), (0, 1)]
]

# keepdims= and tuple axes; any and all; var, std and logsumexp (compositions of reductions)
_axes_kw = [
    ("", None),
    (", axis=(0, 2)", (0, 2)),
    (", axis=[-1, 0]", (-1, 0)),
    (", axis=1, keepdims=true", 1),
    (", axis=(2, 1), keepdims=true", (2, 1)),
    (", keepdims=true", None),
    (", axis=()", ()),
]
_keeps = {", axis=1, keepdims=true", ", axis=(2, 1), keepdims=true", ", keepdims=true"}
for _prim, _fn, _np, _mk, _rtol in [
    ("reduce_sum", "sum", np.sum, _floats(F64), 1e-12),
    ("reduce_prod", "prod", np.prod, _floats(F32, lo=0.5, hi=1.5), 1e-5),
    ("reduce_max", "max", np.max, _ints(), 0),
    ("reduce_min", "min", np.min, _floats(F64), 0),
    ("reduce_sum", "mean", np.mean, _floats(F32), 1e-5),
    ("reduce_max", "any", np.any, lambda rng, s: rng.random(s) < 0.1, 0),
    ("reduce_min", "all", np.all, lambda rng, s: rng.random(s) < 0.9, 0),
    ("reduce_max", "any", np.any, _with_edges(F64, [0.0, -0.0, np.nan]), 0),
    ("reduce_min", "all", np.all, _ints(lo=-1, hi=1), 0),
    ("reduce_sum", "var", np.var, _floats(F64), 1e-12),
    ("reduce_sum", "std", np.std, _floats(F32), 1e-5),
    ("reduce_sum", "logsumexp", R.logsumexp, _floats(F64, lo=-50.0, hi=50.0), 1e-12),
    ("reduce_sum", "logsumexp", R.logsumexp, _floats(F32, lo=-50.0, hi=50.0), 1e-6),
]:
    for _kw, _ax in _axes_kw:
        CASES.append(
            Case(
                _prim,
                "x",
                f"{_fn}(x{_kw})",
                lambda rng, mk=_mk: (mk(rng, (2, 3, 4)),),
                lambda x, f=_np, a=_ax, k=_kw in _keeps: f(x, axis=a, keepdims=k),
                _rtol,
                f"{_fn} {np.asarray(_mk(np.random.default_rng(0), ())).dtype}{_kw}",
            )
        )
CASES += [
    Case("reduce_max", "x", "any(x, axis=1)", lambda rng: (np.zeros((3, 0), bool),), lambda x: np.any(x, 1), 0, "0"),
    Case("reduce_min", "x", "all(x, axis=1)", lambda rng: (np.zeros((3, 0), bool),), lambda x: np.all(x, 1), 0, "0"),
    Case("reduce_sum", "x", "var(x, axis=0)", lambda rng: (np.zeros((0, 2)),), lambda x: np.var(x, 0), 0, "empty"),
    Case("reduce_sum", "x", "logsumexp(x, axis=1)", _arr((3, 0)), lambda x: R.logsumexp(x, 1), 0, "empty"),
    Case("reduce_sum", "x", "var(x, ddof=1)", _arr((3, 4)), lambda x: np.var(x, ddof=1), 1e-12, "ddof"),
    Case("reduce_sum", "x", "std(x, axis=0, ddof=2)", _arr((2, 3)), lambda x: np.std(x, 0, ddof=2), 0, "ddof=n"),
    Case("reduce_sum", "x", "std(x, axis=1)", lambda rng: (np.full((2, 3), 0.7),), lambda x: np.std(x, 1), 0, "flat"),
    Case(
        "reduce_sum",
        "x",
        "logsumexp(x, axis=1)",
        lambda rng: (np.array([[-np.inf] * 3, [np.inf, 1.0, -np.inf], [np.nan, 1.0, 2.0], [1000.0, 1000.0, -1e300]]),),
        lambda x: R.logsumexp(x, 1),
        1e-12,
        "infinities",
    ),
    *[
        Case("reduce_sum", "x", f"logsumexp(x{kw})", _edge_arr, lambda x, a=a: R.logsumexp(x, a), 1e-6, f"edges{kw}")
        for kw, a in [("", None), (", axis=0", 0)]
        for _edge_arr in [lambda rng: (_with_edges(F32, EDGES)(rng, (5, 3)),)]
    ],
]

# shapes

CASES += [
    Case("const", "x", "x + [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]", _arr((2, 3)), lambda x: x + [[1, 2, 3], [4, 5, 6]]),
    Case("const", "x", "x * [1, 2, 3]", lambda rng: (_ints()(rng, (3,)),), lambda x: x * [1, 2, 3], 0, "int64"),
    Case("iota", "x", "x + f64(arange(5))", _arr((5,)), lambda x: x + np.arange(5)),
    Case("broadcast", "x", "full([3, 4], x)", _arr((4,)), lambda x: np.broadcast_to(x, (3, 4))),
    Case("broadcast", "x", "full([2, 3], x)", _arr(()), lambda x: np.full((2, 3), x), label="scalar"),
    Case("broadcast", "x", "full([2, 3, 4], x)", _arr((3, 1)), lambda x: np.broadcast_to(x, (2, 3, 4))),
    Case("reshape", "x", "reshape(x, [4, 3])", _arr((3, 4)), lambda x: x.reshape(4, 3)),
    Case("reshape", "x", "reshape(transpose(x), [12])", _arr((3, 4)), lambda x: x.T.reshape(12)),
    Case("reshape", "x", "reshape(x, [1, 3, 1, 2])", _arr((6,)), lambda x: x.reshape(1, 3, 1, 2)),
    Case("transpose", "x", "transpose(x)", _arr((3, 4)), lambda x: x.T),
    Case("transpose", "x", "transpose(x, [1, 2, 0])", _arr((2, 3, 4)), lambda x: np.transpose(x, (1, 2, 0))),
    Case("transpose", "x", "transpose(x) * 1", lambda rng: (_ints()(rng, (2, 5)),), lambda x: x.T, 0, "int64"),
    Case("slice", "x", "x[1:3, -2:]", _arr((4, 5)), lambda x: x[1:3, -2:]),
    Case("slice", "x", "x[:-1]", _arr((6,)), lambda x: x[:-1]),
    Case("slice", "x", "x[1:, :, 2:3]", _arr((3, 2, 4)), lambda x: x[1:, :, 2:3]),
    Case("strided_slice", "x", "x[::2]", _arr((7,)), lambda x: x[::2]),
    Case("strided_slice", "x", "x[::-1]", _arr((5,), F32), lambda x: x[::-1], 0, "float32 reversed"),
    Case("strided_slice", "x", "x[-1:0:-2, ::3]", _arr((6, 7)), lambda x: x[-1:0:-2, ::3]),
    Case("strided_slice", "x", "x[:, 5:1:-2]", lambda rng: (_ints()(rng, (3, 6)),), lambda x: x[:, 5:1:-2], 0, "int64"),
    Case("strided_slice", "x", "x[3:1:2]", _arr((4, 2)), lambda x: x[3:1:2], label="empty"),
    Case("strided_slice", "x", "x[::2] * 1.0", _arr((0, 3)), lambda x: x[::2], label="empty axis"),
    Case("reshape", "x", "reshape(x, [2, -1, 3])", _arr((4, 3)), lambda x: x.reshape(2, -1, 3), label="inferred"),
    Case("reshape", "x", "reshape(x, -1)", _arr((2, 3), F32), lambda x: x.reshape(-1), 0, "flattened"),
    Case("reshape", "x", "reshape(x, [3, -1])", _arr((0, 3)), lambda x: x.reshape(3, -1), label="empty"),
    Case(
        "gather_add",
        "x, ids",
        "segment_sum(x, ids, 4)",
        lambda rng: (_floats(F64)(rng, (6, 2)), rng.integers(-4, 4, size=(6,))),
        lambda x, ids: np.stack([x[ids % 4 == s].sum(0) for s in range(4)]),
        label="segment_sum",
    ),
    Case(
        "gather_add",
        "x, ids",
        "segment_sum(x, ids, 3)",
        lambda rng: (_ints()(rng, (2, 3)), rng.integers(0, 3, size=(2, 3))),
        lambda x, ids: np.bincount(ids.ravel(), weights=x.ravel(), minlength=3).astype(np.int64),
        0,
        "segment_sum int64",
    ),
    Case("index", "x, i, j", "x[i, j]", lambda rng: (_floats(F64)(rng, (4, 5)), 3, -2), lambda x, i, j: x[i, j]),
    Case("index", "x, i", "x[i]", lambda rng: (_floats(F64)(rng, (4, 5)), -4), lambda x, i: x[i], label="row"),
    Case("index", "x, j", "x[:, j]", lambda rng: (_floats(F64)(rng, (4, 5)), 1), lambda x, j: x[:, j], label="col"),
    Case("index", "x, i", "x[i]", lambda rng: (_bools(rng, (5,)), 2), lambda x, i: x[i], label="bool"),
    Case("windows", "x", "windows(x, 2)", _arr((5,)), lambda x: R.windows(x, 2)),
    Case("windows", "x", "windows(x, 3)", _arr((5, 2)), lambda x: R.windows(x, 3)),
    Case(
        "concat",
        "x, y",
        "concat(x, y)",
        lambda rng: (_floats(F64)(rng, (2, 3)), _floats(F64)(rng, (4, 3))),
        lambda x, y: np.concatenate([x, y]),
    ),
    Case(
        "concat",
        "x, y",
        "concat(x, y, x, axis=1)",
        lambda rng: (_floats(F64)(rng, (2, 3)), _floats(F64)(rng, (2, 1))),
        lambda x, y: np.concatenate([x, y, x], axis=1),
    ),
    Case(
        "concat",
        "x, y",
        "concat(x, y, axis=-1)",
        lambda rng: (_ints()(rng, (2, 2)), _ints()(rng, (2, 3))),
        lambda x, y: np.concatenate([x, y], axis=-1),
        0,
        "int64",
    ),
    Case(
        "gather",
        "x, ids",
        "x[ids]",
        lambda rng: (_floats(F64)(rng, (5, 2)), rng.integers(-5, 5, size=(3, 4))),
        lambda x, ids: x[ids],
    ),
    Case(
        "gather",
        "x, ids",
        "x[ids]",
        lambda rng: (_floats(F64)(rng, (5,)), rng.integers(-5, 5, size=(6,))),
        lambda x, ids: x[ids],
        label="vector",
    ),
    # the transposes of slicing, indexing, gather and windows appear in gradients
    Case(
        "pad",
        "x, g",
        "grad(fn(x) => sum(x[1:3] * g))(x)",
        lambda rng: (_floats(F64)(rng, (5,)), _floats(F64)(rng, (2,))),
        lambda x, g: np.concatenate([[0.0], g, [0.0, 0.0]]),
    ),
    Case(
        "pad",
        "x, g",
        "grad(fn(x) => sum(x[1:, :2] * g))(x)",
        lambda rng: (_floats(F64)(rng, (3, 4)), _floats(F64)(rng, (2, 2))),
        lambda x, g: np.pad(g, ((1, 0), (0, 2))),
    ),
    Case(
        "strided_pad",
        "x, g",
        "grad(fn(x) => sum(x[::-2, 1::2] * g))(x)",
        lambda rng: (_floats(F64)(rng, (5, 4)), _floats(F64)(rng, (3, 2))),
        lambda x, g: R.strided_pad(g, (slice(None, None, -2), slice(1, None, 2)), (5, 4)),
    ),
    Case(
        "index_scatter",
        "x, i",
        "grad(fn(x) => x[i] * 2.0)(x)",
        lambda rng: (_floats(F64)(rng, (5,)), -2),
        lambda x, i: np.where(np.arange(5) == 5 + i, 2.0, 0.0),
    ),
    Case(
        "index_scatter",
        "x, i, g",
        "grad(fn(x) => sum(x[i] * g))(x)",
        lambda rng: (_floats(F64)(rng, (3, 4)), 1, _floats(F64)(rng, (4,))),
        lambda x, i, g: np.zeros((3, 4)) + (np.arange(3) == i)[:, None] * g,
        label="row",
    ),
    Case(
        "gather_add",
        "x, ids, g",
        "grad(fn(x) => sum(x[ids] * g))(x)",
        lambda rng: (_floats(F64)(rng, (5,)), rng.integers(-5, 5, size=(3, 4)), _floats(F64)(rng, (3, 4))),
        lambda x, ids, g: np.bincount((ids % 5).ravel(), weights=g.ravel(), minlength=5),
    ),
    Case(
        "gather_add",
        "x, ids, g",
        "grad(fn(x) => sum(x[ids] * g))(x)",
        lambda rng: (_floats(F64)(rng, (4, 2)), rng.integers(0, 4, size=(5,)), _floats(F64)(rng, (5, 2))),
        lambda x, ids, g: np.stack([g[ids == r].sum(0) for r in range(4)]),
        label="rows",
    ),
    Case(
        "unwindows",
        "x, g",
        "grad(fn(x) => sum(windows(x, 3) * g))(x)",
        lambda rng: (_floats(F64)(rng, (6,)), _floats(F64)(rng, (4, 3))),
        lambda x, g: sum(np.pad(g[i], (i, 6 - 3 - i)) for i in range(4)),
    ),
    # matrix products
    *[
        Case(
            "matmul",
            "a, b",
            "a @ b",
            lambda rng, sa=sa, sb=sb, mk=mk: (mk(rng, sa), mk(rng, sb)),
            np.matmul,
            rtol,
            f"{label} {sa}@{sb}",
        )
        for (sa, sb) in [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)), ((1, 1), (1, 5))]
        + [((2, 3, 4), (2, 4, 5)), ((3, 4), (2, 4, 2)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,))]
        + [((2, 0, 4), (2, 4, 3)), ((2, 3, 0), (1, 0, 3)), ((4, 24, 24), (24, 24))]
        for label, mk, rtol in [
            ("float64", _floats(F64), 1e-12),
            ("float32", _floats(F32), 1e-5),
            ("int64", _ints(-5, 5), 0),
        ]
    ],
]


def _check(got, want, rtol):
    want = np.asarray(want)
    got_a = np.asarray(got)
    assert got_a.shape == want.shape, f"shape {got_a.shape}, NumPy gives {want.shape}"
    if isinstance(got, np.ndarray) and want.dtype != object:
        assert got.dtype == want.dtype, f"dtype {got.dtype}, NumPy gives {want.dtype}"
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got_a, want)
    else:
        np.testing.assert_allclose(got_a, want, rtol=rtol, atol=rtol * 1e-3, equal_nan=True)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else [])
        for c in CASES
    ],
)
def test_lowering_matches_numpy(case: Case):
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    args = case.args(rng)
    m = module(case.source)
    assert case.prim in prim_names(ir_of(m, "f", *args)), f"`{case.expr}` does not use {case.prim}"
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's var with ddof >= n, say
        want = case.ref(*args)
    _check(m.f(*args), want, case.rtol)


def test_every_primitive_is_checked():
    """A primitive must be in the NumPy table or listed in TESTED_ELSEWHERE (not both)."""
    in_table = {c.prim for c in CASES}
    elsewhere = set(TESTED_ELSEWHERE)
    assert not in_table & elsewhere
    unknown = set(in_table | elsewhere) - set(PRIMS)
    assert not unknown, f"no such primitives: {unknown}"
    missing = set(PRIMS) - in_table - elsewhere
    assert not missing, f"primitives that no test checks: {sorted(missing)}"
    assert family_prims() - {"copy"} <= in_table, "every elementwise/reduce/shape/linalg primitive is in the table"


# --- 3. structured primitives that only AD produces ---------------------------------------------------

# `f` must use the primitive; checkpoint and custom_vjp are expanded away by `grad`, so their
# lowering is seen in the forward program and their derivative in `g`.
AD_PROGRAMS = {
    "checkpoint": (
        "fn h(y) = tanh(y) * y\nfn f(x) = checkpoint(h)(x)\nfn g(x) = grad(fn(x) => sum(checkpoint(h)(x)))(x)",
        lambda x: np.tanh(x) * x,
        lambda x: np.tanh(x) + x * (1 - np.tanh(x) ** 2),
    ),
    "custom_vjp": (
        "fn sq(x) = x * x\n"
        "fn sq_fwd(x) = (x * x, x)\n"
        "fn sq_bwd(x, g) = (g * 3.0 * x,)\n"
        "fn f(x) = custom_vjp(sq, sq_fwd, sq_bwd)(x)\n"
        "fn g(x) = grad(fn(x) => sum(custom_vjp(sq, sq_fwd, sq_bwd)(x)))(x)",
        lambda x: x * x,
        lambda x: 3.0 * x,
    ),
    "while_tape": (
        "fn f(x) = grad(fn(x) => sum(while(fn(s) => s.1 < 3, fn(s) => (s.0 * x, s.1 + 1), (x, 0)).0))(x)\n"
        "fn g(x) = f(x)",
        lambda x: 4 * x**3,
        lambda x: 4 * x**3,
    ),
    "tape_pack": (
        "fn p(x, n) = if n == 0 { x * 1.0 } else { x * p(x, n - 1) }\n"
        "fn f(x) = grad(fn(x) => sum(p(x, i64(3.0))))(x)\n"
        "fn g(x) = f(x)",
        lambda x: 4 * x**3,
        lambda x: 4 * x**3,
    ),
    # x is passed on unchanged: its cotangent is one buffer, added to by each call in place,
    # by a row (x[n]: acc_add_at) and as a whole (x * 2.0: acc_add)
    "acc_new": (
        "fn r(x, n) = if n == 0 { 0.0 } else { x[n - 1] * r(x, n - 1) + sum(x * 2.0) }\n"
        "fn f(x) = grad(fn(x) => r(x, 3))(x)\n"
        "fn g(x) = f(x)",
        lambda x: _acc_ref(x),
        lambda x: _acc_ref(x),
    ),
}


def _acc_ref(x):
    """The gradient of r(x, 3) by central differences of the same function in NumPy."""

    def r(x, n):
        return 0.0 if n == 0 else x[n - 1] * r(x, n - 1) + np.sum(x * 2.0)

    h, out = 1e-6, np.zeros_like(x)
    for k in range(len(x)):
        e = np.zeros_like(x)
        e[k] = h
        out[k] = (r(x + e, 3) - r(x - e, 3)) / (2 * h)
    return out


@pytest.mark.parametrize("prim", sorted(AD_PROGRAMS))
def test_structured_ad_primitives_lower(prim):
    src, ref, dref = AD_PROGRAMS[prim]
    m = module(src)
    x = np.array([0.5, -1.25, 2.0])
    used = prim_names(ir_of(m, "f", x))
    assert prim in used
    if prim == "while_tape":
        assert "while_untape" in used
    if prim == "tape_pack":
        assert "tape_unpack" in used
    if prim == "acc_new":
        assert {"acc_add", "acc_add_at", "acc_take"} <= used
    rtol = 1e-7 if prim == "acc_new" else 1e-12  # (against finite differences)
    np.testing.assert_allclose(m.f(x), ref(x), rtol=rtol)
    np.testing.assert_allclose(m.g(x), dref(x), rtol=rtol)
