"""The peers: each workload written as a user of another library would write it.

Every peer module has the same interface:
    available() -> (bool, reason)        # False with the reason when the library is missing
    make(name, params, inputs) -> (fwd, value_and_grad) or None (workload not implemented)
where fwd() returns L as a float and value_and_grad() returns (L, [dL/dp in param order]) as
floats and NumPy arrays. The data is bound inside make (converted once to the library's own
arrays), so the returned callables take no arguments and time only the computation."""
