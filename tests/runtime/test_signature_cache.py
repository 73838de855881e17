"""The per-signature machine code of a Function: the DIFFC_MAX_SIGNATURES used last are kept,
the others freed (See Note [Evicting a signature] in api.py); an evicted signature compiles
again when it comes back, and nothing keeps calling freed code."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import diffc
from diffc.errors import UsageError

SOURCE = "fn f(x) = sum(x * 2.0 + 1.0)\nfn s(x) { print(x); x + 1.0 }\n"


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setenv("DIFFC_MAX_SIGNATURES", "3")
    return diffc.compile(SOURCE)


def sizes(fn) -> list[int]:
    return [key[1][0][1][0] for key in fn._cache]


def test_the_least_recently_used_signature_is_evicted(small):
    f = small.f
    for n in (1, 2, 3):
        assert f(np.ones(n)) == 3.0 * n
    assert f(np.ones(1)) == 3.0  # 1 is now the most recent: 2 goes next
    assert f(np.ones(4)) == 12.0
    assert sizes(f) == [3, 1, 4] and f.num_compiled == 3
    assert f(np.ones(2)) == 6.0  # compiled again
    assert sizes(f) == [1, 4, 2]


def test_the_direct_entry_of_an_evicted_signature_is_dropped(small):
    f = small.f
    f(np.ones(1))
    f(np.ones(1))
    assert f.__call__ is not f._general  # the direct entry of [1] takes the calls
    for n in (2, 3, 4):
        f(np.ones(n))
    assert 1 not in sizes(f)
    assert all(hit[2] in f._cache for hit in f._fast.values())
    assert f(np.ones(1)) == 3.0 and f(np.ones(4)) == 12.0


def test_evicted_machine_code_is_freed(small):
    f = small.f
    f(np.ones(1))
    f(np.ones(1))
    ((native, _),) = f._cache.values()
    engine = weakref.ref(native.compiled.engine)
    del native
    for n in (2, 3, 4):
        f(np.ones(n))
    gc.collect()
    assert engine() is None


def test_a_direct_entry_held_elsewhere_keeps_its_code(small):
    f = small.f
    f(1.5)
    held = f.__call__  # the built-in of the scalar signature
    assert held is not f._general
    for n in (2, 3, 4):
        f(np.ones(n))
    gc.collect()
    assert held(1.5) == 4.0 and held(0.0) == 1.0


def test_print_sites_go_with_their_code(small, capsys):
    from diffc.runtime.call import PRINT_SITES

    before = set(PRINT_SITES)
    for n in (1, 2, 3, 4, 5):
        small.s(np.ones(n))
    gc.collect()
    assert len(set(PRINT_SITES) - before) == 3  # one site in each of the three kept programs
    assert capsys.readouterr().out.splitlines()[-1] == "[1.0, 1.0, 1.0, 1.0, 1.0]"


@pytest.mark.parametrize("bad", ["0", "-2", "many", "1.5"])
def test_a_bad_max_signatures_is_a_usage_error(monkeypatch, bad):
    monkeypatch.setenv("DIFFC_MAX_SIGNATURES", bad)
    with pytest.raises(UsageError, match="DIFFC_MAX_SIGNATURES"):
        diffc.compile(SOURCE).f(1.0)
