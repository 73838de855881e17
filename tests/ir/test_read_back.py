"""Reading IR text back (diffc/ir/parse.py): print -> parse -> print is the identity over every
program we have, at every stage of the pipeline and differentiated; a parsed program compiles
to the same numbers as the one printed; and wrong text is one located IRSyntaxError."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from corpus import cases, optimised_name
from support.native import build_program, ir_of, module, run_program

from diffc.errors import DiffcError
from diffc.ir.build import Builder
from diffc.ir.core import Body
from diffc.ir.parse import IRSyntaxError, parse_program
from diffc.ir.printer import print_program
from diffc.ir.verify import verify
from diffc.ir.walk import all_eqns
from diffc.prims.core import all_prims
from diffc.typesys import DType, TensorType

PRIMS = all_prims()
CASES = dict(cases())
F64, I64 = DType.F64, DType.I64


def records_of(prog) -> set[type]:
    """The classes of the record-valued params in a program (a while tape's origin)."""
    return {
        type(v)
        for f in prog.funcs.values()
        for e in all_eqns(f.body)
        for v in e.params.values()
        if dataclasses.is_dataclass(v) and not isinstance(v, Body | TensorType)
    }


def read_back(prog, lines_of=False):
    return parse_program(print_program(prog, lines_of), PRIMS, records_of(prog))


def _pairs(a: Body, b: Body):
    """The equations of two bodies of the same shape, nested bodies included, side by side."""
    assert len(a.eqns) == len(b.eqns)
    for x, y in zip(a.eqns, b.eqns):
        yield x, y
        for sa, sb in zip(x.bodies(), y.bodies(), strict=True):
            yield from _pairs(sa, sb)


def _same_value(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, Body) or (isinstance(a, tuple) and a and isinstance(a[0], Body)):
        return True  # compared by _pairs
    if dataclasses.is_dataclass(a) and not isinstance(a, TensorType):
        return type(a) is type(b)
    return type(a) is type(b) and a == b


def assert_same_program(a, b):
    """What the passes and lowering read is the same in both: functions, types and known
    values of every value, params of every equation (nested bodies included)."""
    assert list(a.funcs) == list(b.funcs) and a.entry == b.entry
    for name in a.funcs:
        fa, fb = a.funcs[name], b.funcs[name]
        assert fa.recursive == fb.recursive
        values = list(zip(fa.body.params, fb.body.params, strict=True))
        for x, y in _pairs(fa.body, fb.body):
            assert x.prim is y.prim and list(x.params) == list(y.params) and x.note == y.note
            for k in x.params:
                assert _same_value(x.params[k], y.params[k]), (x.prim.name, k)
            values += list(zip(x.outs, y.outs, strict=True))
            for sa, sb in zip(x.bodies(), y.bodies()):
                values += list(zip(sa.params, sb.params, strict=True))
        for u, v in values:
            assert u.type == v.type
            assert (u.known is None) == (v.known is None)
            if u.known is not None:
                assert u.known.dtype == v.known.dtype and np.array_equal(u.known, v.known)


@pytest.mark.parametrize("name", sorted(CASES))
def test_print_parse_print_is_the_identity(name):
    prog = CASES[name]()
    for lines_of in (False, True):
        text = print_program(prog, lines_of)
        parsed = parse_program(text, PRIMS, records_of(prog))
        verify(parsed)
        assert print_program(parsed, lines_of) == text
    assert_same_program(prog, parsed)


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.endswith(":specialise")))
def test_the_passes_on_a_program_read_back_give_the_same_program(name):
    """The text carries all that the passes read (types, known values, params, notes): the
    passes run on the traced program read back make the program they make from the original."""
    from diffc.pipeline import PASSES

    prog = CASES[name]()
    parsed = parse_program(print_program(prog), PRIMS, records_of(prog))
    for _, run in PASSES:
        parsed = run(parsed)
    assert print_program(parsed) == print_program(CASES[optimised_name(name)]())


def test_the_corpus_has_every_stage_and_gradients():
    names = set(CASES)
    assert {"examples/mlp:grad-loss", "workloads/while_newton:grad", "programs/recursion:dce"} <= names
    assert sum(":grad" in n and n.endswith(":specialise") for n in names) >= 20  # and as optimised
    assert sum(n.startswith("workloads/") for n in names) == 8 * 7  # 5 stages, the gradient twice


