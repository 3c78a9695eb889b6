"""PyNet runs all its parallel work on one pool of threads (backends.threads): the numba
layer kernels on pieces of their range, the convolutions on chunks of images, the BLAS
single-threaded inside them. The pieces are independent, so the results must not change by
a bit with the number of threads."""

import numba
import numpy as np
import pytest
import threadpoolctl

import backends
import backends.numba as numba_backend
import cifar.max_pool
from backends.threads import split_range

#: Thread counts the tests below run on (the `threads` fixture of conftest.py).
THREAD_COUNTS = pytest.mark.parametrize("threads", [1, 2, 3], indirect=True,
                                        ids=["1-thread", "2-threads", "3-threads"])


@pytest.mark.parametrize("total, parts", [(10, 3), (7, 7), (5, 8), (1, 2), (0, 2), (9, 1)])
def test_split_range_covers_the_range_once_in_near_equal_pieces(total, parts):
    pieces = split_range(total, parts)
    assert [k for start, stop in pieces for k in range(start, stop)] == list(range(total))
    sizes = [stop - start for start, stop in pieces]
    assert len(pieces) == max(1, min(parts, total)) and max(sizes) - min(sizes) <= 1


LAYERS = {
    "BatchNorm2d": lambda nn: nn.BatchNorm2d(5),
    "BatchNorm2d-eval": lambda nn: nn.BatchNorm2d(5).eval(),
    "MaxPool2d": lambda nn: nn.MaxPool2d(3, stride=2, padding=1),
    "ReLU": lambda nn: nn.ReLU(),
    "GELU": lambda nn: nn.GELU(),
    "GELU-tanh": lambda nn: nn.GELU(approximate="tanh"),
}


@THREAD_COUNTS
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", LAYERS)
def test_numba_layers_give_the_same_bits_on_any_number_of_threads(name, dtype, threads,
                                                                  monkeypatch):
    monkeypatch.setattr(numba_backend, "ELEMENTWISE_GRAIN", 7)  # elementwise kernels split too
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 9, 9)).astype(dtype)
    layer = LAYERS[name](backends.get("numba")).to(np.dtype(dtype))
    y = layer(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    grads = {key: value.copy() for key, value in layer.grads.items()}

    backends.set_num_threads(1)
    reference = LAYERS[name](backends.get("numba")).to(np.dtype(dtype))
    np.testing.assert_array_equal(reference(x), y)
    np.testing.assert_array_equal(reference.backward(dy), dx)
    for key, value in reference.grads.items():
        np.testing.assert_array_equal(value, grads[key])


@pytest.mark.parametrize("module", [numba_backend, cifar.max_pool],
                         ids=lambda module: module.__name__)
def test_no_numba_kernel_starts_a_second_thread_pool(module):
    kernels = [obj for obj in vars(module).values()
               if isinstance(obj, numba.core.registry.CPUDispatcher)]
    assert kernels
    assert [k.__name__ for k in kernels if k.targetoptions.get("parallel")] == []


@THREAD_COUNTS
def test_set_num_threads_leaves_the_blas_single_threaded(threads):
    blas = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    assert blas and {lib["num_threads"] for lib in blas} == {1}
