"""The numba backend: the naive backend's loops, compiled, run in parallel and cached.

* Every jitted function is ``@numba.njit(cache=True)``: compiled on first use (20-30 s
  for both dtypes), saved in ``backends/__pycache__`` and loaded by later processes. Float32
  computes in float32: constants come from ``x.dtype.type`` (a bare ``1.0`` is float64).
* Every kernel is serial and ``nogil``. :func:`backends.threads.parallel_range` runs the
  layer kernels over pieces of their samples, (sample, channel) planes, channels or
  elements, so no two threads write one element, and :mod:`backends.gemm_conv` runs
  ``im2col``/``col2im`` on chunks of images: one pool of threads for all of it, none
  spinning (no ``parallel=True``: numba's OpenMP workers busy-wait after each kernel and
  slow the next layer's threads, :mod:`backends.threads`). Cross-entropy, on
  (N, classes), is too small to pay for waking threads and runs serially.
* The layer kernels take ``error_model="numpy"``: a division by zero gives inf or NaN, as in
  torch, instead of a check in the loop that stops it vectorizing (GELU's float32 forward
  12x slower without it).
* Convolution and Linear are GEMMs in NumPy's BLAS: convolution is :mod:`backends.gemm_conv`
  with jitted ``im2col``/``col2im`` (or :mod:`backends.winograd`'s GEMMs with jitted
  transforms), Linear is :mod:`backends.numpy`'s. No padded copies: bounds checks skip the
  taps outside the input (zero for convolution, -inf for pooling). The exception is the
  direct 3x3 kernel for few input channels (:mod:`backends.direct_conv`), which computes
  without a GEMM from a zero-padded copy of each image, so that its inner loop has no branch.
  ``im2col``/``col2im`` stage each sample in an (H, W, C) scratch, so every copy moves
  contiguous runs of channels (x's channels lie H*W elements apart: 4 KiB at 32x32).
* Wrappers make inputs C-contiguous (one compiled layout per dtype), unpack the geometry into
  ints, and allocate activation-sized outputs with NumPy, which asks for transparent huge
  pages; numba's allocator does not, and page faults then dominate (BatchNorm: 17 of 20 ms).
* Channel sums (BatchNorm) add each contiguous row, then the rows, with ``fastmath`` limited
  to ``reassoc`` so rows vectorize: accurate in float32 without a wider accumulator.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np

from backends import conv_dispatch, direct_conv, gemm_conv, winograd
from backends.geometry import (
    WindowGeometry,
    window_geometry,
)
from backends.numpy import linear_backward, linear_forward
from backends.threads import parallel_range
from spec.activation import GELU_KAPPA, INV_SQRT_2PI, SQRT_2_OVER_PI, SQRT_HALF

__all__ = ["batch_norm_backward", "batch_norm_forward", "col2im", "conv2d_backward",
           "conv2d_backward_weight", "conv2d_forward", "cross_entropy_backward",
           "cross_entropy_forward", "gelu_backward", "gelu_forward", "im2col",
           "linear_backward", "linear_forward", "max_pool2d_backward", "max_pool2d_forward",
           "relu_backward", "relu_forward"]


def _window(g: WindowGeometry) -> tuple[int, ...]:
    """The ints a jitted window kernel needs: kernel, stride, padding, dilation, output."""
    return g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.oh, g.ow


# ---- Conv2d -------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)  # serial: gemm_conv runs chunks of images in parallel
def _im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    n_, c_, h, w = x.shape
    zero = x.dtype.type(0)
    for n in range(n_):
        # x[n] to (H, W, C) first: reading channels directly would stride H*W elements
        hwc = np.empty((h, w, c_), x.dtype)
        for c in range(c_):
            for r in range(h):
                for s in range(w):
                    hwc[r, s, c] = x[n, c, r, s]
        for i in range(oh):
            for j in range(ow):
                row = (n * oh + i) * ow + j
                for p in range(kh):
                    r = i * sh + p * dh - ph
                    for q in range(kw):
                        s, k = j * sw + q * dw - pw, (p * kw + q) * c_
                        inside = 0 <= r < h and 0 <= s < w  # outside: zero padding
                        for c in range(c_):
                            cols[row, k + c] = hwc[r, s, c] if inside else zero


@numba.njit(cache=True, nogil=True)
def _col2im(dcols, dx, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    n_, c_, h, w = dx.shape
    for n in range(n_):
        hwc = np.zeros((h, w, c_), dx.dtype)  # (H, W, C) sums, transposed to dx[n] below
        for i in range(oh):
            for j in range(ow):
                row = (n * oh + i) * ow + j
                for p in range(kh):
                    r = i * sh + p * dh - ph
                    for q in range(kw):
                        s, k = j * sw + q * dw - pw, (p * kw + q) * c_
                        if 0 <= r < h and 0 <= s < w:  # taps on the padding are dropped
                            for c in range(c_):
                                hwc[r, s, c] += dcols[row, k + c]
        for c in range(c_):
            for r in range(h):
                for s in range(w):
                    dx[n, c, r, s] = hwc[r, s, c]


def im2col(x: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """(N, C, H, W) -> patch matrix (N*OH*OW, kH*kW*C), columns in (p, q, c) order."""
    cols = np.empty((g.n * g.oh * g.ow, g.kh * g.kw * g.c), x.dtype)
    _im2col(np.ascontiguousarray(x), cols, *_window(g))
    return cols


def col2im(dcols: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add patch gradients back to (N, C, H, W)."""
    dx = np.empty((g.n, g.c, g.h, g.w), dcols.dtype)
    _col2im(np.ascontiguousarray(dcols), dx, *_window(g))
    return dx


