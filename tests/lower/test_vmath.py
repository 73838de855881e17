"""The vectorised math kernels (diffc/lower/vmath.py) against NumPy, in ulps, over their whole
range and at the edges: overflow, underflow to subnormals and zero, infinities, NaN, signed zero.
The f32 kernels, computed in f32, against the f64 reference rounded to f32."""

import math
import re

import llvmlite.binding as llvm
import numpy as np
import pytest
from support.native import on_each_count, restore_threads  # noqa: F401 (a fixture)

import diffc
from diffc import cli
from diffc.lower import jit, vmath
from diffc.lower.llvm import lower_program, module_units
from diffc.pipeline import llvm_text, to_ir
from diffc.typesys import DType, TensorType

MAX_ULPS = 3

m = diffc.compile(
    """
fn e(x) = exp(x)
fn l(x) = log(x)
fn t(x) = tanh(x)
fn s(x) = sigmoid(x)
fn e32(x) = exp(f32(x))
fn l1p(x) = log1p(x)
fn t32(x) = tanh(f32(x))
fn tan_(x) = tan(x)
fn tan32(x) = tan(f32(x))
fn l1p32(x) = log1p(f32(x))
fn l32(x) = log(f32(x))
fn sin_(x) = map(fn(v) => sin(v), x)
fn cos_(x) = map(fn(v) => cos(v), x)
fn erf_(x) = erf(x)
"""
)
erf = np.vectorize(math.erf, otypes=[np.float64])  # libm's, within an ulp


def ulps(got, want, dtype=np.float64):
    """The error of got in units in the last place of want in dtype (0 where both are the same
    non-finite)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore", over="ignore"):
        unit = np.spacing(np.maximum(np.abs(want), np.finfo(dtype).tiny).astype(dtype)).astype(np.float64)
        err = np.abs(got - want) / unit
    return np.where(same, 0.0, err)


rng = np.random.default_rng(0)
EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1e-310, 2.2250738585072014e-308, 1.0, -1.0]
# every binade from the smallest subnormal to the largest finite number, of both signs
SWEEP = np.concatenate([sign * 2.0 ** np.arange(-1074, 1024, 0.37) for sign in (1, -1)])
CASES = {
    "exp": (
        m.e,
        np.exp,
        np.concatenate(
            [
                rng.uniform(-750, 750, 20000),
                rng.normal(size=20000),
                rng.normal(size=2000) * 1e-9,
                [709.78, 709.79, -745.13, -745.14, -708.5, -740.0] + EDGES,
            ]
        ),
    ),
    "log": (
        m.l,
        np.log,
        np.concatenate(
            [np.exp(rng.uniform(-744, 709, 20000)), rng.uniform(0, 3, 20000), 1 + rng.normal(size=2000) * 1e-9]
            + [SWEEP, EDGES]
        ),
    ),
    "log1p": (
        m.l1p,
        np.log1p,
        np.concatenate(
            [
                rng.uniform(-1, 3, 20000),
                rng.uniform(-0.3, 0.45, 20000),  # the series, and where it hands over to log
                rng.normal(size=2000) * 1e-9,
                np.exp(rng.uniform(-700, 709, 5000)),
                -np.exp(rng.uniform(-700, 0, 5000)),
                -1 + np.exp(rng.uniform(-37, 0, 5000)),  # 1 + x down to 2^-53: its rounding error
                np.nextafter(2.0 ** np.arange(-60, 60), np.inf),  # 1 + x rounded up or down
                SWEEP,
                [-1.0, -1.5, -0.9999999999999999, -0.29, 0.41, 1e-300, -5e-324, 1.7e308] + EDGES,
            ]
        ),
    ),
    "tanh": (
        m.t,
        np.tanh,
        np.concatenate(
            [
                rng.uniform(-25, 25, 20000),
                rng.normal(size=20000) * 1e-3,
                rng.normal(size=2000) * 1e-9,
                rng.uniform(0.5, 0.6, 5000),  # where the two forms meet
                SWEEP,
                [0.17, 0.18, 0.1732, 0.55, np.nextafter(0.55, 1), 19.0, 19.1, 20.0, 40.0, 1e300] + EDGES,
            ]
        ),
    ),
    **{
        name: (
            fn,
            ref,
            np.concatenate(
                [
                    rng.uniform(-16, 16, 20000),  # reduced inline (sin and cos of numbers; of arrays: libm)
                    rng.uniform(-0.8, 0.8, 20000),  # |x| <= pi/4: the kernels as they are
                    rng.uniform(-1e6, 1e6, 2000),  # libm
                    np.arange(-10, 11) * (np.pi / 2),  # next to the zeros of sin and cos: r tiny
                    np.nextafter(np.arange(-10, 11) * (np.pi / 2), np.inf),
                    np.arange(-20, 21) * (np.pi / 4),  # where the branches and quadrants change
                    [np.pi / 4, np.nextafter(np.pi / 4, 1), 15.999999999, 16.0, 1e-300, -1e-9] + EDGES,
                ]
            ),
        )
        for name, fn, ref in (("sin", m.sin_, np.sin), ("cos", m.cos_, np.cos))
    },
    "tan": (
        m.tan_,
        np.tan,
        np.concatenate(
            [
                rng.uniform(-4200, 4200, 20000),  # inline below 4096, libm beyond
                rng.uniform(-0.8, 0.8, 20000),
                np.arange(-2600, 2600) * (np.pi / 2),  # next to the zeros and poles: r tiny
                np.nextafter(np.arange(-2600, 2600) * (np.pi / 2), np.inf),
                np.arange(-20, 21) * (np.pi / 4),
                SWEEP,
                [4095.999999, 4096.0, 1e-300, -1e-9, 2.0**-27] + EDGES,
            ]
        ),
    ),
    "erf": (
        m.erf_,
        erf,
        np.concatenate(
            [
                rng.uniform(-7, 7, 20000),
                rng.normal(size=20000) * 1e-3,
                rng.uniform(0.9, 1.1, 5000),  # where the series hands over to erfc's form
                rng.uniform(2.4, 2.6, 5000),  # where erfc's two polynomials meet
                rng.uniform(5.8, 6.2, 2000),  # where erf rounds to 1
                SWEEP,
                [1.0, np.nextafter(1.0, 0), 2.5, np.nextafter(2.5, 0), 6.0, 1e-300] + EDGES,
            ]
        ),
    ),
    "sigmoid": (
        m.s,
        lambda x: np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x))),
        np.concatenate([rng.uniform(-800, 800, 20000), rng.normal(size=20000)] + [EDGES]),
    ),
}


# fdlibm's log polynomial, the small terms summed first: log and log1p are within 1 ulp
BOUND = {"log": 1, "log1p": 1}


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_is_accurate_to_a_few_ulps(name):
    ours, ref, x = CASES[name]
    with np.errstate(all="ignore"):
        want = ref(x)
    err = ulps(ours(x), want)
    worst = int(np.argmax(err))
    bound = BOUND.get(name, MAX_ULPS)
    assert err[worst] <= bound, f"{name}({x[worst]!r}) = {ours(x)[worst]!r}, NumPy says {want[worst]!r}"


def test_tanh_saturates_to_one_exactly_and_keeps_signs():
    x = np.array([19.1, 20.0, 25.0, 710.0, 1e300, np.inf, -19.1, -1e300, -np.inf, -0.0, 0.0, -5e-324])
    got = m.t(x)
    np.testing.assert_array_equal(got, [1.0] * 6 + [-1.0] * 3 + [-0.0, 0.0, -5e-324])
    assert np.signbit(got[-3]) and not np.signbit(got[-2])


def test_log1p_at_and_below_minus_one():
    with np.errstate(all="ignore"):
        got = m.l1p(np.array([-1.0, -1.0000000000000002, -2.0, -np.inf, -0.0, np.nan]))
    assert got[0] == -np.inf and np.isnan(got[1:4]).all() and np.isnan(got[5])
    assert got[4] == 0 and np.signbit(got[4])


def test_sin_and_tan_keep_the_sign_of_zero():
    assert np.signbit(m.sin_(np.array([-0.0]))[0])
    assert np.signbit(m.tan_(np.array([-0.0]))[0]) and np.signbit(m.tan_(-0.0))


F32 = diffc.compile(
    """
