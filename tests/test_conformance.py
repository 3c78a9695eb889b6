"""Every layer spec, on every backend, in float64 and float32, matches PyTorch to round-off:
forward output, dL/dx, parameter gradients, BatchNorm running statistics and eval mode;
and its backward pass matches central finite differences (float64, no torch)."""

import pytest

from backends import BACKENDS
from backends.conformance import (
    CASES,
    compare_with_torch,
    differentiable,
    finite_difference,
    too_large,
)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_backend_matches_torch(case, backend, dtype):
    errors = compare_with_torch(case, backend, dtype)
    assert {"forward", "dx"} <= set(errors)
    assert not too_large(errors, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [c for c in CASES if differentiable(c)], ids=lambda c: c.id)
def test_backward_matches_finite_differences(case, backend):
    errors = finite_difference(case, backend)
    assert "fd dx" in errors
    assert not too_large(errors, "float64")