PATCH_OPS = gemm_conv.PatchOps(im2col, col2im)
CONV_ALGORITHMS = conv_dispatch.METHODS  # the settings this backend honours besides "auto"


# Winograd F(2x2, 3x3) transforms (backends.winograd): serial and nogil like im2col. Tiles
# are 4x4 input windows at (2 ti, 2 tj) of the padded input; a tile's 16 transformed values
# go to index [4 xi + nu, channel, tile].


_bt, _b, _at, _a = (numba.njit(cache=True, nogil=True)(f) for f in (
    winograd.apply_bt, winograd.apply_b, winograd.apply_at, winograd.apply_a))


@numba.njit(cache=True, nogil=True)
def _winograd_input(x, v, ph, pw, th, tw):
    n_, c_, h, w = x.shape
    plane = np.zeros((2 * th + 2, 2 * tw + 2), x.dtype)  # zero padded; the border stays 0
    band = np.empty((4, 2 * tw + 2), x.dtype)  # B^T down the columns of one row of tiles
    for c in range(c_):  # channel outer, image inner: each plane of v is written in order
        for n in range(n_):
            plane[ph:ph + h, pw:pw + w] = x[n, c]
            for ti in range(th):
                r = 2 * ti
                for s in range(2 * tw + 2):
                    band[0, s], band[1, s], band[2, s], band[3, s] = _bt(
                        plane[r, s], plane[r + 1, s], plane[r + 2, s], plane[r + 3, s])
                t0 = (n * th + ti) * tw
                for xi in range(4):
                    for tj in range(tw):
                        s = 2 * tj
                        (v[4 * xi, c, t0 + tj], v[4 * xi + 1, c, t0 + tj],
                         v[4 * xi + 2, c, t0 + tj], v[4 * xi + 3, c, t0 + tj]) = _bt(
                            band[xi, s], band[xi, s + 1], band[xi, s + 2], band[xi, s + 3])


