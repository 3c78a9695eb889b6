import numpy as np
import pytest

import backends


@pytest.fixture(params=backends.BACKENDS)
def nn(request):
    """The layer namespace of each backend in turn."""
    return backends.get(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
