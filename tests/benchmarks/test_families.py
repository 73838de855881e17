"""The benchmark families (benchmarks/families.py) at their smallest size: diffc's program
compiles in f64 and f32, its gradient matches central differences, and its value and gradient
match the PyTorch peer's (when torch is importable); the runner's agreement check, the ratio to
the best peer, the CPU-time check and the pinning to one core (in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import affinity, family_report, family_runner  # noqa: E402
from benchmarks.families import BY_NAME, FAMILIES, NAMES, data  # noqa: E402


@pytest.fixture(scope="module")
def programs():
    return {}


def smallest(name, dtype, programs):
    fam = BY_NAME[name]
    if name not in programs:
        programs[name] = family_runner.DiffcFamily(fam.source)
    params, inputs = data(fam, fam.sizes[0], dtype)
    return params, inputs, programs[name].make(params, inputs)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_central_differences(name, programs):
    params, inputs, (fwd, vg) = smallest(name, "f64", programs)
    value, grads = vg()
    assert value == pytest.approx(fwd(), rel=1e-12)
    assert [g.shape for g in grads] == [p.shape for p in params]
    rng = np.random.default_rng(0)
    direction = [rng.standard_normal(p.shape) for p in params]
    eps = 1e-6
    shifted = [programs[name].make([p + s * eps * d for p, d in zip(params, direction)], inputs)[0]() for s in (1, -1)]
    slope = (shifted[0] - shifted[1]) / (2 * eps)
    assert float(sum(np.sum(g * d) for g, d in zip(grads, direction))) == pytest.approx(slope, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_diffc_agrees_with_pytorch(name, dtype, programs):
    pytest.importorskip("torch")
    from benchmarks.peers import torch_families

    params, inputs, (fwd, vg) = smallest(name, dtype, programs)
    theirs = torch_families.make(name, params, inputs)
    ours = (fwd(), vg())
    assert all(g.dtype == params[0].dtype for g in ours[1][1])
    assert family_runner.agreement(ours, (theirs[0](), theirs[1]())) <= family_runner.RTOL[dtype]


def test_every_family_has_a_peer_and_growing_sizes():
    from benchmarks.peers import jax_families, torch_families

    assert set(NAMES) == set(torch_families.LOSSES) == set(jax_families.LOSSES)
    for fam in FAMILIES:
        assert len(fam.sizes) >= 3
        counts = [sum(np.size(a) for a in sum(data(fam, s, "f32"), [])) for s in fam.sizes]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), fam.name


def test_agreement_flags_a_wrong_gradient_a_wrong_count_and_nan():
    good = (2.0, (2.0, [np.array([1.0, -3.0])]))
    assert family_runner.agreement(good, (2.0, (2.0, [np.array([1.0, -3.0 + 1e-9])]))) < 1e-6
    assert family_runner.agreement(good, (2.0, (2.0, [np.array([1.0, -3.003])]))) == pytest.approx(0.003 / 3.003)
    assert family_runner.agreement(good, (2.0, (2.0, [np.array([1.0, np.nan])]))) == float("inf")
    assert family_runner.agreement(good, (2.0, (2.0, []))) == float("inf")


def row(**medians):
    return {
        "impls": {name: ({"vg": {"median_us": us}} if us else {"status": "mismatch"}) for name, us in medians.items()}
    }


def test_ratio_is_against_the_fastest_peer_that_passed():
    assert family_report.ratio(row(diffc=50.0, torch=100.0, jax=200.0)) == pytest.approx(0.5)
    assert family_report.best_peer(row(diffc=50.0, torch=None, jax=25.0)) == ("jax", 25.0)
    assert family_report.ratio(row(diffc=50.0, torch=None)) is None
    assert family_report.ratio(row(diffc=None, torch=10.0)) is None


def test_cpu_time_check():
    assert affinity.warning(1.0, 1.0, threads=1) == ""
    assert affinity.warning(1.05, 1.0, threads=1) == ""
    assert "more than one core" in affinity.warning(1.9, 1.0, threads=1)
    assert "waited" in affinity.warning(0.5, 1.0, threads=1)
    assert affinity.warning(1.9, 1.0, threads=2) == ""  # several threads may use several cores
    assert affinity.warning(0.0, 0.0, threads=1) == ""


def test_pinning_leaves_one_core_and_cpu_time_equals_wall_time():
    """In a new process (pinning this one would slow the rest of the tests): after the pin,
    one core is allowed, and two busy threads take as much CPU time as wall time."""
    code = """
