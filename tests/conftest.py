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


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    """PyNet's thread count (backends.set_num_threads) for the test, restored after; a test
    module may ask for other counts with ``parametrize("threads", [...], indirect=True)``."""
    before = backends.get_num_threads()
    backends.set_num_threads(request.param)
    yield request.param
    backends.set_num_threads(before)
