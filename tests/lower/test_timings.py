"""The compiler's stages as `diffc run --time-passes` shows them: LLVM's optimiser and its code
generator are timed apart when the module is compiled in this process, together when the LLVM
worker process compiles it."""

from __future__ import annotations

import pytest

import diffc
from diffc.pipeline import Timings


@pytest.mark.parametrize(
    "worker, stages", [("off", {"llvm-opt", "llvm-codegen"}), ("0", {"llvm-opt+codegen (worker)"})]
)
def test_llvm_stages(monkeypatch, worker, stages):
    monkeypatch.setenv("DIFFC_LLVM_WORKER", worker)
    f = diffc.compile(f"fn f(x) = sum(x * {len(worker)}.5)\n").f  # a program of its own: never cached
    arrays, key = f.signature([1.0, 2.0])
    timings = Timings()
    f.compiled(arrays, key, timings)
    llvm_stages = {s for s in timings if s.startswith("llvm")}
    assert llvm_stages == stages
    assert all(timings[s] >= 0.0 for s in llvm_stages)
