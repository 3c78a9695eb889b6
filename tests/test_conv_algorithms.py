"""Every convolution algorithm (im2col, Winograd F(2x2, 3x3), the direct 3x3 kernel) equals
torch to round-off on every shape it takes, and the algorithm switch (backends.conv_dispatch)
behaves like a torch.backends flag: scoped, validated, recorded in the ctx so the backward
matches."""

import numpy as np
import pytest
import torch

import backends
from backends import conv_dispatch, direct_conv, winograd
from backends.conformance import (
    CASES,
    TOLERANCE,
    compare_with_torch,
    conv_algorithms,
    finite_difference,
    relative_error,
    too_large,
)
from backends.geometry import window_geometry

FAST = ("numpy", "numba")
BACKEND_ALGORITHMS = [("numpy", "im2col"), ("numpy", "winograd"), ("numba", "im2col"),
                      ("numba", "winograd"), ("numba", "direct")]
CONV_CASES = [case for case in CASES if case.layer == "Conv2d"]
# (N, C_in, C_out, H, W, padding): odd and even sizes, batch 1, padding 0-2, tiny planes
SHAPES = [(2, 3, 4, 6, 6, 1), (1, 5, 7, 7, 5, 0), (3, 4, 6, 9, 8, 2), (2, 17, 16, 5, 5, 1),
          (1, 2, 3, 3, 3, 1), (2, 3, 2, 4, 4, 3), (1, 1, 1, 3, 3, 0), (4, 8, 16, 11, 13, 1)]


def algorithms_for(backend, padding):
    """The algorithms of ``backend`` that compute a 3x3, stride-1 convolution padded so."""
    names = backends.get(backend).kernels.CONV_ALGORITHMS
    return [name for name in names if name != "direct" or padding <= direct_conv.MAX_PADDING]


def run_conv(backend, algorithm, x, weight, bias, padding, dy):
    kernels = backends.get(backend).kernels
    with backends.conv_algorithm(algorithm):
        y, ctx = kernels.conv2d_forward(x, weight, bias, (1, 1), (padding, padding), (1, 1))
    return (y, *kernels.conv2d_backward(dy, ctx)), ctx


def torch_conv(x, weight, bias, padding, dy):
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    tb = None if bias is None else torch.tensor(bias, requires_grad=True)
    y = torch.nn.functional.conv2d(tx, tw, tb, padding=padding)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), (
        None if tb is None else tb.grad.numpy())


def random_conv(shape, dtype, bias=True):
    n, c, k, h, w, padding = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype) if bias else None
    dy = rng.standard_normal((n, k, h + 2 * padding - 2, w + 2 * padding - 2)).astype(dtype)
    return x, weight, b, padding, dy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_each_algorithm_equals_torch_forward_and_every_gradient(shape, bias, backend, dtype):
    args = random_conv(shape, dtype, bias)
    expected = torch_conv(*args)
    for algorithm in algorithms_for(backend, shape[-1]):
        got, ctx = run_conv(backend, algorithm, *args)
        assert ctx[0] == algorithm
        for name, a, b in zip(("y", "dx", "dweight", "dbias"), got, expected, strict=True):
            assert (a is None) == (b is None), name
            if b is not None:
                assert a.dtype == np.dtype(dtype), name
                assert relative_error(a, b) <= TOLERANCE[dtype], (algorithm, name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda case: case.id)
def test_every_conv_case_matches_torch_under_each_algorithm_that_computes_it(case, backend,
                                                                           dtype):
    for algorithm in conv_algorithms(case, backend):
        errors = compare_with_torch(case, backend, dtype, algorithm=algorithm)
        assert "dweight by conv2d_backward_weight" in errors
        assert not too_large(errors, dtype), (algorithm, errors)
        if dtype == "float64":
            assert not too_large(finite_difference(case, backend, algorithm=algorithm),
                                 dtype), algorithm


@pytest.mark.parametrize("algorithm", ["winograd", "direct"])
def test_winograd_and_direct_run_on_exactly_the_3x3_stride1_undilated_cases(algorithm):
    eligible = {case.id for case in CONV_CASES if algorithm in conv_algorithms(case, "numba")}
    assert eligible == {"conv-3x3-pad1", "conv-3x3-pad0-odd", "conv-3x3-pad2-nobias-batch1",
                        "conv-3x3-pad1-odd-wide"}
    assert all(conv_algorithms(case, "naive") == (None,) for case in CONV_CASES)


