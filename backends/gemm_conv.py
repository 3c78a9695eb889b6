"""Convolution as one GEMM over a patch matrix, shared by the numpy and numba backends.

The patch ("im2col") matrix has one row per output pixel, in NHWC order, and one column
per (kernel row, kernel column, input channel)::

    cols[(n, i, j), (p, q, c)] = x_pad[n, c, s_h i + d_h p, s_w j + d_w q]

so the forward pass is ``cols @ W^T`` with ``W`` reshaped to (C_out, kH*kW*C_in), and the
backward pass is two more GEMMs and a "col2im" scatter-add. All of it runs over chunks of
whole images (:data:`CHUNK_BYTES`), in parallel; the backward pass rebuilds the patches.
A backend supplies the data movement (:class:`PatchOps`), which must release the GIL (NumPy
copies, ``nogil`` numba) and run single-threaded; the GEMMs run in the BLAS NumPy links to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from backends.geometry import WindowGeometry, window_geometry
from backends.threads import chunk_slices, map_chunks


class PatchOps(NamedTuple):
    """A backend's data movement around the GEMMs."""

    im2col: Callable[[np.ndarray, WindowGeometry], np.ndarray]  # x -> (N*OH*OW, kH*kW*C)
    col2im: Callable[[np.ndarray, WindowGeometry], np.ndarray]  # its adjoint -> dx


def rows_to_nchw(rows: np.ndarray, bias: np.ndarray | None, g: WindowGeometry,
                 out: np.ndarray) -> None:
    """(n*OH*OW, C_out) GEMM output, plus the bias -> `out` (n, C_out, OH, OW)."""
    if bias is not None:
        rows += bias
    out[...] = rows.reshape(len(out), g.oh, g.ow, -1).transpose(0, 3, 1, 2)


def nchw_to_rows(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N*H*W, C). NumPy's blocked transpose beats a jitted loop here."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(-1, x.shape[1])


#: Bytes of patch matrix per chunk. The batch is processed a few whole images at a time, one
#: chunk per thread (:func:`backends.threads.map_chunks`): the patch matrix is never built
#: whole, each piece is used while still in cache, and small buffers are recycled instead of
#: huge ones being mapped and page-faulted. 2 MiB measured fastest of 0.5-8 MiB here. The
#: NCHW <-> rows transposes of the chunk's output and output gradient happen there too,
#: in parallel and in cache, not over the whole batch in one thread.
CHUNK_BYTES = 2 << 20


def image_chunks(g: WindowGeometry, itemsize: int) -> list[slice]:
    """Slices of whole images, about CHUNK_BYTES of patches each."""
    return chunk_slices(g.n, g.oh * g.ow * g.kh * g.kw * g.c * itemsize, CHUNK_BYTES)


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int], ops: PatchOps) -> tuple[np.ndarray, tuple]:
    g = window_geometry(x.shape, weight.shape[2:], stride, padding, dilation)
    wmat_t = np.ascontiguousarray(
        weight.transpose(2, 3, 1, 0).reshape(-1, weight.shape[0]))   # (kH*kW*C, C_out)
    y = np.empty((g.n, weight.shape[0], g.oh, g.ow), x.dtype)

    def forward_chunk(images: slice) -> None:
        part = x[images]
        rows_to_nchw(ops.im2col(part, g._replace(n=len(part))) @ wmat_t, bias, g, y[images])

    map_chunks(forward_chunk, image_chunks(g, x.itemsize))
    return y, (x, wmat_t, g, weight.shape, bias is not None)


def conv2d_backward(dy: np.ndarray, ctx: tuple, ops: PatchOps, input_grad: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, or None when not ``input_grad``; dweight; dbias) from the forward's ctx."""
    x, wmat_t, g, weight_shape, has_bias = ctx
    dx = np.empty(x.shape, x.dtype) if input_grad else None

    def backward_chunk(images: slice) -> np.ndarray:
        part, dy_part = x[images], nchw_to_rows(dy[images])         # (n*OH*OW, C_out)
        geometry = g._replace(n=len(part))
        if input_grad:
            dx[images] = ops.col2im(dy_part @ wmat_t.T, geometry)
        return ops.im2col(part, geometry).T @ dy_part               # patches rebuilt, not kept

    dwmat_t = sum(map_chunks(backward_chunk, image_chunks(g, x.itemsize)))  # (kH*kW*C, C_out)
    dweight = np.ascontiguousarray(
        dwmat_t.reshape(g.kh, g.kw, g.c, weight_shape[0]).transpose(3, 2, 0, 1))
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
