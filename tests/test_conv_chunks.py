"""Convolution runs over chunks of images on parallel threads (backends.gemm_conv); the result
must not depend on how the batch is cut or how many threads run the chunks."""

import numpy as np
import pytest

import backends
from backends import gemm_conv, winograd
from backends.conformance import CASES, compare_with_torch, too_large

CONV_CASES = [case for case in CASES if case.layer == "Conv2d" and case.input_shape[0] > 1]


@pytest.mark.parametrize("case", CONV_CASES, ids=[c.id for c in CONV_CASES])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv_cut_into_one_image_chunks_still_matches_torch(case, backend, dtype, threads,
                                                            monkeypatch):
    monkeypatch.setattr(gemm_conv, "CHUNK_BYTES", 1)  # every image its own chunk
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    errors = compare_with_torch(case, backend, dtype)
    assert not too_large(errors, dtype), errors


def test_chunks_cover_the_batch_exactly_once(monkeypatch):
    monkeypatch.setattr(gemm_conv, "CHUNK_BYTES", 3 * 4 * 5 * 5 * 9 * 4)  # 3 images per chunk
    g = gemm_conv.window_geometry((10, 4, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1))
    assert list(gemm_conv.image_chunks(g, 4)) == [slice(0, 3), slice(3, 6), slice(6, 9),
                                                  slice(9, 10)]


def test_map_chunks_returns_results_in_order_whatever_the_thread_count(threads):
    assert backends.threads.map_chunks(lambda k: k * k, range(7)) == [k * k for k in range(7)]


def test_set_num_threads_rejects_zero():
    with pytest.raises(ValueError, match="expected a positive thread count, got 0"):
        backends.set_num_threads(0)


def test_whole_batch_and_one_image_chunks_agree_to_float32_round_off(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    kernels = backends.get("numba").kernels
    whole, _ = kernels.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1))
    monkeypatch.setattr(gemm_conv, "CHUNK_BYTES", 1)
    chunked, _ = kernels.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1))
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)
