"""The vectorised math kernels (diffc/lower/vmath.py) against NumPy, in ulps, over their whole
range and at the edges: overflow, underflow to subnormals and zero, infinities, NaN, signed zero.
The f32 kernels, computed in f32, against the f64 reference rounded to f32."""

import math
import re

import numpy as np
import pytest
from support.native import on_each_count, restore_threads  # noqa: F401 (a fixture)

import diffc
from diffc import cli
from diffc.lower import jit, vmath
from diffc.lower.llvm import lower_program, module_units
from diffc.pipeline import to_ir
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
def test_array_sin_and_cos_are_vectorised(name, dtype, tmp_path, capsys):
    """The loop becomes SIMD code (the kernel's fused multiply-adds on vectors) with no call of
    llvm.sin, which LLVM would make once per lane: libm is called only from the masked vector
    variant inlined into the loop, behind a test of the lanes beyond TRIG_VECTOR_MAX. (f32 is
    computed in f64.)"""
    (tmp_path / "k.dfl").write_text(f"fn main(x) = {name}(x)\n")
    np.save(tmp_path / "x.npy", np.ones(1000, dtype))
    assert cli.main(["show", "--llvm", str(tmp_path / "k.dfl"), "--arg", f"x={tmp_path / 'x.npy'}"]) == 0
    out = capsys.readouterr().out
    opt = out[out.index("; ---- LLVM IR, optimised") : out.index("; ---- assembly")]
    body = opt[opt.index("define void @diffc_entry") :].split("\n}\n")[0]
    assert re.search(r"call <\d+ x double> @llvm\.fma", body), "the kernel is vectorised"
    assert not re.search(r"@llvm\.(sin|cos)", body)
    assert f"{vmath.VARIANT_PREFIX}{name}_m" in body, "the masked variant, inlined"


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