def test_the_numpy_backend_has_no_direct_kernel():
    assert "direct" not in backends.get("numpy").kernels.CONV_ALGORITHMS
    assert all("direct" not in conv_algorithms(case, "numpy") for case in CONV_CASES)


CHUNKED_MODULES = {"winograd": winograd, "direct": direct_conv}


@pytest.mark.parametrize(("backend", "algorithm"),
                         [pair for pair in BACKEND_ALGORITHMS if pair[1] in CHUNKED_MODULES])
def test_one_image_chunks_on_two_threads_give_the_whole_batch_result(backend, algorithm,
                                                                     monkeypatch):
    args = random_conv((5, 6, 7, 9, 10, 1), "float64")
    whole, _ = run_conv(backend, algorithm, *args)
    before = backends.get_num_threads()
    monkeypatch.setattr(CHUNKED_MODULES[algorithm], "CHUNK_BYTES", 1)
    backends.set_num_threads(2)
    try:
        chunked, _ = run_conv(backend, algorithm, *args)
    finally:
        backends.set_num_threads(before)
    for a, b in zip(chunked, whole, strict=True):
        assert relative_error(a, b) <= 1e-14


def test_conv_algorithm_context_manager_restores_the_previous_setting_even_on_error():
    assert backends.get_conv_algorithm() == "auto"
    with backends.conv_algorithm("winograd"):
        assert backends.get_conv_algorithm() == "winograd"
        with pytest.raises(KeyError), backends.conv_algorithm("im2col"):
            assert backends.get_conv_algorithm() == "im2col"
            raise KeyError
        assert backends.get_conv_algorithm() == "winograd"
    assert backends.get_conv_algorithm() == "auto"


def test_set_conv_algorithm_persists_until_set_again():
    try:
        backends.set_conv_algorithm("im2col")
        assert backends.get_conv_algorithm() == "im2col"
    finally:
        backends.set_conv_algorithm("auto")


@pytest.mark.parametrize("call", [backends.set_conv_algorithm, backends.conv_algorithm])
def test_a_bad_algorithm_name_is_a_value_error_naming_the_choices_and_the_value(call):
    with pytest.raises(ValueError, match=r"set_conv_algorithm: expected one of 'auto', "
                                         r"'im2col', 'winograd', 'direct', got 'fft'"):
        with call("fft"):
            pass
    assert backends.get_conv_algorithm() == "auto"


@pytest.mark.parametrize(("backend", "shape", "expected"), [
    ("numba", ((512, 24, 31, 31), (3, 3), (1, 1), (1, 1), (1, 1)), "winograd"),
    ("numba", ((128, 3, 32, 32), (3, 3), (1, 1), (1, 1), (1, 1)), "direct"),     # RGB input
    ("numba", ((128, 4, 7, 7), (3, 3), (1, 1), (2, 2), (1, 1)), "direct"),
    ("numba", ((128, 5, 32, 32), (3, 3), (1, 1), (1, 1), (1, 1)), "winograd"),
    ("numba", ((128, 3, 32, 32), (3, 3), (1, 1), (3, 3), (1, 1)), "winograd"),   # padding 3
    ("numba", ((128, 64, 8, 8), (3, 3), (1, 1), (1, 1), (1, 1)), "winograd"),
    ("numba", ((512, 128, 7, 7), (3, 3), (1, 1), (1, 1), (1, 1)), "im2col"),   # output < 8
    ("numba", ((512, 128, 3, 3), (3, 3), (1, 1), (1, 1), (1, 1)), "im2col"),
    ("numba", ((8, 16, 32, 32), (3, 3), (2, 2), (1, 1), (1, 1)), "im2col"),    # stride 2
    ("numba", ((8, 16, 32, 32), (3, 3), (1, 1), (2, 2), (2, 2)), "im2col"),    # dilation 2
    ("numba", ((8, 16, 32, 32), (5, 5), (1, 1), (2, 2), (1, 1)), "im2col"),    # 5x5
    ("numpy", ((512, 24, 31, 31), (3, 3), (1, 1), (1, 1), (1, 1)), "im2col"),  # never pays
])
def test_auto_rule_picks_as_documented(backend, shape, expected):
    assert conv_dispatch.choose_algorithm(window_geometry(*shape), backend) == expected