@numba.njit(cache=True, nogil=True)
def _winograd_output(m, y, th, tw):
    n_, k_, oh, ow = y.shape
    for k in range(k_):
        for n in range(n_):
            for ti in range(th):
                i, t0 = 2 * ti, (n * th + ti) * tw
                for tj in range(tw):
                    t, j = t0 + tj, 2 * tj
                    p00, p10 = _at(m[0, k, t], m[4, k, t], m[8, k, t], m[12, k, t])
                    p01, p11 = _at(m[1, k, t], m[5, k, t], m[9, k, t], m[13, k, t])
                    p02, p12 = _at(m[2, k, t], m[6, k, t], m[10, k, t], m[14, k, t])
                    p03, p13 = _at(m[3, k, t], m[7, k, t], m[11, k, t], m[15, k, t])
                    y00, y01 = _at(p00, p01, p02, p03)
                    y10, y11 = _at(p10, p11, p12, p13)
                    y[n, k, i, j] = y00
                    if j + 1 < ow:
                        y[n, k, i, j + 1] = y01
                    if i + 1 < oh:
                        y[n, k, i + 1, j] = y10
                        if j + 1 < ow:
                            y[n, k, i + 1, j + 1] = y11


@numba.njit(cache=True, nogil=True)
def _winograd_output_adjoint(dy, dm, th, tw):
    n_, k_, oh, ow = dy.shape
    zero = dy.dtype.type(0)
    for k in range(k_):
        for n in range(n_):
            for ti in range(th):
                i, t0 = 2 * ti, (n * th + ti) * tw
                for tj in range(tw):
                    t, j = t0 + tj, 2 * tj
                    d00 = dy[n, k, i, j]  # the partial last tile reads zeros past the edge
                    d01 = dy[n, k, i, j + 1] if j + 1 < ow else zero
                    d10 = dy[n, k, i + 1, j] if i + 1 < oh else zero
                    d11 = dy[n, k, i + 1, j + 1] if i + 1 < oh and j + 1 < ow else zero
                    r00, r10, r20, r30 = _a(d00, d10)
                    r01, r11, r21, r31 = _a(d01, d11)
                    dm[0, k, t], dm[1, k, t], dm[2, k, t], dm[3, k, t] = _a(r00, r01)
                    dm[4, k, t], dm[5, k, t], dm[6, k, t], dm[7, k, t] = _a(r10, r11)
                    dm[8, k, t], dm[9, k, t], dm[10, k, t], dm[11, k, t] = _a(r20, r21)
                    dm[12, k, t], dm[13, k, t], dm[14, k, t], dm[15, k, t] = _a(r30, r31)


@numba.njit(cache=True, nogil=True)
def _winograd_input_adjoint(dv, dx, ph, pw, th, tw):
    n_, c_, h, w = dx.shape
    plane = np.empty((2 * th + 2, 2 * tw + 2), dx.dtype)  # sums over the padded input
    band = np.empty((4, 2 * tw + 2), dx.dtype)  # B dV B^T of one row of tiles, before B
    for c in range(c_):
        for n in range(n_):
            plane[:] = 0
            for ti in range(th):
                band[:] = 0
                t0 = (n * th + ti) * tw
                for xi in range(4):
                    for tj in range(tw):
                        s, t = 2 * tj, t0 + tj
                        b0, b1, b2, b3 = _b(dv[4 * xi, c, t], dv[4 * xi + 1, c, t],
                                            dv[4 * xi + 2, c, t], dv[4 * xi + 3, c, t])
                        band[xi, s] += b0
                        band[xi, s + 1] += b1
                        band[xi, s + 2] += b2
                        band[xi, s + 3] += b3
                r = 2 * ti
                for s in range(2 * tw + 2):
                    d0, d1, d2, d3 = _b(band[0, s], band[1, s], band[2, s], band[3, s])
                    plane[r, s] += d0
                    plane[r + 1, s] += d1
                    plane[r + 2, s] += d2
                    plane[r + 3, s] += d3
            dx[n, c] = plane[ph:ph + h, pw:pw + w]