import threading
from benchmarks import affinity
core = affinity.pin_to_one_core()
def spin():
    x = 0
    for i in range(300000):
        x += i
def both():
    ts = [threading.Thread(target=spin) for _ in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
cpu, wall = affinity.cpu_and_wall(both, 0.05)
print(affinity.cores(), core, cpu <= wall * 1.05)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cores, core, within = out.stdout.split()
    assert cores == "1" and within == "True"


def test_agreement_scales_by_the_whole_gradient():
    """A gradient that is zero in exact arithmetic holds noise: judged against the largest entry
    of every param's gradient, not against its own noise."""
    ours = (2.0, (2.0, [np.array([1.0, -3.0]), np.array([1e-17])]))
    theirs = (2.0, (2.0, [np.array([1.0, -3.0]), np.array([-2e-17])]))
    assert family_runner.agreement(ours, theirs) == pytest.approx(1e-17)
    assert family_runner.agreement(ours, (2.0, (2.0, [np.array([1.0, -3.0]), np.array([0.1])]))) > 1e-3


def results():
    timed = {"median_us": 100.0, "min_us": 90.0, "cpu_over_wall": 1.0, "warning": ""}
    slow = {**timed, "median_us": 400.0, "cpu_over_wall": 1.9, "warning": "1.90 (more than one core)"}
    ok = {"status": "ok", "fwd": timed, "vg": timed, "compile_s": {"fwd": 0.1, "vg": 0.2}}
    rows = [
        {"family": "mlp", "dtype": "f64", "label": "small", "impls": {"diffc": ok, "torch": {**ok, "vg": slow}}},
        {"family": "mlp", "dtype": "f64", "label": "large", "impls": {"diffc": {"status": "mismatch"}, "torch": ok}},
    ]
    meta = {"pinned_to_one_core": True, "threads": 1, "peers": ["torch"], "missing_peers": {"jax": "not installed"}}
    return {"meta": meta, "rows": rows}


def test_tables_show_the_ratio_a_mismatch_and_the_cpu_check():
    text = family_report.render(results())
    small, large = [line for line in text.splitlines() if line.startswith("| mlp")]
    assert "**0.25**" in small and "torch 1.00/1.90" in small
    assert "MISMATCH" in large and "**" not in large
    assert "missing: jax" in text and "pinned to one core" in text


def test_the_plot_without_matplotlib_is_an_svg_of_the_ratios(tmp_path):
    written = Path(family_report.plot(results(), tmp_path / "families.svg"))
    svg = written.read_text()
    assert written.suffix == ".svg" and svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1  # the mismatch is not drawn


def test_families_command_end_to_end(tmp_path):
    """One family, its quick sizes, f32: the command exits 0 and writes the JSON, the table and
    the plot (with whichever peers this Python has)."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "families", "--quick", "--only", "comprehension", "--dtype", "f32"]
        + [
            "--threads",
            "1",
            "--out",
            str(tmp_path),
            "--table",
            str(tmp_path / "t.md"),
            "--plot",
            str(tmp_path / "p.svg"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    saved = json.loads((tmp_path / "families.json").read_text())
    assert saved["meta"]["pinned_to_one_core"] and [r["label"] for r in saved["rows"]] == ["n=32", "n=128", "n=512"]
    assert all(r["impls"]["diffc"]["status"] == "ok" for r in saved["rows"])
    assert (tmp_path / "t.md").read_text().count("| comprehension |") == 3 and (tmp_path / "p.svg").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks", "families", "--only", "nope"], cwd=ROOT, capture_output=True
    )
    assert bad.returncode == 2 and b"unknown nope" in bad.stderr
