"""Winograd F(2x2, 3x3) convolution, shared by the numpy and numba backends.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2015, arXiv:1509.09308),
section 4.1: each 2x2 output tile of a 3x3, stride-1 cross-correlation is

    Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A

with d the 4x4 input tile under it (tiles overlap by 2), so 16 multiplications per tile
and channel pair instead of 36. Summed over input channels, the 16 elementwise products
become 16 GEMMs: ``M[e] = U[e] @ V[e]``, U (16, C_out, C_in) the transformed kernels and
V (16, C_in, tiles) the transformed input, tiles ordered (image, tile row, tile column).
An odd output size gets a last, partial tile: its input past the padding reads zeros and
its outputs past the edge are dropped.

The backward pass is the adjoint of each linear step, tile by tile: dM = A dY A^T, then
dU = dM V^T (16 GEMMs, summed over chunks; dweight = G^T dU G) and dV = U^T dM (16 GEMMs;
dx scatter-adds B dV B^T over the overlapping tiles). Both share the one transform of dY.

Like :mod:`backends.gemm_conv` it runs over chunks of whole images in parallel threads; a
backend supplies the data-movement transforms (:class:`WinogradOps`), single-threaded and
releasing the GIL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import numpy as np

from backends.geometry import WindowGeometry
from backends.threads import chunk_slices, map_chunks

# Lavin & Gray (2015), F(2x2, 3x3): B^T (4x4), G (4x3), A^T (2x4).
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)

V = TypeVar("V")  # a scalar (numba) or an array (numpy)


# The same matrices applied to 4 (or 2) values, scalars or arrays alike: the backends' transforms
# apply them down the columns of a tile, then along its rows. Each b/a is the adjoint (the
# transpose) of its bt/at.
def apply_bt(d0: V, d1: V, d2: V, d3: V) -> tuple[V, V, V, V]:
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def apply_b(v0: V, v1: V, v2: V, v3: V) -> tuple[V, V, V, V]:
    return v0, v1 - v2 + v3, v2 + v1 - v0, -v3


def apply_at(m0: V, m1: V, m2: V, m3: V) -> tuple[V, V]:
    return m0 + m1 + m2, m1 - m2 - m3


def apply_a(y0: V, y1: V) -> tuple[V, V, V, V]:
    return y0, y0 + y1, y0 - y1, -y1


class WinogradOps(NamedTuple):
    """A backend's data movement around the 16 GEMMs; ``tiles`` is (tile rows, tile columns)
    of the output, :func:`tile_grid`."""

    # x (n, C, H, W) -> V (16, C, n*tiles): B^T d B of every tile
    input_transform: Callable[[np.ndarray, WindowGeometry], np.ndarray]
    # M (16, K, n*tiles) -> writes A^T M A into y (n, K, OH, OW)
    output_transform: Callable[[np.ndarray, np.ndarray, WindowGeometry], None]
    # dy (n, K, OH, OW) -> dM (16, K, n*tiles): A dY A^T, the adjoint of output_transform
    output_adjoint: Callable[[np.ndarray, WindowGeometry], np.ndarray]
    # dV (16, C, n*tiles) -> writes the adjoint of input_transform into dx (n, C, H, W)
    input_adjoint: Callable[[np.ndarray, np.ndarray, WindowGeometry], None]


def eligible(g: WindowGeometry) -> bool:
    """Whether F(2x2, 3x3) computes this convolution: a 3x3 kernel, stride 1, dilation 1
    (any padding)."""
    return (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1)


def tile_grid(g: WindowGeometry) -> tuple[int, int]:
    """Rows and columns of 2x2 output tiles (the last one partial for an odd output size)."""
    return (g.oh + 1) // 2, (g.ow + 1) // 2


#: Bytes of transformed input (or output, whichever has more channels) per chunk of images;
#: see :data:`backends.gemm_conv.CHUNK_BYTES`.
CHUNK_BYTES = 2 << 20


def image_chunks(g: WindowGeometry, channels: int, itemsize: int) -> list[slice]:
    """Slices of whole images, about CHUNK_BYTES of (16, channels, tiles) each."""
    th, tw = tile_grid(g)
    return chunk_slices(g.n, 16 * channels * th * tw * itemsize, CHUNK_BYTES)


def tile_buffer(channels: int, tiles: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised (16, channels, tiles) array for transformed tiles. Its 16 planes are
    read and written as 16 parallel streams; planes a whole number of 4 KiB pages apart
    would all map to the same L1 sets (4K aliasing: 26 ms instead of 4 for one transform),
    so each plane starts 320 bytes further into a page than the one before."""
    itemsize = np.dtype(dtype).itemsize
    page = 4096 // itemsize
    stride = -(-channels * tiles // page) * page + 320 // itemsize
    return np.empty((16, stride), dtype)[:, :channels * tiles].reshape(16, channels, tiles)


def _sandwich(m: np.ndarray, t: np.ndarray) -> np.ndarray:
    """m t m^T for each trailing index: t (p, p, rest) -> (a, a, rest), as two GEMMs with
    the long axis last (OpenBLAS takes 15 ms for the same products with it first)."""
    a, p = m.shape
    left = (m @ t.reshape(p, -1)).reshape(a, p, -1)                   # [a, q, rest]
    right = m @ left.transpose(1, 0, 2).reshape(p, -1)                # [b, (a, rest)]
    return right.reshape(a, a, -1).transpose(1, 0, 2)                 # [a, b, rest]


def transform_kernel(weight: np.ndarray) -> np.ndarray:
    """(K, C, 3, 3) -> U (16, K, C), U[4 a + b] = (G g G^T)[a, b], in weight's dtype."""
    k, c = weight.shape[:2]
    taps = weight.reshape(k * c, 9).T.reshape(3, 3, k * c)
    return np.ascontiguousarray(_sandwich(G.astype(weight.dtype), taps)).reshape(16, k, c)


def kernel_gradient(du: np.ndarray, weight_shape: tuple[int, ...]) -> np.ndarray:
    """Adjoint of :func:`transform_kernel`: dU (16, K, C) -> dweight (K, C, 3, 3) = G^T dU G."""
    k, c = weight_shape[:2]
    dg = _sandwich(G.T.astype(du.dtype), du.reshape(4, 4, k * c))    # [p, q, (k, c)]
    return np.ascontiguousarray(dg.reshape(9, k * c).T).reshape(k, c, 3, 3)


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   g: WindowGeometry, ops: WinogradOps) -> tuple[np.ndarray, tuple]:
    """y = conv(x, weight) + bias for an :func:`eligible` geometry; ctx for the backward."""
    u = transform_kernel(weight)
    y = np.empty((g.n, weight.shape[0], g.oh, g.ow), x.dtype)

    def forward_chunk(images: slice) -> None:
        part = x[images]
        v = ops.input_transform(part, g._replace(n=len(part)))
        m = np.matmul(u, v, out=tile_buffer(u.shape[1], v.shape[2], v.dtype))
        if bias is not None:
            m[5] += bias[:, None]  # A^T e_5 A is all ones: M[1, 1] reaches every output once
        ops.output_transform(m, y[images], g._replace(n=len(part)))

    map_chunks(forward_chunk, image_chunks(g, max(weight.shape[:2]), x.itemsize))
    return y, (x, u, g, weight.shape, bias is not None)


def conv2d_backward(dy: np.ndarray, ctx: tuple, ops: WinogradOps, input_grad: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx or None when not ``input_grad``, dweight, dbias) from the forward's ctx."""
    x, u, g, weight_shape, has_bias = ctx
    dy = np.ascontiguousarray(dy)
    u_t = np.ascontiguousarray(u.transpose(0, 2, 1)) if input_grad else None  # (16, C, K)
    dx = np.empty(x.shape, x.dtype) if input_grad else None

    def backward_chunk(images: slice) -> np.ndarray:
        part = x[images]
        geometry = g._replace(n=len(part))
        dm = ops.output_adjoint(dy[images], geometry)                        # (16, K, T)
        if input_grad:
            dv = np.matmul(u_t, dm, out=tile_buffer(u_t.shape[1], dm.shape[2], dm.dtype))
            ops.input_adjoint(dv, dx[images], geometry)
        return np.matmul(dm, ops.input_transform(part, geometry).transpose(0, 2, 1))

    du = sum(map_chunks(backward_chunk, image_chunks(g, max(weight_shape[:2]), x.itemsize)))
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, kernel_gradient(du, weight_shape), dbias