@pytest.mark.parametrize(("setting", "size", "stride", "expected"), [
    ("auto", 16, 1, "winograd"), ("auto", 5, 1, "im2col"), ("im2col", 16, 1, "im2col"),
    ("winograd", 5, 1, "winograd"), ("winograd", 16, 2, "im2col"), ("direct", 5, 1, "direct"),
    ("direct", 16, 2, "im2col")])
def test_forward_records_the_algorithm_the_setting_gives(setting, size, stride, expected):
    x = np.zeros((1, 5, size, size), np.float32)  # too many channels for "auto" to go direct
    weight = np.zeros((2, 5, 3, 3), np.float32)
    with backends.conv_algorithm(setting):
        _, ctx = backends.get("numba").kernels.conv2d_forward(x, weight, None, (stride, stride),
                                                              (1, 1), (1, 1))
    assert ctx[0] == expected


@pytest.mark.parametrize(("backend", "forward"), BACKEND_ALGORITHMS)
def test_backward_uses_the_forwards_algorithm_whatever_the_setting_is_by_then(backend,
                                                                            forward):
    args = random_conv((2, 3, 4, 8, 8, 1), "float64")
    x, weight, bias, padding, dy = args
    kernels = backends.get(backend).kernels
    with backends.conv_algorithm(forward):
        _, ctx = kernels.conv2d_forward(x, weight, bias, (1, 1), (padding, padding), (1, 1))
        expected = kernels.conv2d_backward(dy, ctx)
    other = "im2col" if forward == "winograd" else "winograd"
    with backends.conv_algorithm(other):
        got = kernels.conv2d_backward(dy, ctx)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)  # the same arithmetic, not merely close


@pytest.mark.parametrize(("backend", "algorithm"), BACKEND_ALGORITHMS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_backward_weight_returns_no_dx_and_the_same_weight_gradients(backend, algorithm,
                                                                     bias):
    x, weight, b, padding, dy = random_conv((3, 4, 5, 9, 7, 1), "float32", bias)
    kernels = backends.get(backend).kernels
    with backends.conv_algorithm(algorithm):
        _, ctx = kernels.conv2d_forward(x, weight, b, (1, 1), (padding, padding), (1, 1))
    _, dweight, dbias = kernels.conv2d_backward(dy, ctx)
    weight_only = kernels.conv2d_backward_weight(dy, ctx)
    assert len(weight_only) == 2
    np.testing.assert_array_equal(weight_only[0], dweight)
    if bias:
        np.testing.assert_array_equal(weight_only[1], dbias)
    else:
        assert weight_only[1] is None and dbias is None


@pytest.mark.parametrize("algorithm", ["im2col", "winograd", "direct"])
def test_input_grad_false_computes_no_dx(algorithm):
    x, weight, b, padding, dy = random_conv((2, 3, 4, 6, 6, 1), "float64")
    kernels = backends.get("numba").kernels
    with backends.conv_algorithm(algorithm):
        _, ctx = kernels.conv2d_forward(x, weight, b, (1, 1), (padding, padding), (1, 1))
    dx, dweight, dbias = conv_dispatch.conv2d_backward(
        dy, ctx, kernels.PATCH_OPS, kernels.WINOGRAD_OPS, kernels.DIRECT_OPS, input_grad=False)
    assert dx is None
    np.testing.assert_array_equal(dweight, kernels.conv2d_backward(dy, ctx)[1])


def test_kernel_transform_and_its_gradient_are_adjoint():
    rng = np.random.default_rng(0)
    g, du = rng.standard_normal((5, 4, 3, 3)), rng.standard_normal((16, 5, 4))
    u = winograd.transform_kernel(g)
    expected = np.einsum("ap,kcpq,bq->abkc", winograd.G, g, winograd.G).reshape(16, 5, 4)
    np.testing.assert_allclose(u, expected, rtol=1e-14, atol=1e-14)
    # <T g, dU> = <g, T* dU>
    assert np.isclose((u * du).sum(), (g * winograd.kernel_gradient(du, g.shape)).sum())
