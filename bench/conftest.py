"""pytest-benchmark setup: one thread count for torch, numba and the BLAS (``--threads``)."""

import pytest

from bench.runner import set_threads


def pytest_addoption(parser):
    parser.addoption("--threads", type=int, default=None,
                     help="threads for torch, numba and BLAS alike (default: all cores)")


@pytest.fixture(scope="session", autouse=True)
def threads(request):
    return set_threads(request.config.getoption("--threads"))
