"""Direct 3x3 convolution for few input channels, used by the numba backend.

With three input channels (an RGB image) both GEMM algorithms starve: im2col's GEMM has an
inner dimension of 27, Winograd's sixteen have 3 and write a transformed output five times
the size of y. Here each output row stays in L1 while one pass adds all nine taps of one
input plane to it, 9 multiply-adds per element and no intermediate:

    y[n, k, i, j] = b[k] + sum_c sum_{p,q} w[k, c, p, q] x_pad[n, c, i + p, j + q]

The backward pass uses the same kernel for dx, which is the full correlation of dy with the
kernel rotated by 180 degrees and its two channel axes swapped, padded by 2 - padding. The
weight gradient is a GEMM with a long inner dimension, one per image:
``dy[n] (K, OH*OW) @ patches[n]^T (OH*OW, C*9)``, the patches being the nine shifted
copies of each padded input plane (Chainer's kh*kw strided copies, in CHW order).

Chunks of whole images run in parallel on :mod:`backends.threads`; a backend supplies the
kernels (:class:`DirectOps`), single-threaded and releasing the GIL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from backends.geometry import WindowGeometry
from backends.threads import chunk_slices, map_chunks


class DirectOps(NamedTuple):
    """A backend's kernels for the direct 3x3 convolution."""

    # (x (n, C, H, W), weight (K, C, 3, 3), bias (K,), y (n, K, OH, OW), (ph, pw)):
    # writes y = the padded correlation of x with weight, plus bias
    correlate: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]], None]
    # (x (n, C, H, W), (ph, pw)) -> (n, C*9, OH*OW): the input under each tap, per plane
    patches: Callable[[np.ndarray, tuple[int, int]], np.ndarray]


#: Most padding the direct kernel takes: dx's correlation is padded by 2 - padding.
MAX_PADDING = 2


def eligible(g: WindowGeometry) -> bool:
    """Whether the direct kernel computes this convolution: a 3x3 kernel, stride 1,
    dilation 1, padding at most :data:`MAX_PADDING`."""
    return ((g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1)
            and max(g.ph, g.pw) <= MAX_PADDING)


#: Bytes of weight-gradient patches per chunk of images (as :data:`gemm_conv.CHUNK_BYTES`).
CHUNK_BYTES = 2 << 20


def image_chunks(g: WindowGeometry, itemsize: int) -> list[slice]:
    """Slices of whole images, about CHUNK_BYTES of patches each."""
    return chunk_slices(g.n, 9 * g.c * g.oh * g.ow * itemsize, CHUNK_BYTES)


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   g: WindowGeometry, ops: DirectOps) -> tuple[np.ndarray, tuple]:
    """y = conv(x, weight) + bias for an :func:`eligible` geometry; ctx for the backward."""
    x, weight = np.ascontiguousarray(x), np.ascontiguousarray(weight)
    b = np.zeros(weight.shape[0], x.dtype) if bias is None else np.ascontiguousarray(bias)
    y = np.empty((g.n, weight.shape[0], g.oh, g.ow), x.dtype)
    map_chunks(lambda images: ops.correlate(x[images], weight, b, y[images], (g.ph, g.pw)),
               image_chunks(g, x.itemsize))
    return y, (x, weight, g, bias is not None)


def conv2d_backward(dy: np.ndarray, ctx: tuple, ops: DirectOps, input_grad: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx or None when not ``input_grad``, dweight, dbias) from the forward's ctx."""
    x, weight, g, has_bias = ctx
    dy = np.ascontiguousarray(dy)
    rotated = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, K, 3, 3)
    no_bias = np.zeros(g.c, x.dtype)
    dx = np.empty(x.shape, x.dtype) if input_grad else None

    def backward_chunk(images: slice) -> np.ndarray:
        dy_part = dy[images]
        if input_grad:
            ops.correlate(dy_part, rotated, no_bias, dx[images], (2 - g.ph, 2 - g.pw))
        patches = ops.patches(x[images], (g.ph, g.pw))                     # (n, C*9, OH*OW)
        per_image = np.matmul(dy_part.reshape(len(patches), dy.shape[1], -1),
                              patches.transpose(0, 2, 1))                   # (n, K, C*9)
        return per_image.sum(axis=0)

    dweight = sum(map_chunks(backward_chunk, image_chunks(g, x.itemsize)))
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight.reshape(weight.shape), dbias
