"""The correctness check: an implementation's L (from fwd and from value_and_grad) and every
gradient against the NumPy peer's. The error of an array is max|got - want| / max|want| (the
relative error in the max norm, so that entries near zero do not dominate)."""

from __future__ import annotations

import numpy as np

TOLERANCE = 1e-6


def relative_error(got, want) -> float:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(want), initial=0.0)), np.finfo(float).tiny)
    return float(np.max(np.abs(got - want), initial=0.0) / scale)


def compare(fwd_value, value_and_grad, reference) -> dict:
    """{"fwd", "loss", "grads": [...], "worst", "ok"} for one implementation on one workload;
    reference is the NumPy peer's (L, grads). NaN counts as a mismatch."""
    ref_loss, ref_grads = reference
    loss, grads = value_and_grad
    errors = {
        "fwd": relative_error(fwd_value, ref_loss),
        "loss": relative_error(loss, ref_loss),
        "grads": [relative_error(g, r) for g, r in zip(grads, ref_grads)],
    }
    if len(grads) != len(ref_grads):
        errors["grads"].append(float("inf"))
    worst = float(np.max([errors["fwd"], errors["loss"], *errors["grads"]]))  # NaN if any is NaN
    return {**errors, "worst": worst, "ok": bool(worst <= TOLERANCE)}
