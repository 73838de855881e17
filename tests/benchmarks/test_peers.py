"""The benchmark harness (benchmarks/): the NumPy peer against WORKLOADS.md's reference values,
the JAX and PyTorch peers against the NumPy one (skipped when not installed), the runner's
correctness check, and a quick run of the runner end to end in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import check, impls  # noqa: E402
from benchmarks.data import NAMES, REFERENCE, data  # noqa: E402
from benchmarks.peers import numpy_peer  # noqa: E402


@pytest.mark.parametrize("name", NAMES)
def test_numpy_peer_matches_the_reference_values(name):
    params, inputs = data(name)
    fwd, value_and_grad = numpy_peer.make(name, params, inputs)
    ref_loss, ref_norms = REFERENCE[name]
    loss, grads = value_and_grad()
    assert fwd() == pytest.approx(ref_loss, rel=1e-9)
    assert loss == pytest.approx(ref_loss, rel=1e-9)
    assert [np.shape(g) for g in grads] == [np.shape(p) for p in params]
    assert [float(np.linalg.norm(g)) for g in grads] == pytest.approx(ref_norms, rel=1e-7)


def test_numpy_gradient_matches_finite_differences():
    """The reference values hold norms only; a central difference checks one entry per param."""
    rng = np.random.default_rng(0)
    for name in ("lstm_scan", "conv_small", "ode_rk4"):
        params, inputs = data(name)
        _, grads = numpy_peer.make(name, params, inputs)[1]()
        for i, p in enumerate(params):
            at = tuple(int(rng.integers(0, n)) for n in np.shape(p))
            eps = 1e-6
            bumped = [[q.copy() for q in params] for _ in range(2)]
            bumped[0][i][at] += eps
            bumped[1][i][at] -= eps
            up, down = (numpy_peer.make(name, b, inputs)[0]() for b in bumped)
            assert (up - down) / (2 * eps) == pytest.approx(grads[i][at], rel=1e-5, abs=1e-8), (name, i, at)


def test_the_check_flags_a_wrong_gradient_and_nan():
    reference = (2.0, [np.array([1.0, -3.0]), np.array(0.5)])
    assert check.compare(2.0, (2.0 + 1e-12, [np.array([1.0, -3.0 + 1e-9]), 0.5]), reference)["ok"]
    wrong = check.compare(2.0, (2.0, [np.array([1.0, -3.001]), 0.5]), reference)
    assert not wrong["ok"] and wrong["worst"] == pytest.approx(1e-3 / 3)
    assert not check.compare(float("nan"), (2.0, [np.array([1.0, -3.0]), 0.5]), reference)["ok"]
    assert not check.compare(2.0, (2.0, [np.array([1.0, -3.0])]), reference)["ok"]
    assert not check.compare(2.0, (2.0, [np.ones(3), 0.5]), reference)["ok"]


@pytest.mark.parametrize("impl", ["jax", "torch"])
def test_peer_agrees_with_numpy(impl):
    ok, reason = impls.available(impl)
    if not ok:
        pytest.skip(reason)
    for name in NAMES:
        params, inputs = data(name)
        reference = numpy_peer.make(name, params, inputs)[1]()
        fwd, value_and_grad = impls.make(impl, name, params, inputs)
        result = check.compare(fwd(), value_and_grad(), reference)
        assert result["ok"], (name, result)


def run_benchmarks(*args, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != "DIFFC_VERIFY"}  # time diffc as users run it
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_runner_check_only():
    proc = run_benchmarks("--check-only", "--impl", "diffc,numpy", "--only", "ode_rk4,while_newton,attention")
    assert proc.returncode == 0, proc.stderr
    rows = [
        line
        for line in proc.stdout.splitlines()
        if line.startswith("| ") and "workload" not in line and "---" not in line
    ]
    assert len(rows) == 6 and all("| ok |" in row for row in rows), proc.stdout


def test_runner_quick_end_to_end(tmp_path):
    proc = run_benchmarks("--quick", "--only", "ode_rk4", "--impl", "diffc,numpy", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Value and gradient" in proc.stdout and "probe diffc ode_rk4" in proc.stderr
    results = json.loads((tmp_path / "latest.json").read_text())
    assert len(list(tmp_path.glob("*.json"))) == 2
    entry = results["workloads"]["ode_rk4"]["diffc"]
    assert entry["status"] == "ok" and entry["check"]["worst"] <= 1e-6
    assert entry["vg"]["median_us"] > 0 and entry["vg"]["min_us"] <= entry["vg"]["median_us"]
    assert entry["compile_ms"]["vg_cold"] > 0 and entry["compile_ms"]["vg_warm"] > 0
    assert entry["memory"]["process_peak_mib"] > 0
    assert results["workloads"]["ode_rk4"]["numpy"]["status"] == "ok"