fn exp_(x) = exp(x)
fn log_(x) = log(x)
fn log1p_(x) = log1p(x)
fn tanh_(x) = tanh(x)
fn sigmoid_(x) = sigmoid(x)
fn erf_(x) = erf(x)
fn tan_(x) = tan(x)
"""
)
F32_EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-40, 1.1754944e-38, 1.0, -1.0, 3e38, -3.4e38]
F32_SWEEP = np.concatenate([sign * 2.0 ** np.arange(-149, 128, 0.13) for sign in (1, -1)])
F32_CASES = {  # name: (reference in f64, inputs, ulps)
    "exp": (np.exp, [rng.uniform(-110, 95, 20000), rng.normal(size=5000), [88.72, 88.73, -103.9, -104, -87.4]], 1),
    "log": (np.log, [np.exp(rng.uniform(-103, 88, 10000)), rng.uniform(0, 3, 10000)], 1),
    "log1p": (
        np.log1p,
        [rng.uniform(-1, 3, 10000), rng.uniform(-0.3, 0.45, 10000), -1 + np.exp(rng.uniform(-16, 0, 3000))],
        1,
    ),
    "tanh": (np.tanh, [rng.uniform(-12, 12, 20000), rng.uniform(0.5, 0.6, 3000), [9.0, 9.1, 10.0, 20.0]], 2),
    "sigmoid": (CASES["sigmoid"][1], [rng.uniform(-110, 110, 20000), rng.normal(size=5000)], 2),
    "erf": (erf, [rng.uniform(-5, 5, 20000), rng.uniform(0.9, 1.1, 3000), rng.uniform(3.9, 4.1, 3000)], 2),
    "tan": (np.tan, [rng.uniform(-30, 30, 5000)], 1),  # computed in f64 and rounded
}


@pytest.mark.parametrize("name", sorted(F32_CASES))
def test_f32_kernel_is_accurate_to_a_few_ulps(name):
    """f32 kernels compute in f32 (twice the elements to a vector): within 1 or 2 ulps of the
    correctly rounded result, over the whole range of f32 and at its edges."""
    ref, parts, bound = F32_CASES[name]
    x = np.concatenate([*parts, rng.normal(size=2000) * 1e-5, F32_SWEEP, F32_EDGES]).astype(np.float32)
    with np.errstate(all="ignore"):
        got = getattr(F32, name + "_")(x)
        want = ref(x.astype(np.float64)).astype(np.float32)
    assert got.dtype == np.float32
    err = ulps(got, want, np.float32)
    worst = int(np.argmax(err))
    assert err[worst] <= bound, f"{name}({x[worst]!r}) = {got[worst]!r}, NumPy says {want[worst]!r}"


EDGE_VALUES = {  # name: (inputs, results), both dtypes
    "exp": ([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30], [1.0, 1.0, np.inf, 0.0, np.nan, 1.0]),
    "log": ([1.0, 0.0, -0.0, np.inf, -1.0, np.nan], [0.0, -np.inf, -np.inf, np.inf, np.nan, np.nan]),
    "log1p": (
        [0.0, -0.0, 1e-30, -1.0, -2.0, np.inf, -np.inf, np.nan],
        [0.0, -0.0, 1e-30, -np.inf, np.nan, np.inf, np.nan, np.nan],
    ),
    "tanh": (
        [0.0, -0.0, 1e-30, -1e-30, 3e38, -3e38, np.inf, -np.inf, np.nan],
        [0.0, -0.0, 1e-30, -1e-30, 1, -1, 1, -1, np.nan],
    ),
    "sigmoid": ([0.0, -0.0, 1e-30, 3e38, -3e38, np.inf, -np.inf, np.nan], [0.5, 0.5, 0.5, 1.0, 0.0, 1.0, 0.0, np.nan]),
    "erf": ([0.0, -0.0, 3e38, -3e38, np.inf, -np.inf, np.nan], [0.0, -0.0, 1.0, -1.0, 1.0, -1.0, np.nan]),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(EDGE_VALUES))
def test_kernels_at_the_edges(name, dtype):
    """Zeros keep their sign where the function is odd, tiny arguments give the first term of
    the series exactly, huge ones and infinities the limits, NaN stays NaN."""
    x, want = (np.array(v, dtype) for v in EDGE_VALUES[name])
    with np.errstate(all="ignore"):
        got = getattr(F32, name + "_")(x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    number = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(EDGE_VALUES))
def test_kernels_are_vectorised_in_their_own_precision(name, dtype, tmp_path, capsys):
    """A loop of a kernel becomes SIMD code in the array's precision: no call (erf was libm's)
    and, for f32, no f64 (computing f32 in f64 halved the elements to a vector)."""
    (tmp_path / "k.dfl").write_text(f"fn main(x) = {name}(x)\n")
    np.save(tmp_path / "x.npy", np.ones(1000, dtype))
    assert cli.main(["show", "--llvm", str(tmp_path / "k.dfl"), "--arg", f"x={tmp_path / 'x.npy'}"]) == 0
    out = capsys.readouterr().out
    opt = out[out.index("; ---- LLVM IR, optimised") : out.index("; ---- assembly")]
    body = opt[opt.index("define void @diffc_entry") :]
    scalar = "float" if dtype is np.float32 else "double"
    assert re.search(rf"<\d+ x {scalar}>", body), "the loop is vectorised"
    assert not re.search(r"call [^@]*@(?!llvm\.)", body), "no call but to LLVM's intrinsics"
    if dtype is np.float32:
        assert "double" not in body


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_without_vscalef_builds_its_power_of_two_in_the_bits(dtype, monkeypatch):
    """Where the CPU has no AVX-512 (no vscalefpd), exp builds 2^k from its bits in two halves:
    right down to the subnormal results and up to the overflow, in both precisions."""
    monkeypatch.setattr(vmath, "_scalef", lambda: False)
    m2 = diffc.compile(f"fn exp_by_bits_{np.dtype(dtype).name}(x) = exp(x)\n")  # a program of its own
    lo, hi = (-750, 712) if dtype is np.float64 else (-110, 95)
    x = np.concatenate([rng.uniform(lo, hi, 20000), rng.normal(size=5000), [0.0, -0.0, np.inf, -np.inf, np.nan]])
    x = x.astype(dtype)
    with np.errstate(all="ignore"):
        got = getattr(m2, f"exp_by_bits_{np.dtype(dtype).name}")(x)
        want = np.exp(x.astype(np.float64)).astype(dtype)
    err = ulps(got, want, dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= (1 if dtype is np.float32 else MAX_ULPS), f"exp({x[worst]!r}) = {got[worst]!r}"


EXACT_BOUND = {"t": 2.0, "l": 1.0, "l1p": 1.5}  # ulps of the exact value
EXACT_CASES = {
    "t": (np.tanh, [rng.uniform(-3, 3, 30000), rng.uniform(0.1, 0.7, 30000), rng.uniform(3, 20, 5000)]),
    "l": (np.log, [rng.uniform(0.5, 2, 30000), np.exp(rng.uniform(-740, 709, 20000))]),
    "l1p": (
        np.log1p,
        [rng.uniform(-1, 3, 30000), rng.uniform(0.3, 0.5, 20000), -1 + np.exp(rng.uniform(-37, 0, 5000))],
    ),
}


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs x87's 64-bit long double")
@pytest.mark.parametrize("name", sorted(EXACT_CASES))
def test_f64_kernel_error_against_the_exact_value(name):
    """In ulps of the exact value (long double's 64 bits: within 2^-11 ulp), not of NumPy's,
    itself up to an ulp off: tanh 2, log 1, log1p 1.5, where the terms cancel most (tanh
    between 0.1 and 0.7, log1p where 1 + x passes sqrt(2))."""
    fn = getattr(m, name)
    ref, parts = EXACT_CASES[name]
    x = np.concatenate(parts)
    exact = ref(x.astype(np.longdouble))
    err = np.abs((fn(x) - exact) / np.spacing(np.abs(exact).astype(np.float64)).astype(np.longdouble))
    worst = int(np.argmax(err))
    assert err[worst] <= EXACT_BOUND[name], f"{name}({x[worst]!r}): {float(err[worst]):.3f} ulps"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["exp", "tanh", "erf"])
def test_nan_flows_through_kernels_without_a_conversion_to_an_integer(name, dtype, tmp_path, capsys):
    """exp, tanh and erf no longer select x back where it is NaN: their NaN must reach the
    result by arithmetic, which a conversion to an integer (fptosi: poison for NaN) would
    break. Their k comes from the bits of a fused multiply-add instead (vmath._reduce_exp,
    vmath._exp_parts)."""
    (tmp_path / "k.dfl").write_text(f"fn main(x) = {name}(x)\n")
    np.save(tmp_path / "x.npy", np.ones(1000, dtype))
    assert cli.main(["show", "--llvm", str(tmp_path / "k.dfl"), "--arg", f"x={tmp_path / 'x.npy'}"]) == 0
    out = capsys.readouterr().out
    generated = out[: out.index("; ---- LLVM IR, optimised")]
    assert "fptosi" not in generated and "fptoui" not in generated
    got = getattr(F32, name + "_")(np.array([np.nan, -np.nan, 1.0], dtype))
    assert np.isnan(got[:2]).all() and not np.isnan(got[2])


# sin and cos of arrays: vmath.sin_array and cos_array, branch-free (f32 computed in f64 and
# rounded once), libm beyond TRIG_VECTOR_MAX on the lanes that need it

ARRAYS = diffc.compile(
    """
fn sin_(x) = sin(x)
fn cos_(x) = cos(x)
fn sum_sin(x) = sum(sin(x))
fn mixed(x) = sum(sin(x) * cos(x) + cos(x))
"""
)


def _mp_ref(name: str, x):
    """sin or cos of each double, correctly rounded (mpmath at 200 bits)."""
    mpmath = pytest.importorskip("mpmath")
    fn = getattr(mpmath, name)
    with mpmath.workprec(200):
        return np.array([float(fn(mpmath.mpf(float(v)))) for v in x])


def _near_multiples_of_pi_over_2(ks):
    """The double nearest each k pi/2 and its two neighbours: r = x - k pi/2 as small as a
    double gets there (down to about 2^-60)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(200):
        x = np.array([float(mpmath.mpf(int(k)) * mpmath.pi / 2) for k in ks])
    return np.concatenate([x, np.nextafter(x, 0), np.nextafter(x, np.inf), -x])


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_array_kernel_is_within_an_ulp_of_the_exact_value(name):
    """Against mpmath, not NumPy (libm's own error): below TRIG_VECTOR_MAX inline, next to the
    multiples of pi/2 (the double-double reduction), beyond it libm's, tiny and subnormal."""
    x = np.concatenate(
        [
            rng.normal(size=3000),
            rng.uniform(-1e3, 1e3, 2000),
            rng.uniform(-(2.0**30), 2.0**30, 2000),
            _near_multiples_of_pi_over_2(np.concatenate([np.arange(1, 500), rng.integers(500, 2**29, 500)])),
            rng.uniform(1, 10, 300) * 10.0 ** rng.integers(9, 308, 300),  # libm's
            rng.normal(size=300) * 1e-9,
            [2.0**30, np.nextafter(2.0**30, 0), 1e300, -1.7976931348623157e308, 5e-324, -1e-310, 2.0**-1022],
        ]
    )
    got = getattr(ARRAYS, name + "_")(x)
    err = ulps(got, _mp_ref(name, x))
    worst = int(np.argmax(err))
    assert err[worst] <= 1, f"{name}({x[worst]!r}) = {got[worst]!r}: {err[worst]:.2f} ulps"


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_f32_array_kernel_rounds_the_f64_result_once(name):
    """f32 computed in f64 and rounded: within an ulp of f64 rounded to f32 up to 3.4e38."""
    x = np.concatenate(
        [rng.normal(size=5000), rng.uniform(-1e5, 1e5, 5000), F32_SWEEP, [3e38, -3.4e38, 1e-45, 1e-40, 1.0]]
    ).astype(np.float32)
    got = getattr(ARRAYS, name + "_")(x)
    assert got.dtype == np.float32
    err = ulps(got, getattr(np, name)(x.astype(np.float64)).astype(np.float32), np.float32)
    worst = int(np.argmax(err))
    assert err[worst] <= 1, f"{name}({x[worst]!r}) = {got[worst]!r}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_array_kernels_at_the_edges(dtype):
    """sin keeps -0 and tiny arguments to the last bit, cos of them is 1; inf and NaN give
    NaN (inf made NaN before libm, which would set errno), the largest finite numbers libm's
    values."""
    big = 1e300 if dtype is np.float64 else 3e38
    x = np.array([0.0, -0.0, 5e-324 if dtype is np.float64 else 1e-45, -1e-30, np.inf, -np.inf, np.nan, big], dtype)
    s, c = ARRAYS.sin_(x), ARRAYS.cos_(x)
    np.testing.assert_array_equal(s[:4], x[:4])
    assert np.signbit(s[1]) and not np.signbit(s[0]) and np.signbit(s[3])
    np.testing.assert_array_equal(c[:4], 1.0)
    assert np.isnan(s[4:7]).all() and np.isnan(c[4:7]).all()
    big64 = np.float64(x[7])
    assert s[7] == np.sin(big64).astype(dtype) and c[7] == np.cos(big64).astype(dtype)


def test_array_results_do_not_depend_on_lanes_or_threads():
    """Every element is computed by the same operations: the vectorised loop's lanes, its
    scalar remainder, libm's lanes and each thread's share give the same bits, so sin of an
    array equals sin of each element alone, at 1, 2 and 3 threads."""
    n = 300_007  # a remainder after the vectors, on every count of threads
    x = rng.normal(size=n) * 10
    x[rng.integers(0, n, 300)] = rng.uniform(1e10, 1e12, 300)  # libm's, here and there
    x[-3:] = [1e15, 0.5, -2e11]  # in the remainder
    results = on_each_count(lambda: ARRAYS.sin_(x))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    alone = np.array([ARRAYS.sin_(x[k : k + 1])[0] for k in range(0, n, 997)] + [ARRAYS.sin_(x[-3:])[0]])
    np.testing.assert_array_equal(alone, np.concatenate([results[0][::997], results[0][-3:-2]]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_array_gradients_of_sin_and_cos(dtype):
    """d sin = cos, d cos = -sin, over arrays (their partials by the array kernels), and a
    product of both against central differences."""
    x = (rng.normal(size=1001) * 3).astype(dtype)
    g = diffc.grad(ARRAYS.sum_sin)(x)
    assert g.dtype == dtype
    np.testing.assert_array_equal(g, ARRAYS.cos_(x))
    x64 = x.astype(np.float64)
    g2 = diffc.grad(ARRAYS.mixed)(x64)
    h = 1e-6
    fd = np.array([(ARRAYS.mixed(x64 + h * e) - ARRAYS.mixed(x64 - h * e)) / (2 * h) for e in np.eye(len(x64))[:20]])
    np.testing.assert_allclose(g2[:20], fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g2, np.cos(2 * x64) - np.sin(x64), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["sin", "cos"])
@pytest.mark.parametrize("form", ["{}(x)", "map(fn(a) => {}(a), x)"])
def test_array_sin_and_cos_are_vectorised(form, name, dtype, tmp_path, capsys):
    """The loop becomes SIMD code (the kernel's fused multiply-adds on vectors) with no call of
    llvm.sin, which LLVM would make once per lane: libm is called only from the masked vector
    variant inlined into the loop, behind a test of the lanes beyond TRIG_VECTOR_MAX. (f32 is
    computed in f64.) So does a map's step, whose numbers take the arrays' kernel (Note
    [Numbers in a map] in lower/emit.py)."""
    (tmp_path / "k.dfl").write_text(f"fn main(x) = {form.format(name)}\n")
    np.save(tmp_path / "x.npy", np.ones(1000, dtype))
    assert cli.main(["show", "--llvm", str(tmp_path / "k.dfl"), "--arg", f"x={tmp_path / 'x.npy'}"]) == 0
    out = capsys.readouterr().out
    opt = out[out.index("; ---- LLVM IR, optimised") : out.index("; ---- assembly")]
    body = opt[opt.index("define void @diffc_entry") :].split("\n}\n")[0]
    assert re.search(r"call <\d+ x double> @llvm\.fma", body), "the kernel is vectorised"
    assert not re.search(r"@llvm\.(sin|cos)", body)
    assert f"{vmath.VARIANT_PREFIX}{name}_m" in body, "the masked variant, inlined"


def test_numbers_in_a_map_take_the_kernels_of_arrays_and_in_a_fold_of_numbers():
    """A map's numbers: the arrays' kernels, the same bits as over the array; a fold's carry
    keeps the kernels of numbers (latency), and pow of numbers libm's."""
    m = diffc.compile(
        "fn s(x) = map(fn(a) => sin(a), x)\nfn p(x, y) = map(fn(a, b) => a ** b, x, y)\n"
        "fn chain(x) = fold(fn(acc, a) => sin(acc + a) + acc ** a, 0.5, x)\n"
    )
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-40, 40, 4096), rng.uniform(-3, 3, 4096)
    np.testing.assert_array_equal(m.s(x), ARRAYS.sin_(x))
    np.testing.assert_array_equal(m.p(np.abs(x), y), diffc.compile("fn f(x, y) = x ** y").f(np.abs(x), y))
    t = TensorType(DType.F64, (64,))
    assert "@llvm.pow" not in llvm_text(m.ast, "p", (t, t))[1]
    assert "@llvm.pow" in llvm_text(m.ast, "chain", (t,))[1]
    xs = rng.uniform(0, 1, 64)
    want = 0.5
    for a in xs:
        want = np.sin(want + a) + want**a
    np.testing.assert_allclose(m.chain(xs), want, rtol=1e-12)


@pytest.mark.skipif(not llvm.get_host_cpu_features().get("avx512f", False), reason="no AVX-512 here")
@pytest.mark.parametrize("dtype", [DType.F64, DType.F32])
def test_with_avx512_the_loops_take_512_bit_vectors(dtype):
    """LLVM's tuning for Intel's AVX-512 cores would vectorise by 256 bits (See Note [Vector
    width] in lower/jit.py): an elementwise kernel's loop runs on 512-bit registers."""
    m = diffc.compile("fn e(x) = exp(x) * 2.0\n")
    assembly = llvm_text(m.ast, "e", (TensorType(dtype, (4096,)),))[2]
    assert re.search(r"vfmadd\w+\s+%zmm", assembly)
    assert not re.search(r"vfmadd\w+\s+%ymm", assembly)


def test_each_unit_of_a_long_module_vectorises_its_sin(monkeypatch):
    """A module long enough to be compiled as two units (Note [Units] in lower/llvm.py) has
    the vector variants in each (weak_odr copies): the loops of both vectorise, and the two
    objects load together."""
    rows = "\n".join(f"    let a{k} = sin(a{k - 1} * {k}.5) + cos(x[{k}:{k + 200}] * a{k - 1});" for k in range(1, 120))
    src = f"fn f(x) {{\n    let a0 = x[0:200];\n{rows}\n    a119\n}}\n"
    m = diffc.compile(src)
    prog, tree = to_ir(m.ast, "f", (TensorType(DType.F64, (400,)),))
    units = module_units(lower_program(prog, tree).module)
    assert len(units) == 2
    for text in units:
        assert re.search(r"call <\d+ x double> @llvm\.fma", str(jit.optimise(text)))
    x = np.linspace(0, 1, 400)
    a = x[0:200]
    for k in range(1, 4):  # (further, the recurrence amplifies an ulp's difference without bound)
        a = np.sin(a * (k + 0.5)) + np.cos(x[k : k + 200] * a)
    short = diffc.compile(src.split("\n    let a4")[0] + "\n    a3\n}\n")
    np.testing.assert_allclose(short.f(x), a, rtol=1e-14)
    assert np.isfinite(m.f(x)).all()


# tanh and log1p over dense samples of each interval their reduction treats alike (issue 12:
# a faster kernel must not be a less accurate one). tanh's k = round(-2|x| log2 e) changes at
# |x| = 0.173, 0.520, 0.866, ...; log1p's e where 1 + x passes sqrt(2)/2 2^j. The bounds are
# the current kernels' over these samples with a little room; the means catch an error that is
# small but systematic (a coefficient off, a rounding done twice).
DENSE = {  # name: (function, reference, intervals, max ulps, mean ulps)
    "tanh": (m.t, np.tanh, [0, 0.173, 0.52, 0.866, 1.21, 2, 4, 19.1], 2.1, 0.6),
    "log1p": (m.l1p, np.log1p, [-0.9999, -0.5, -0.293, 0, 0.414, 1.83, 4.66, 1e3], 1.5, 0.3),
}


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs x87's 64-bit long double")
@pytest.mark.parametrize("name", sorted(DENSE))
def test_f64_kernel_over_dense_samples_of_each_interval(name):
    """40,000 points in each interval against long double (within 2^-11 ulp of the exact
    value): the worst error and the mean, in each interval."""
    fn, ref, edges, bound, mean = DENSE[name]
    local = np.random.default_rng(12)
    for lo, hi in zip(edges, edges[1:]):
        x = local.uniform(lo, hi, 40000)
        if name == "tanh":
            x = np.concatenate([x, -x])
        exact = ref(x.astype(np.longdouble))
        err = np.abs((fn(x) - exact) / np.spacing(np.abs(exact).astype(np.float64)).astype(np.longdouble))
        worst = int(np.argmax(err))
        assert err[worst] <= bound, f"{name}({x[worst]!r}): {float(err[worst]):.3f} ulps in [{lo}, {hi})"
        assert err.mean() <= mean, f"{name} over [{lo}, {hi}): {float(err.mean()):.3f} ulps on average"


def _every_nth_f32(lo: float, hi: float, step: int):
    """Every step-th float32 from lo up to hi (both positive), by their bits."""
    bits = np.arange(np.float32(lo).view(np.int32), np.float32(hi).view(np.int32), step, dtype=np.int32)
    return bits.view(np.float32)


@pytest.mark.parametrize("name", ["tanh", "log1p"])
def test_f32_kernel_over_every_256th_float(name):
    """Every 256th float32 (2^15 a binade) from 2^-20 to 20 (tanh, of both signs; log1p up to
    1e4 and, below zero, down to -1) against f64 rounded to f32: tanh within 2 ulps, log1p
    within 1."""
    if name == "tanh":
        x = _every_nth_f32(2.0**-20, 20.0, 256)
        x = np.concatenate([x, -x])
    else:
        x = np.concatenate([_every_nth_f32(2.0**-20, 1e4, 256), -_every_nth_f32(2.0**-20, 1.0, 256)])
    got = getattr(F32, name + "_")(x)
    want = getattr(np, name)(x.astype(np.float64)).astype(np.float32)
    err = ulps(got, want, np.float32)
    worst = int(np.argmax(err))
    bound = 2 if name == "tanh" else 1
    assert err[worst] <= bound, f"{name}({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["tanh", "log1p", "exp"])
def test_kernel_bits_do_not_depend_on_lanes_or_threads(name, dtype):
    """The vectorised loop's lanes, its scalar remainder and each thread's share compute every
    element by the same operations: an array gives the bits of each element alone (a loop of
    one: the remainder), at 1, 2 and 3 threads, the edges (NaN, infinities, -0, subnormals,
    -1 for log1p, huge) both in the vectors and in the remainder."""
    n = 300_007
    local = np.random.default_rng(7)
    x = (local.normal(size=n) * 4).astype(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    edges = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, tiny, -tiny, -1.0, 0.5, np.finfo(dtype).max], dtype)
    x[local.integers(0, n - 16, 200)] = local.choice(edges, 200)
    x[-len(edges) :] = edges  # the remainder
    fn = getattr(F32, name + "_")
    with np.errstate(all="ignore"):
        results = on_each_count(lambda: fn(x))
        for r in results[1:]:
            np.testing.assert_array_equal(r.view(np.uint8), results[0].view(np.uint8))
        picked = np.concatenate([np.arange(0, n, 499), np.flatnonzero(~np.isfinite(x) | (x == 0))[:50], [n - 1, n - 4]])
        alone = np.array([fn(x[k : k + 1])[0] for k in picked], dtype)
    np.testing.assert_array_equal(alone.view(np.uint8), results[0][picked].view(np.uint8))


# pow: vmath.pow over arrays (branch-free; f32 computed in f64 and rounded once), libm's for
# numbers, and vmath.pow_constant's exact forms where the exponent is a constant

POW = diffc.compile(
    """
fn p(x, y) = x ** y
fn p32(x, y) = f32(x) ** f32(y)
fn sum_p(x, y) = sum(x ** y)
fn c0(x) = x ** 0.0
fn c1(x) = x ** 1
fn c2(x) = x ** 2
fn c3(x) = x ** 3
fn c4(x) = x ** 4
fn cm1(x) = x ** -1
fn cm2(x) = x ** -2.0
fn ch(x) = x ** 0.5
fn cmh(x) = x ** -0.5
fn c1h(x) = x ** 1.5
fn c7(x) = x ** 7
fn sum_c3(x) = sum(x ** 3)
fn sum_c1h(x) = sum(abs(x) ** 1.5)
"""
)
CONSTANTS = {"c0": 0.0, "c1": 1.0, "c2": 2.0, "c3": 3.0, "c4": 4.0, "cm1": -1.0, "cm2": -2.0}
CONSTANTS |= {"ch": 0.5, "cmh": -0.5, "c1h": 1.5, "c7": 7.0}


def _mp_pow(x, y):
    """x ** y of each pair of doubles, correctly rounded (mpmath at 300 bits; 0 and inf where
    the exact value rounds there)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(300):
        return np.array([float(mpmath.power(mpmath.mpf(float(a)), mpmath.mpf(float(b)))) for a, b in zip(x, y)])


def _pow_cases(local, n):
    """(x, y) where pow is hardest and everywhere else: |y log x| up to the overflow and the
    subnormals, x next to sqrt(2) (the largest reduced argument) with |y| about 2000, x < 0
    with integral y, tiny and huge y, subnormal x."""
    x0 = np.exp(local.uniform(-700, 700, n))
    y0 = local.uniform(-745, 709, n) / np.log(x0)
    x1 = local.uniform(1.40, 1.4143, n) * local.choice([1.0, 0.5], n)
    y1 = local.choice([-1.0, 1.0], n) * local.uniform(1900, 2110, n)
    x2 = -local.uniform(0, 5, n)
    y2 = local.integers(-400, 400, n).astype(float)
    x3 = local.uniform(0, 10, n)
    y3 = local.normal(size=n) * 10.0 ** local.integers(-20, 3, n)
    x4 = local.uniform(1e-320, 1e-300, n)
    y4 = local.uniform(-1.05, 1.05, n)
    return np.concatenate([x0, x1, x2, x3, x4]), np.concatenate([y0, y1, y2, y3, y4])


def test_pow_is_within_an_ulp_of_the_exact_value():
    """Against mpmath: within 1 ulp (0.82 at worst, x next to sqrt(2) and |y log x| near 745,
    where log x's double-double matters most; 2.5-10 ulps before s^5 was taken from s's
    double-double), at every size of result down to the subnormals."""
    x, y = _pow_cases(np.random.default_rng(31), 600)
    got = POW.p(x, y)
    err = ulps(got, _mp_pow(x, y))
    worst = int(np.argmax(err))
    assert err[worst] <= 1, f"pow({x[worst]!r}, {y[worst]!r}) = {got[worst]!r}: {err[worst]:.2f} ulps"


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs x87's 64-bit long double")
def test_pow_over_many_arguments_against_long_double():
    """400,000 pairs against long double's powl (within 2^-11 ulp): the worst within 1 ulp, and
    at most one result in twenty (2% here, most where |y log x| is large) not the correctly
    rounded one."""
    x, y = _pow_cases(np.random.default_rng(32), 80_000)
    exact = np.power(x.astype(np.longdouble), y.astype(np.longdouble))
    got = POW.p(x, y)
    with np.errstate(over="ignore"):
        unit = np.spacing(np.maximum(np.abs(exact).astype(np.float64), 5e-324)).astype(np.longdouble)
    err = np.abs((got - exact) / unit).astype(np.float64)
    err[got == exact.astype(np.float64)] = 0.0
    worst = int(np.argmax(err))
    assert err[worst] <= 1, f"pow({x[worst]!r}, {y[worst]!r}): {err[worst]:.3f} ulps"
    assert (err >= 0.5).mean() < 0.05


def test_f32_pow_is_rounded_once_from_f64():
    """f32 computed in f64 (|y log x| 2^-52 off, far below f32's ulp): the f64 result rounded
    to f32, within an ulp of it, down to f32's subnormals and up to its overflow."""
    local = np.random.default_rng(33)
    x, y = _pow_cases(local, 20_000)
    x32 = np.concatenate([x, np.exp(local.uniform(-100, 88, 20_000))]).astype(np.float32)
    y32 = np.concatenate([y, local.uniform(-104, 88, 20_000) / np.log(x32[-20_000:].astype(np.float64))])
    y32 = y32.astype(np.float32)
    with np.errstate(all="ignore"):
        got = POW.p32(x32, y32)
        want = np.power(x32.astype(np.float64), y32.astype(np.float64)).astype(np.float32)
    assert got.dtype == np.float32
    err = ulps(got, want, np.float32)
    worst = int(np.argmax(err))
    assert err[worst] <= 1, f"pow({x32[worst]!r}, {y32[worst]!r}) = {got[worst]!r}, want {want[worst]!r}"


# C99's (and NumPy's) edges: each pair's result is exact, so that NumPy's must be ours bit for bit
POW_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 1.5, -1.5, 4.0, -0.25]
POW_EDGES += [np.inf, -np.inf, np.nan, 2.0**53, -(2.0**53), 2.0**52 + 1, -(2.0**52 + 1), 2.0**64, 1e300, -1e300]
POW_EDGES += [5e-324, -5e-324, 2.0**-1022, 1.7976931348623157e308, 1 + 2.0**-52, -(1 - 2.0**-53)]


def _exact_pairs(dtype):
    """Every pair of POW_EDGES in dtype whose result NumPy computes exactly: a special value
    (0, inf, NaN, +-1) or a power of two."""
    v = np.array(POW_EDGES, dtype=np.float64).astype(dtype)
    x, y = (a.ravel() for a in np.meshgrid(v, v))
    with np.errstate(all="ignore"):
        want = np.power(x.astype(np.float64), y.astype(np.float64)).astype(dtype)
    mant = np.frexp(np.abs(want.astype(np.float64)))[0]
    keep = ~np.isfinite(want) | (want == 0) | (mant == 0.5)
    return x[keep], y[keep], want[keep]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pow_edges_are_numpys_bit_for_bit(dtype):
    """pow(x, +-0) = 1 even for NaN x, pow(1, y) = 1 even for NaN y, pow(-1, +-inf) = 1, x < 0
    with integral y signed by its parity (2^53 and beyond even, 2^52 + 1 odd), with
    non-integral y NaN, +-0 and +-inf both ways, NaN otherwise; arrays (the kernel, in the
    vectors and in the remainder) and numbers (libm) alike."""
    x, y, want = _exact_pairs(dtype)
    assert len(x) > 300
    fn = POW.p if dtype is np.float64 else POW.p32
    with np.errstate(all="ignore"):
        got = fn(x, y)
        numbers = np.array([fn(a, b) for a, b in zip(x[::7], y[::7])], dtype)
    assert got.dtype == dtype

    def bits(v):
        return np.where(np.isnan(v), np.nan, v).astype(dtype).view(np.uint64 if dtype is np.float64 else np.uint32)

    bad = np.flatnonzero(bits(got) != bits(want))
    assert not len(bad), [(x[k], y[k], got[k], want[k]) for k in bad[:5]]
    np.testing.assert_array_equal(bits(numbers), bits(want[::7]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_constant_exponents_keep_pows_edges(name, dtype):
    """A constant exponent's exact form (vmath.pow_constant) has pow's edges: sqrt(-0) would
    be -0 and sqrt(-inf) NaN, where pow gives +0 and +inf; x ** -2 of a tiny x is inf."""
    x = np.array(POW_EDGES + [1e-160, -1e-160, 7.5e-155, 1e155], np.float64).astype(dtype)
    y = CONSTANTS[name]
    with np.errstate(all="ignore"):
        got = getattr(POW, name)(x)
        want = np.power(x.astype(np.float64), np.full(len(x), y)).astype(dtype)  # (C's pow: NumPy's x ** 0.5 is sqrt)
    special = ~np.isfinite(want) | (want == 0) | (np.abs(x) == 1)
    np.testing.assert_array_equal(got[special], want[special])
    number = special & ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_constant_exponents_are_within_two_ulps(name):
    """Each exact form against the correctly rounded pow, over every binade: within 2 ulps
    ((x x)^2 and (1/x)^2, a rounded square squared, up to 1.91; x x x 1.5; the rest less),
    f32 within 2 ulps of f64 rounded."""
    y = CONSTANTS[name]
    local = np.random.default_rng(34)
    x = np.concatenate([local.uniform(0.5, 2, 3000), 2.0 ** local.uniform(-1074, 1023, 3000)])
    x = np.concatenate([x, -x[::3]]) if float(y).is_integer() else x
    got = getattr(POW, name)(x)
    err = ulps(got, _mp_pow(x, np.full_like(x, y)))
    worst = int(np.argmax(err))
    assert err[worst] <= 2, f"{x[worst]!r} ** {y} = {got[worst]!r}: {err[worst]:.2f} ulps"
    x32 = x.astype(np.float32)
    with np.errstate(all="ignore"):
        want = np.power(x32.astype(np.float64), y).astype(np.float32)
        err = ulps(getattr(POW, name)(x32), want, np.float32)
    assert err.max() <= 2


def _generated(tmp_path, capsys, src: str, dtype=np.float64, entry="main") -> str:
    (tmp_path / "k.dfl").write_text(src)
    np.save(tmp_path / "x.npy", np.ones(1000, dtype))
    args = ["show", "--llvm", str(tmp_path / "k.dfl"), "--entry", entry, "--arg", f"x={tmp_path / 'x.npy'}"]
    assert cli.main(args) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pow_of_arrays_is_vectorised_without_calls(dtype, tmp_path, capsys):
    """x ** y over arrays becomes SIMD code with no call (it was libm's pow, one call an
    element, which kept the loop scalar); f32 is computed in f64."""
    out = _generated(tmp_path, capsys, "fn main(x) = x ** (x + 0.5)\n", dtype)
    opt = out[out.index("; ---- LLVM IR, optimised") : out.index("; ---- assembly")]
    body = opt[opt.index("define void @diffc_entry") :]
    assert re.search(r"call <\d+ x double> @llvm\.fma", body), "the kernel is vectorised"
    assert not re.search(r"call [^@]*@(?!llvm\.)", body) and "@llvm.pow" not in body


@pytest.mark.parametrize("src", ["fn main(x) = sum(x ** 3)", "fn main(x) = sum(abs(x) ** 1.5)"])
def test_constant_exponents_and_their_derivatives_take_the_exact_forms(src, tmp_path, capsys):
    """x ** 3 is (x x) x and its derivative's x ** 2 (the exponent 3 - 1, which the IR does not
    fold, is found in its register's instructions) x x; abs(x) ** 1.5 is |x| sqrt|x|, its
    derivative's x ** 0.5 a square root: neither calls pow nor runs the kernel (no fused
    multiply-add), over a million elements too (parallel loops' pieces compute the exponent
    again)."""
    for size in (1000, 1_000_000):
        (tmp_path / "k.dfl").write_text(f"{src}\nfn g(x) = grad(main)(x)\n")
        np.save(tmp_path / "x.npy", np.ones(size))
        for entry in ("main", "g"):
            args = ["--entry", entry, "--arg", f"x={tmp_path / 'x.npy'}"]
            assert cli.main(["show", "--llvm", str(tmp_path / "k.dfl"), *args]) == 0
            out = capsys.readouterr().out
            generated = out[: out.index("; ---- LLVM IR, optimised")]
            assert "llvm.pow" not in generated and "llvm.fma" not in generated
            assert ("llvm.sqrt" in generated) == ("1.5" in src)


def test_pow_bits_do_not_depend_on_lanes_or_threads():
    """Every element by the same operations: an array gives each element's bits alone (a loop of
    one, the remainder), at 1, 2 and 3 threads, with the edges in the vectors and the remainder."""
    n = 300_007
    local = np.random.default_rng(35)
    x, y = np.exp(local.normal(size=n) * 3), local.normal(size=n) * 30
    edges = [(0.0, -3.0), (-0.0, -3.0), (-2.0, 3.0), (-2.0, 0.5), (np.nan, 0.0), (1.0, np.nan), (-1.0, np.inf)]
    edges += [(np.inf, -0.5), (-np.inf, 3.0), (5e-324, 0.5), (1e300, 3.0), (0.5, 2000.0)]
    ex, ey = (np.array(v) for v in zip(*edges))
    where = local.integers(0, n - 16, 100)
    x[where], y[where] = ex[where % len(ex)], ey[where % len(ey)]
    x[-len(ex) :], y[-len(ey) :] = ex, ey
    with np.errstate(all="ignore"):
        results = on_each_count(lambda: POW.p(x, y))
        for r in results[1:]:
            np.testing.assert_array_equal(r.view(np.uint64), results[0].view(np.uint64))
        picked = np.concatenate([np.arange(0, n, 997), where[:30], [n - 1, n - 5]])
        alone = np.array([POW.p(x[k : k + 1], y[k : k + 1])[0] for k in picked])
    np.testing.assert_array_equal(alone.view(np.uint64), results[0][picked].view(np.uint64))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pow_gradients_against_central_differences(dtype):
    """d(x ** y)/dx = y x ** (y - 1) (the kernel again) and d/dy = x ** y log x, over arrays,
    against central differences of the compiled function; the constant exponents' derivatives
    (their exact forms: 3 x ** 2, 1.5 |x| ** 0.5 sign x) against the closed forms."""
    local = np.random.default_rng(36)
    x = np.exp(local.normal(size=1001) / 2).astype(dtype).astype(np.float64)
    y = (local.normal(size=1001) * 2).astype(dtype).astype(np.float64)
    gx, gy = diffc.grad(POW.sum_p, (0, 1))(x.astype(dtype), y.astype(dtype))
    assert gx.dtype == dtype
    rtol = 1e-9 if dtype is np.float64 else 2e-6
    np.testing.assert_allclose(gx, y * x ** (y - 1), rtol=rtol)
    np.testing.assert_allclose(gy, x**y * np.log(x), rtol=rtol, atol=1e-300)
    if dtype is np.float64:  # each element's own central difference (sum's partials are its terms')
        h = 1e-6
        np.testing.assert_allclose(gx, (POW.p(x + h, y) - POW.p(x - h, y)) / (2 * h), rtol=1e-6)
        np.testing.assert_allclose(gy, (POW.p(x, y + h) - POW.p(x, y - h)) / (2 * h), rtol=1e-6, atol=1e-9)
    z = (local.normal(size=1001) * 2).astype(dtype)
    np.testing.assert_allclose(diffc.grad(POW.sum_c3)(z), 3 * z.astype(np.float64) ** 2, rtol=rtol)
    want = 1.5 * np.sqrt(np.abs(z.astype(np.float64))) * np.sign(z)
    np.testing.assert_allclose(diffc.grad(POW.sum_c1h)(z), want, rtol=rtol)
