"""The compile cache on disk: a new process is served from it, a damaged entry is rebuilt,
DIFFC_CACHE=0 turns it off, print sites of cached code print right next to other programs'."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROGRAM = """
fn main(x) {
    print("value", x * 2.0);
    sum(for i in 0..3 => x * f64(i))
}
"""
OTHER = """
fn main() {
    print("other first");
    1.0
}
"""


def run(tmp_path, cache, *args, env=None):
    e = dict(os.environ, DIFFC_CACHE_DIR=str(cache), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "diffc", "run", "--time-passes", *args],
        cwd=tmp_path,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def prog(tmp_path):
    (tmp_path / "p.dfl").write_text(PROGRAM)
    (tmp_path / "o.dfl").write_text(OTHER)
    return tmp_path


def test_a_new_process_is_served_from_the_cache(prog, tmp_path):
    cache = tmp_path / "cache"
    first = run(prog, cache, "p.dfl", "--arg", "x=1.5")
    second = run(prog, cache, "p.dfl", "--arg", "x=1.5")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "load from cache" not in first.stderr and "load from cache" in second.stderr
    assert first.stdout == second.stdout == "value 3.0\n4.5\n"
    assert list(cache.glob("*.bin"))


def test_another_signature_or_source_compiles_again(prog, tmp_path):
    cache = tmp_path / "cache"
    run(prog, cache, "p.dfl", "--arg", "x=1.5")
    assert "load from cache" not in run(prog, cache, "p.dfl", "--arg", "x=[1.0, 2.0]").stderr
    (prog / "p.dfl").write_text(PROGRAM.replace("2.0", "3.0"))
    changed = run(prog, cache, "p.dfl", "--arg", "x=1.5")
    assert "load from cache" not in changed.stderr and changed.stdout.startswith("value 4.5")


def test_a_damaged_entry_is_detected_and_rebuilt(prog, tmp_path):
    cache = tmp_path / "cache"
    run(prog, cache, "p.dfl", "--arg", "x=1.5")
    (entry,) = list(cache.glob("*.bin"))
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    again = run(prog, cache, "p.dfl", "--arg", "x=1.5")
    assert again.returncode == 0 and again.stdout.endswith("4.5\n")
    assert "load from cache" not in again.stderr
    assert "load from cache" in run(prog, cache, "p.dfl", "--arg", "x=1.5").stderr


def test_the_cache_can_be_turned_off(prog, tmp_path):
    cache = tmp_path / "cache"
    for _ in range(2):
        r = run(prog, cache, "p.dfl", "--arg", "x=1.5", env={"DIFFC_CACHE": "0"})
        assert r.returncode == 0 and "load from cache" not in r.stderr
    assert not list(cache.glob("*.bin"))


def test_cached_print_sites_are_numbered_after_other_programs(prog, tmp_path):
    cache = tmp_path / "cache"
    run(prog, cache, "p.dfl", "--arg", "x=1.5")
    script = "import diffc\ndiffc.load('o.dfl').main()\nprint(diffc.load('p.dfl').main(1.5))\n"
    e = dict(os.environ, DIFFC_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", script], cwd=prog, env=e, capture_output=True, text=True, timeout=120)
    assert out.stdout == "other first\nvalue 3.0\n4.5\n", out.stderr


def test_cache_clear(prog, tmp_path):
    cache = tmp_path / "cache"
    run(prog, cache, "p.dfl", "--arg", "x=1.5")
    e = dict(os.environ, DIFFC_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-m", "diffc", "cache", "clear"], env=e, capture_output=True, text=True)
    assert out.returncode == 0 and "removed 1 entries" in out.stdout
    assert not list(Path(cache).glob("*.bin"))


def test_expressions_evaluated_in_one_program_are_cached_apart(tmp_path, monkeypatch):
    import diffc

    monkeypatch.setenv("DIFFC_CACHE_DIR", str(tmp_path / "cache"))
    m = diffc.compile("fn twice(x) = x * 2.0")
    assert m.evaluate("twice(1.0)") == 2.0
    assert m.evaluate("twice(5.0)") == 10.0


def test_a_cached_program_finds_the_matrix_kernel_it_calls(tmp_path):
    """The kernel of lower/gemm.py is compiled apart and cached on its own: a new process loads
    it before the program that calls it."""
    (tmp_path / "mm.dfl").write_text("fn main() { let a = reshape(f64(arange(4096)), [64, 64]); sum(a @ a) }\n")
    cache = tmp_path / "cache"
    want = str(float((np.arange(4096.0).reshape(64, 64) @ np.arange(4096.0).reshape(64, 64)).sum()))
    first = run(tmp_path, cache, "mm.dfl")
    second = run(tmp_path, cache, "mm.dfl")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "load from cache" in second.stderr
    assert float(first.stdout) == float(second.stdout) == float(want)
    assert len(list(cache.glob("*.bin"))) == 2  # the program and the kernel
