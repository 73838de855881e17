"""The implementations the runner knows, by name: diffc and the peers, all with one interface
(peers/__init__.py). Modules are imported only when asked for, so a missing library costs
nothing and is reported as skipped."""

from __future__ import annotations

import importlib

# name -> (module, keyword arguments of its available() and make())
IMPLS = {
    "diffc": ("benchmarks.diffc_impl", {}),
    "numpy": ("benchmarks.peers.numpy_peer", {}),
    "jax": ("benchmarks.peers.jax_peer", {}),
    "torch": ("benchmarks.peers.torch_peer", {}),
    "torch_compile": ("benchmarks.peers.torch_peer", {"compiled": True}),
}
REFERENCE = "numpy"  # what every implementation is checked against
SUBJECT = "diffc"  # what is compared to the best of the others
COMPILED = ("diffc", "jax", "torch_compile")  # those whose first call compiles


def available(impl):
    module, kwargs = IMPLS[impl]
    return importlib.import_module(module).available(**kwargs)


def make(impl, name, params, inputs):
    """(fwd, value_and_grad), or None when the implementation has no such workload."""
    module, kwargs = IMPLS[impl]
    return importlib.import_module(module).make(name, params, inputs, **kwargs)