def _inputs(prog, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for p in prog.main.body.params:
        t = p.type
        if t.dtype is F64:
            out.append(rng.normal(size=t.shape))
        else:
            out.append(rng.integers(0, 3, size=t.shape).astype(t.dtype.np))
    return out


@pytest.mark.parametrize(
    "name",
    [
        "workloads/mlp_step:dce",
        "workloads/mlp_step:grad",
        "workloads/rnn_scan:grad",
        "workloads/ode_rk4:grad",
        "workloads/while_newton:grad",
        "workloads/conv_small:grad",
        "programs/recursion:dce",
        "programs/while_loops:dce",
    ],
)
def test_a_parsed_program_computes_the_same_numbers(name):
    """The parse is semantic, not only textual: lowered and run, the program read back gives
    what the program printed gives, bit for bit."""
    original = CASES[name]()
    parsed = read_back(original, lines_of=True)
    args = _inputs(original)
    want = run_program(CASES[name](), args)
    got = run_program(parsed, args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is type(w) and np.shape(g) == np.shape(w)
        assert np.array_equal(g, w, equal_nan=True)


def test_shared_records_stay_shared():
    """A while tape and its untape hold the same origin: read back, still one object."""
    parsed = read_back(CASES["workloads/while_newton:grad"]())
    origins = [e.params["origin"] for e in all_eqns(parsed.main.body) if e.prim.name in ("while_tape", "while_untape")]
    assert len(origins) == 2 and origins[0] is origins[1]


# --- values the printer used to print lossily ----------------------------------------------------


def _const_program(value: np.ndarray):
    t = TensorType({"f": F64, "i": I64, "b": DType.BOOL}[value.dtype.kind], value.shape)
    return build_program([], lambda b: [b.emit1(PRIMS["const"], [], value=value)]), t


@pytest.mark.parametrize(
    "value",
    [
        np.array(1 / 3),
        np.array([0.1, -0.0, 1e-300, 1e300, math.inf, -math.inf, math.nan, 2.0]),
        np.arange(20.0).reshape(4, 5) / 7,  # more than 8 elements: printed in full
        np.zeros((3, 0)),
        np.array([[True, False], [False, True]]),
        np.array(-(2**63)),
    ],
)
def test_constants_read_back_exactly(value):
    prog, t = _const_program(value)
    parsed = read_back(prog)
    got = parsed.main.body.eqns[0].params["value"]
    assert got.dtype == value.dtype and got.shape == value.shape
    assert np.array_equal(got, value, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(value))
    assert parsed.main.body.outs[0].type == t


def test_big_constants_are_printed_in_full():
    prog, _ = _const_program(np.arange(12))
    assert "value=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]" in print_program(prog)


def test_known_values_are_derived_or_printed():
    """Known values are folded again when read (integer arithmetic on constants); a value known
    for another reason (a body parameter) is printed with `known=`."""
    b = Builder()
    n = b.param(TensorType(I64, ()), known=np.array(4))
    x = b.param(TensorType(F64, (3,)))
    two = b.emit1(PRIMS["const"], [], value=np.array(2))
    m = b.emit1(PRIMS["mul"], [n, two])
    body, _ = b.finish([m, x])
    from diffc.ir.core import Func, Program

    prog = Program({"main": Func("main", body)})
    text = print_program(prog)
    assert text.splitlines()[0] == "func main(%0: i64 known=4, %1: f64[3]):"
    assert "known" not in "".join(text.splitlines()[1:])
    parsed = parse_program(text, PRIMS)
    n2, _ = parsed.main.body.params
    m2 = parsed.main.body.eqns[-1].outs[0]
    assert int(n2.known) == 4 and int(m2.known) == 8
    assert parsed.main.body.params[1].known is None


def test_spans_are_the_printed_lines():
    parsed = read_back(CASES["workloads/ode_rk4:dce"](), lines_of=True)
    assert all(e.span.line > 0 for e in parsed.main.body.eqns)
    assert all(e.span.line == 0 for e in read_back(CASES["workloads/ode_rk4:dce"]()).main.body.eqns)


# --- mistakes ------------------------------------------------------------------------------------

GOOD = """\
func main(%0: f64[3], %1: i64):
  %2: f64[3] = exp %0
  %3: f64 = reduce_sum[axes=(0,)] %2
  return %3
"""


def test_hand_written_text_reads():
    prog = parse_program(GOOD, PRIMS)
    verify(prog)
    assert [e.prim.name for e in prog.main.body.eqns] == ["exp", "reduce_sum"]
    assert print_program(prog) == GOOD


@pytest.mark.parametrize(
    "old, new, line, col, message",
    [
        ("exp %0", "expo %0", 2, 16, "unknown primitive `expo`"),
        ("exp %0", "exp %9", 2, 20, "value %9 is not defined"),
        ("%2: f64[3] = exp", "%2: f64[4] = exp", 2, 16, "`exp` gives (f64[3]), the text says (f64[4])"),
        ("%3: f64 = reduce", "%1: f64 = reduce", 3, 3, "value %1 defined twice"),
        ("axes=(0,)", "axes=(0,", 3, 32, "expected a value, found `]`"),
        ("axes=(0,)", "axes=(5,)", 3, 13, "`reduce_sum` does not take these inputs and params"),
        ("axes=(0,)", "axis=(0,)", 3, 13, "wrong params for `reduce_sum`"),
        ("f64[3], %1", "f65[3], %1", 1, 15, "unknown dtype `f65`"),
        ("  return %3\n", "", 3, 1, "the body has no `return`"),
        ("  %2: f64[3]", "    %2: f64[3]", 2, 5, "expected an equation or `return` indented by 2"),
        ("exp %0", "exp %0 $", 2, 23, "unexpected character '$'"),
        ("func main", "fun main", 1, 1, "expected `func`"),
        ("axes=(0,)", "axes=0", 3, 13, "wrong params for `reduce_sum`: TypeError"),
        ("%1: i64)", "%1: i64 known=[1, 2])", 1, 37, "2 values for a value of type i64"),
        ("return %3", "return %3 %2", 4, 13, "expected `,`, found `%2`"),
        ("exp %0", "exp[x=@3] %0", 2, 22, "record @3 is not defined"),
        ("%2: f64[3] = exp %0\n", "%2: f64[3] = exp %0\n  # a note\n  # another\n", 4, 3, "must follow an equation"),
    ],
)
def test_mistakes_are_located(old, new, line, col, message):
    assert old in GOOD
    with pytest.raises(IRSyntaxError) as info:
        parse_program(GOOD.replace(old, new), PRIMS)
    e = info.value
    assert isinstance(e, DiffcError)
    assert (e.span.line, e.span.col) == (line, col), e.render()
    assert message in e.message, e.render()
    assert f"<ir>:{line}:{col}" in e.render()


def test_bodies_are_closed():
    text = """\
func main(%0: f64[2]):
  %1: f64[2] = map[n=2, num_xs=0] %0
    body (%2: i64, %3: f64[2]):
      %4: f64 = index[safe=True] %0 %2
      return %4
  return %1
"""
    with pytest.raises(IRSyntaxError, match="not defined in this body") as info:
        parse_program(text, PRIMS)
    assert (info.value.span.line, info.value.span.col) == (4, 34)


def test_calls_name_a_function():
    text = "func main(%0: i64):\n  %1: i64 = call[func='f', out_types=(i64[])] %0\n  return %1\n"
    with pytest.raises(IRSyntaxError, match="call of an unknown function `f`") as info:
        parse_program(text, PRIMS)
    assert (info.value.span.line, info.value.span.col) == (2, 18)


def test_records_must_be_given():
    text = print_program(CASES["workloads/while_newton:grad"]())
    with pytest.raises(IRSyntaxError, match="unknown record `WhileOrigin`"):
        parse_program(text, PRIMS)


def test_empty_text():
    with pytest.raises(IRSyntaxError, match="no function"):
        parse_program("\n\n", PRIMS)


def test_labels_read_back_whatever_they_hold():
    """A print's label is the user's text: a quote, `]`, `#`, `# line N` and non-ASCII letters
    are read back as they were."""
    prog = ir_of(module('fn f(x) { print("it\'s ] [ # line 3", x); print("café", x); x }'), "f", 1.0)
    labels = [e.params["label"] for e in all_eqns(prog.main.body) if e.prim.name == "print"]
    assert labels == ["it's ] [ # line 3", "café"]
    for lines_of in (False, True):
        parsed = read_back(prog, lines_of)
        assert [e.params["label"] for e in all_eqns(parsed.main.body) if e.prim.name == "print"] == labels
        assert print_program(parsed, lines_of) == print_program(prog, lines_of)