def winograd_input(x: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """(n, C, H, W) -> V (16, C, n*tiles), B^T d B of every 4x4 input tile."""
    th, tw = winograd.tile_grid(g)
    v = winograd.tile_buffer(g.c, g.n * th * tw, x.dtype)
    _winograd_input(np.ascontiguousarray(x), v, g.ph, g.pw, th, tw)
    return v


def winograd_output(m: np.ndarray, y: np.ndarray, g: WindowGeometry) -> None:
    """M (16, K, n*tiles) -> A^T M A, written into y (n, K, OH, OW)."""
    _winograd_output(m, y, *winograd.tile_grid(g))


def winograd_output_adjoint(dy: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """dy (n, K, OH, OW) -> dM (16, K, n*tiles) = A dY A^T of every 2x2 output tile."""
    th, tw = winograd.tile_grid(g)
    dm = winograd.tile_buffer(dy.shape[1], g.n * th * tw, dy.dtype)
    _winograd_output_adjoint(np.ascontiguousarray(dy), dm, th, tw)
    return dm


def winograd_input_adjoint(dv: np.ndarray, dx: np.ndarray, g: WindowGeometry) -> None:
    """dV (16, C, n*tiles) -> the sum of B dV B^T over the overlapping tiles, into dx."""
    _winograd_input_adjoint(dv, dx, g.ph, g.pw, *winograd.tile_grid(g))


WINOGRAD_OPS = winograd.WinogradOps(winograd_input, winograd_output, winograd_output_adjoint,
                                    winograd_input_adjoint)


# Direct 3x3 convolution for few input channels (backends.direct_conv): serial and nogil.
# Each image's planes are first copied into a zero-padded scratch, so the loops need no
# bounds checks and the innermost one, along an output row, vectorizes.


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _correlate3x3(x, weight, bias, y, ph, pw):
    n_, c_, h, w = x.shape
    k_, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    padded = np.zeros((c_, oh + 2, ow + 2), x.dtype)  # the border stays 0
    for n in range(n_):
        for c in range(c_):
            padded[c, ph:ph + h, pw:pw + w] = x[n, c]
        for k in range(k_):
            out = y[n, k]
            out[:] = bias[k]
            for c in range(c_):
                plane, t = padded[c], weight[k, c]
                t00, t01, t02, t10, t11, t12, t20, t21, t22 = (
                    t[0, 0], t[0, 1], t[0, 2], t[1, 0], t[1, 1], t[1, 2], t[2, 0], t[2, 1], t[2, 2])
                for i in range(oh):
                    r0, r1, r2, row = plane[i], plane[i + 1], plane[i + 2], out[i]
                    for j in range(ow):
                        row[j] += (t00 * r0[j] + t01 * r0[j + 1] + t02 * r0[j + 2]
                                   + t10 * r1[j] + t11 * r1[j + 1] + t12 * r1[j + 2]
                                   + t20 * r2[j] + t21 * r2[j + 1] + t22 * r2[j + 2])


@numba.njit(cache=True, nogil=True)
def _patches3x3(x, cols, ph, pw):
    n_, c_, h, w = x.shape
    oh, ow = cols.shape[3], cols.shape[4]
    padded = np.zeros((oh + 2, ow + 2), x.dtype)
    for n in range(n_):
        for c in range(c_):
            padded[ph:ph + h, pw:pw + w] = x[n, c]
            for p in range(3):
                for q in range(3):
                    cols[n, c, 3 * p + q] = padded[p:p + oh, q:q + ow]


def correlate3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, y: np.ndarray,
                 padding: tuple[int, int]) -> None:
    """y (n, K, OH, OW) = the correlation of x, zero-padded by ``padding``, with weight,
    plus bias."""
    _correlate3x3(np.ascontiguousarray(x), weight, bias, y, *padding)


def patches3x3(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """(n, C, H, W) -> (n, C*9, OH*OW): the padded input under each of the 9 taps."""
    n, c, h, w = x.shape
    oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    cols = np.empty((n, c, 9, oh, ow), x.dtype)
    _patches3x3(np.ascontiguousarray(x), cols, *padding)
    return cols.reshape(n, c * 9, oh * ow)


DIRECT_OPS = direct_conv.DirectOps(correlate3x3, patches3x3)


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    return conv_dispatch.conv2d_forward(x, weight, bias, stride, padding, dilation,
                                         "numba", PATCH_OPS, WINOGRAD_OPS, DIRECT_OPS)


def conv2d_backward(dy: np.ndarray,
                    ctx: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    return conv_dispatch.conv2d_backward(dy, ctx, PATCH_OPS, WINOGRAD_OPS, DIRECT_OPS)


def conv2d_backward_weight(dy: np.ndarray, ctx: tuple) -> tuple[np.ndarray, np.ndarray | None]:
    """(dweight, dbias) without dx: for a first layer, whose input needs no gradient."""
    return conv_dispatch.conv2d_backward(dy, ctx, PATCH_OPS, WINOGRAD_OPS, DIRECT_OPS,
                                         input_grad=False)[1:]


# ---- Linear: one GEMM each way, in BLAS: re-exported from backends.numpy (see imports) -----


# ---- MaxPool2d ----------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _max_pool_forward(x, y, argmax, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    planes, h, w = x.shape  # x (N*C, H, W), y (N*C, OH, OW), argmax (N*C, OH*OW)
    for nc in range(planes):
        for i in range(oh):
            for j in range(ow):
                best, where = x.dtype.type(-np.inf), -1  # where: r*W + s, -1 if no tap inside
                for p in range(kh):
                    r = i * sh + p * dh - ph
                    for q in range(kw):
                        s = j * sw + q * dw - pw
                        if 0 <= r < h and 0 <= s < w:
                            v = x[nc, r, s]
                            # as torch's CPU kernel: the first tap inside, then strictly
                            # greater (the first maximum wins a tie) or NaN
                            if where < 0 or v > best or np.isnan(v):
                                best, where = v, r * w + s
                y[nc, i, j], argmax[nc, i * ow + j] = best, where


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _max_pool_backward(dy, argmax, dx):
    planes, outputs = dy.shape  # dy, argmax (N*C, OH*OW); dx (N*C, H*W)
    for nc in range(planes):  # a plane is one thread's: overlaps add up, no races
        dx[nc, :] = 0
        for k in range(outputs):
            if argmax[nc, k] >= 0:
                dx[nc, argmax[nc, k]] += dy[nc, k]


def max_pool2d_forward(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int], dilation: tuple[int, int],
                       out_size: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    g = window_geometry(x.shape, kernel, stride, padding, dilation, out_size)
    y = np.empty((g.n, g.c, g.oh, g.ow), x.dtype)
    argmax = np.empty((g.n * g.c, g.oh * g.ow), np.int32)
    x3 = np.ascontiguousarray(x).reshape(g.n * g.c, g.h, g.w)
    y3 = y.reshape(g.n * g.c, g.oh, g.ow)
    parallel_range(lambda start, stop: _max_pool_forward(
        x3[start:stop], y3[start:stop], argmax[start:stop], *_window(g)), g.n * g.c)
    return y, (argmax, x.shape)


def max_pool2d_backward(dy: np.ndarray, ctx: tuple) -> np.ndarray:
    argmax, x_shape = ctx
    dx = np.empty(x_shape, dy.dtype)
    dy2, dx2 = np.ascontiguousarray(dy).reshape(argmax.shape), dx.reshape(argmax.shape[0], -1)
    parallel_range(lambda start, stop: _max_pool_backward(
        dy2[start:stop], argmax[start:stop], dx2[start:stop]), len(argmax))
    return dx


# ---- BatchNorm ----------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _batch_stats(x3, mean, var, start, stop):
    n_, _, l_ = x3.shape
    zero, m = x3.dtype.type(0), x3.dtype.type(n_ * l_)
    for c in range(start, stop):
        total = zero
        for n in range(n_):
            row = zero
            for k in range(l_):
                row += x3[n, c, k]
            total += row
        mean[c] = total / m
        total = zero
        for n in range(n_):  # second pass: the biased variance about the mean
            row = zero
            for k in range(l_):
                row += (x3[n, c, k] - mean[c]) * (x3[n, c, k] - mean[c])
            total += row
        var[c] = total / m


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _batch_norm_apply(x3, mean, invstd, gamma, beta, xhat, y3, start, stop):
    n_, _, l_ = x3.shape
    for c in range(start, stop):
        for n in range(n_):
            for k in range(l_):
                xhat[n, c, k] = (x3[n, c, k] - mean[c]) * invstd[c]
                y3[n, c, k] = xhat[n, c, k] * gamma[c] + beta[c]


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _batch_norm_backward(dy3, xhat, scale, batch_stats, dx3, dweight, dbias, start, stop):
    n_, _, l_ = dy3.shape
    zero, m = dy3.dtype.type(0), dy3.dtype.type(n_ * l_)
    for c in range(start, stop):
        db = dw = zero
        for n in range(n_):
            row_db = row_dw = zero
            for k in range(l_):
                row_db += dy3[n, c, k]
                row_dw += dy3[n, c, k] * xhat[n, c, k]
            db, dw = db + row_db, dw + row_dw
        dbias[c], dweight[c] = db, dw
        for n in range(n_):
            for k in range(l_):
                if batch_stats:  # dx = gamma invstd / m (m dy - sum(dy) - xhat sum(dy xhat))
                    dx3[n, c, k] = scale[c] / m * (m * dy3[n, c, k] - db - xhat[n, c, k] * dw)
                else:
                    dx3[n, c, k] = scale[c] * dy3[n, c, k]


def batch_norm_forward(x3: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                       mean: np.ndarray | None, var: np.ndarray | None,
                       eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    x3 = np.ascontiguousarray(x3)
    batch_stats = mean is None
    channels = x3.shape[1]
    if batch_stats:
        mean, var = np.empty(channels, x3.dtype), np.empty(channels, x3.dtype)
        parallel_range(lambda start, stop: _batch_stats(x3, mean, var, start, stop), channels)
    invstd = 1 / np.sqrt(var + x3.dtype.type(eps))
    gamma = np.ones_like(invstd) if weight is None else weight  # y = xhat * 1 + 0 is xhat
    beta = np.zeros_like(invstd) if bias is None else bias
    xhat, y3 = np.empty_like(x3), np.empty_like(x3)
    mean, gamma, beta = (np.ascontiguousarray(a) for a in (mean, gamma, beta))
    parallel_range(lambda start, stop: _batch_norm_apply(x3, mean, invstd, gamma, beta, xhat,
                                                         y3, start, stop), channels)
    return y3, mean, var, (xhat, invstd, weight, batch_stats)


def batch_norm_backward(dy3: np.ndarray,
                        ctx: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xhat, invstd, weight, batch_stats = ctx
    scale = invstd if weight is None else weight * invstd
    dy3, scale = np.ascontiguousarray(dy3), np.ascontiguousarray(scale)
    dx3, channels = np.empty_like(xhat), xhat.shape[1]
    dweight, dbias = np.empty(channels, xhat.dtype), np.empty(channels, xhat.dtype)
    parallel_range(lambda start, stop: _batch_norm_backward(
        dy3, xhat, scale, batch_stats, dx3, dweight, dbias, start, stop), channels)
    return dx3, dweight, dbias


# ---- ReLU ---------------------------------------------------------------------------------


#: Fewest elements per thread for an elementwise kernel: below it, waking a thread costs more.
ELEMENTWISE_GRAIN = 1 << 15


def _elementwise(kernel: Callable[..., None], *args: np.ndarray | bool) -> None:
    """``kernel(*args)`` on pieces of the flat elements of C-contiguous arrays, in parallel;
    the flag arguments pass through. Each piece is a slice: a kernel whose innermost loop
    indexed with ``range(start, stop)`` would check every index for wraparound (numba cannot
    know start >= 0) and run 10x slower."""
    flat = [a.reshape(-1) if isinstance(a, np.ndarray) else a for a in args]
    parallel_range(lambda start, stop: kernel(*[a[start:stop] if isinstance(a, np.ndarray)
                                                else a for a in flat]),
                   flat[0].size, ELEMENTWISE_GRAIN)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _relu_forward(x, y):
    zero = x.dtype.type(0)
    for k in range(x.size):
        y[k] = zero if x[k] <= zero else x[k]  # NaN <= 0 is False: NaN passes, as in torch


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _relu_backward(dy, y, dx):
    zero = dy.dtype.type(0)
    for k in range(dy.size):
        # torch's threshold_backward: 0 where y <= 0 (so at x == 0); NaN lets dy through
        dx[k] = zero if y[k] <= zero else dy[k]


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.empty(x.shape, x.dtype)
    _elementwise(_relu_forward, np.ascontiguousarray(x), y)
    return y, y


def relu_backward(dy: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    dx = np.empty(dy.shape, dy.dtype)
    _elementwise(_relu_backward, np.ascontiguousarray(dy), ctx, dx)
    return dx


# ---- GELU ---------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gelu_forward(x, tanh_form, y):
    half, one = x.dtype.type(0.5), x.dtype.type(1)  # constants in the input's dtype
    root_half, beta, kappa = (x.dtype.type(SQRT_HALF), x.dtype.type(SQRT_2_OVER_PI),
                              x.dtype.type(GELU_KAPPA))
    for k in range(x.size):
        v = x[k]
        if tanh_form:
            y[k] = half * v * (one + math.tanh(beta * (v + kappa * v * v * v)))
        else:
            y[k] = v * half * (one + math.erf(v * root_half))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gelu_backward(dy, x, tanh_form, dx):
    half, one, three = x.dtype.type(0.5), x.dtype.type(1), x.dtype.type(3)
    root_half, beta, kappa, inv_root_2pi = (
        x.dtype.type(SQRT_HALF), x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(GELU_KAPPA),
        x.dtype.type(INV_SQRT_2PI))
    for k in range(x.size):
        v = x[k]
        if tanh_form:
            t = math.tanh(beta * (v + kappa * v * v * v))
            inner_grad = beta * (one + three * kappa * v * v)
            slope = half * (one + t) + half * v * (one - t * t) * inner_grad
        else:
            pdf = math.exp(-half * v * v) * inv_root_2pi
            slope = half * (one + math.erf(v * root_half)) + v * pdf
        dx[k] = dy[k] * slope


# Eigen's float32 erf (generic_fast_erf_float): x P(x^2) / Q(x^2) on [-4, 4], within 5e-7 of
# erf, and it vectorizes, unlike math.erf, a scalar libm call (GELU's float32 kernels: 3x).
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
          -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
          -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
          -7.37332916720468e-03, -1.42647390514189e-02)


@numba.njit(cache=True, inline="always")
def _erf32(v):
    v = min(max(v, np.float32(-4)), np.float32(4))
    v2 = v * v
    p = np.float32(_ERF_P[0])
    for c in _ERF_P[1:]:
        p = p * v2 + np.float32(c)
    q = np.float32(_ERF_Q[0])
    for c in _ERF_Q[1:]:
        q = q * v2 + np.float32(c)
    return v * p / q


# exp(-h), h >= 0, as exp(-h/64)^64: a Taylor polynomial of degree 12 on [0, 87/64], then six
# squarings. Multiplies and adds only, so it vectorizes, unlike math.exp, a scalar libm call
# (GELU's float32 backward: 3.6x). Relative error <= 6e-6 for h <= 20, <= 2e-5 while
# exp(-h) >= 1e-30; the GELU backward stays within 1e-6 (norm-wise) of float64.
_EXP_TAYLOR = tuple((-1) ** k / math.factorial(k) for k in range(13))


@numba.njit(cache=True, inline="always")
def _exp_neg32(h):
    s = min(h, np.float32(87)) * np.float32(1 / 64)
    p = np.float32(_EXP_TAYLOR[-1])
    for c in _EXP_TAYLOR[-2::-1]:
        p = p * s + np.float32(c)
    for _ in range(6):
        p = p * p
    return p


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gelu32_forward(x, y):
    half, root_half = np.float32(0.5), np.float32(SQRT_HALF)
    for k in range(x.size):
        v = x[k]
        y[k] = v * half * (np.float32(1) + _erf32(v * root_half))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gelu32_backward(dy, x, dx):
    half, root_half, inv_root_2pi = (np.float32(0.5), np.float32(SQRT_HALF),
                                     np.float32(INV_SQRT_2PI))
    for k in range(x.size):
        v = x[k]
        pdf = _exp_neg32(half * v * v) * inv_root_2pi
        dx[k] = dy[k] * (half * (np.float32(1) + _erf32(v * root_half)) + v * pdf)


def _fast_erf(x: np.ndarray, approximate: str) -> bool:
    return x.dtype == np.float32 and approximate == "none"


def gelu_forward(x: np.ndarray, approximate: str) -> tuple[np.ndarray, tuple]:
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    if _fast_erf(x, approximate):
        _elementwise(_gelu32_forward, x, y)
    else:
        _elementwise(_gelu_forward, x, approximate == "tanh", y)
    return y, (x, approximate)


def gelu_backward(dy: np.ndarray, ctx: tuple) -> np.ndarray:
    x, approximate = ctx
    dx = np.empty_like(x)
    dy = np.ascontiguousarray(dy)
    if _fast_erf(x, approximate):
        _elementwise(_gelu32_backward, dy, x, dx)
    else:
        _elementwise(_gelu_backward, dy, x, approximate == "tanh", dx)
    return dx


# ---- CrossEntropyLoss ---------------------------------------------------------------------


@numba.njit(cache=True)
def _cross_entropy_forward(logits, targets, on_target, per_class):
    n_, classes = logits.shape
    logp, losses = np.empty_like(logits), np.empty(n_, logits.dtype)
    for n in range(n_):
        top = logits[n, 0]
        for c in range(1, classes):
            top = max(top, logits[n, c])
        total = logits.dtype.type(0)
        for c in range(classes):
            total += np.exp(logits[n, c] - top)  # <= 1 each: no overflow for huge logits
        log_total, smooth = np.log(total), logits.dtype.type(0)
        for c in range(classes):
            logp[n, c] = logits[n, c] - top - log_total
            smooth += logp[n, c]
        losses[n] = on_target * -logp[n, targets[n]] - per_class * smooth
    return losses, logp


@numba.njit(cache=True)
def _cross_entropy_backward(weights, logp, targets, on_target, per_class):
    n_, classes = logp.shape
    grad = np.empty_like(logp)
    for n in range(n_):
        for c in range(classes):  # softmax minus the smoothed one-hot target
            g = np.exp(logp[n, c]) - per_class
            if c == targets[n]:
                g -= on_target
            grad[n, c] = g * weights[n]
    return grad


def _smoothing(label_smoothing: float, classes: int, dtype: np.dtype) -> tuple:
    """The weights of -log p_target and of -sum_c log p_c, in the logits' dtype."""
    return dtype.type(1 - label_smoothing), dtype.type(label_smoothing / classes)


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray,
                          label_smoothing: float) -> tuple[np.ndarray, tuple]:
    logits, targets = np.ascontiguousarray(logits), np.ascontiguousarray(targets, np.int64)
    losses, logp = _cross_entropy_forward(
        logits, targets, *_smoothing(label_smoothing, logits.shape[1], logits.dtype))
    return losses, (logp, targets, label_smoothing)


def cross_entropy_backward(weights: np.ndarray, ctx: tuple) -> np.ndarray:
    logp, targets, label_smoothing = ctx
    weights = np.ascontiguousarray(weights, logp.dtype)
    return _cross_entropy_backward(
        weights, logp, targets, *_smoothing(label_smoothing, logp.shape[1], logp.dtype))
