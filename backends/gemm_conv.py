"""Convolution as one GEMM over a patch matrix, shared by the numpy and numba backends.

The patch ("im2col") matrix has one row per output pixel, in NHWC order, and one column
per (kernel row, kernel column, input channel)::

    cols[(n, i, j), (p, q, c)] = x_pad[n, c, s_h i + d_h p, s_w j + d_w q]

so the forward pass is ``cols @ W^T`` with ``W`` reshaped to (C_out, kH*kW*C_in), and the
backward pass is two more GEMMs and a "col2im" scatter-add. A backend supplies the data
movement (:class:`PatchOps`); the GEMMs run in the BLAS NumPy links to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from backends.geometry import WindowGeometry, window_geometry


class PatchOps(NamedTuple):
    """A backend's data movement around the GEMMs."""

    im2col: Callable[[np.ndarray, WindowGeometry], np.ndarray]  # x -> (N*OH*OW, kH*kW*C)
    col2im: Callable[[np.ndarray, WindowGeometry], np.ndarray]  # its adjoint -> dx


def rows_to_nchw(rows: np.ndarray, bias: np.ndarray | None, g: WindowGeometry) -> np.ndarray:
    """(N*OH*OW, C_out) GEMM output, plus the bias -> (N, C_out, OH, OW)."""
    if bias is not None:
        rows += bias
    return np.ascontiguousarray(rows.reshape(g.n, g.oh, g.ow, -1).transpose(0, 3, 1, 2))


def nchw_to_rows(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N*H*W, C). NumPy's blocked transpose beats a jitted loop here."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(-1, x.shape[1])


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int], ops: PatchOps) -> tuple[np.ndarray, tuple]:
    g = window_geometry(x.shape, weight.shape[2:], stride, padding, dilation)
    cols = ops.im2col(x, g)                                         # (N*OH*OW, kH*kW*C)
    wmat = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)  # (C_out, kH*kW*C)
    y = rows_to_nchw(cols @ wmat.T, bias, g)
    return y, (cols, wmat, g, weight.shape, bias is not None)


def conv2d_backward(dy: np.ndarray, ctx: tuple,
                    ops: PatchOps) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    cols, wmat, g, weight_shape, has_bias = ctx
    dy_rows = nchw_to_rows(dy)                                      # (N*OH*OW, C_out)
    # (cols^T dy)^T rather than dy^T cols: OpenBLAS runs this layout far faster here
    dwmat = (cols.T @ dy_rows).T                                    # (C_out, kH*kW*C)
    dweight = np.ascontiguousarray(
        dwmat.reshape(weight_shape[0], g.kh, g.kw, g.c).transpose(0, 3, 1, 2))
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    dx = ops.col2im(dy_rows @ wmat, g)
    return dx, dweight, dbias
