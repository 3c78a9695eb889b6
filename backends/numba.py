"""The numba backend: the naive backend's loops, compiled, run in parallel and cached.

* Every jitted function is ``@numba.njit(cache=True)``: compiled on first use (20-30 s
  for both dtypes), saved in ``backends/__pycache__`` and loaded by later processes. Float32
  computes in float32: constants come from ``x.dtype.type`` (a bare ``1.0`` is float64).
* ``parallel=True`` kernels ``numba.prange`` over samples, (sample, channel) planes or
  channels, so no two threads write one element. Cross-entropy, on (N, classes), is too
  small to pay for waking threads and runs serially. ``im2col``/``col2im`` are serial and
  ``nogil``: :mod:`backends.gemm_conv` runs them on chunks of images in parallel threads.
* Convolution and Linear are GEMMs in NumPy's BLAS: convolution is :mod:`backends.gemm_conv`
  with jitted ``im2col``/``col2im``, Linear is :mod:`backends.numpy`'s. No padded copies:
  bounds checks skip the taps outside the input (zero for convolution, -inf for pooling).
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

import numba
import numpy as np

from backends import gemm_conv
from backends.geometry import (
    WindowGeometry,
    window_geometry,
)
from backends.numpy import linear_backward, linear_forward
from spec.activation import GELU_KAPPA, INV_SQRT_2PI, SQRT_2_OVER_PI, SQRT_HALF

__all__ = ["batch_norm_backward", "batch_norm_forward", "col2im", "conv2d_backward",
           "conv2d_forward", "cross_entropy_backward", "cross_entropy_forward", "gelu_backward",
    "gelu_forward", "im2col",
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


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    return gemm_conv.conv2d_forward(x, weight, bias, stride, padding, dilation, PATCH_OPS)


def conv2d_backward(dy: np.ndarray,
                    ctx: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    return gemm_conv.conv2d_backward(dy, ctx, PATCH_OPS)


# ---- Linear: one GEMM each way, in BLAS: re-exported from backends.numpy (see imports) -----


# ---- MaxPool2d ----------------------------------------------------------------------------


@numba.njit(cache=True, parallel=True)
def _max_pool_forward(x, y, argmax, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    planes, h, w = x.shape  # x (N*C, H, W), y (N*C, OH, OW), argmax (N*C, OH*OW)
    for nc in numba.prange(planes):
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


@numba.njit(cache=True, parallel=True)
def _max_pool_backward(dy, argmax, dx):
    planes, outputs = dy.shape  # dy, argmax (N*C, OH*OW); dx (N*C, H*W)
    for nc in numba.prange(planes):  # a plane is one thread's: overlaps add up, no races
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
    _max_pool_forward(x3, y.reshape(g.n * g.c, g.oh, g.ow), argmax, *_window(g))
    return y, (argmax, x.shape)


def max_pool2d_backward(dy: np.ndarray, ctx: tuple) -> np.ndarray:
    argmax, x_shape = ctx
    dx = np.empty(x_shape, dy.dtype)
    _max_pool_backward(np.ascontiguousarray(dy).reshape(argmax.shape), argmax,
                       dx.reshape(argmax.shape[0], -1))
    return dx


# ---- BatchNorm ----------------------------------------------------------------------------


@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def _batch_stats(x3):
    n_, c_, l_ = x3.shape
    mean, var = np.empty(c_, x3.dtype), np.empty(c_, x3.dtype)
    zero, m = x3.dtype.type(0), x3.dtype.type(n_ * l_)
    for c in numba.prange(c_):
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
    return mean, var


@numba.njit(cache=True, parallel=True)
def _batch_norm_apply(x3, mean, invstd, gamma, beta, xhat, y3):
    n_, c_, l_ = x3.shape
    for c in numba.prange(c_):
        for n in range(n_):
            for k in range(l_):
                xhat[n, c, k] = (x3[n, c, k] - mean[c]) * invstd[c]
                y3[n, c, k] = xhat[n, c, k] * gamma[c] + beta[c]


@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def _batch_norm_backward(dy3, xhat, scale, batch_stats, dx3):
    n_, c_, l_ = dy3.shape
    dweight, dbias = np.empty(c_, dy3.dtype), np.empty(c_, dy3.dtype)
    zero, m = dy3.dtype.type(0), dy3.dtype.type(n_ * l_)
    for c in numba.prange(c_):
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
    return dweight, dbias


def batch_norm_forward(x3: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                       mean: np.ndarray | None, var: np.ndarray | None,
                       eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    x3 = np.ascontiguousarray(x3)
    batch_stats = mean is None
    if batch_stats:
        mean, var = _batch_stats(x3)
    invstd = 1 / np.sqrt(var + x3.dtype.type(eps))
    gamma = np.ones_like(invstd) if weight is None else weight  # y = xhat * 1 + 0 is xhat
    beta = np.zeros_like(invstd) if bias is None else bias
    xhat, y3 = np.empty_like(x3), np.empty_like(x3)
    _batch_norm_apply(x3, np.ascontiguousarray(mean), invstd, np.ascontiguousarray(gamma),
                      np.ascontiguousarray(beta), xhat, y3)
    return y3, mean, var, (xhat, invstd, weight, batch_stats)


def batch_norm_backward(dy3: np.ndarray,
                        ctx: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xhat, invstd, weight, batch_stats = ctx
    scale = invstd if weight is None else weight * invstd
    dx3 = np.empty_like(xhat)
    dweight, dbias = _batch_norm_backward(np.ascontiguousarray(dy3), xhat,
                                          np.ascontiguousarray(scale), batch_stats, dx3)
    return dx3, dweight, dbias


# ---- ReLU ---------------------------------------------------------------------------------


@numba.njit(cache=True, parallel=True)
def _relu_forward(x, y):
    zero = x.dtype.type(0)
    for k in numba.prange(x.size):
        y[k] = zero if x[k] <= zero else x[k]  # NaN <= 0 is False: NaN passes, as in torch


@numba.njit(cache=True, parallel=True)
def _relu_backward(dy, y, dx):
    zero = dy.dtype.type(0)
    for k in numba.prange(dy.size):
        # torch's threshold_backward: 0 where y <= 0 (so at x == 0); NaN lets dy through
        dx[k] = zero if y[k] <= zero else dy[k]


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.empty(x.shape, x.dtype)
    _relu_forward(np.ascontiguousarray(x).reshape(-1), y.reshape(-1))
    return y, y


def relu_backward(dy: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    dx = np.empty(dy.shape, dy.dtype)
    _relu_backward(np.ascontiguousarray(dy).reshape(-1), ctx.reshape(-1), dx.reshape(-1))
    return dx


# ---- GELU ---------------------------------------------------------------------------------


@numba.njit(cache=True, parallel=True)
def _gelu_forward(x, tanh_form, y):
    half, one = x.dtype.type(0.5), x.dtype.type(1)  # constants in the input's dtype
    root_half, beta, kappa = (x.dtype.type(SQRT_HALF), x.dtype.type(SQRT_2_OVER_PI),
                              x.dtype.type(GELU_KAPPA))
    for k in numba.prange(x.size):
        v = x[k]
        if tanh_form:
            y[k] = half * v * (one + math.tanh(beta * (v + kappa * v * v * v)))
        else:
            y[k] = v * half * (one + math.erf(v * root_half))


@numba.njit(cache=True, parallel=True)
def _gelu_backward(dy, x, tanh_form, dx):
    half, one, three = x.dtype.type(0.5), x.dtype.type(1), x.dtype.type(3)
    root_half, beta, kappa, inv_root_2pi = (
        x.dtype.type(SQRT_HALF), x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(GELU_KAPPA),
        x.dtype.type(INV_SQRT_2PI))
    for k in numba.prange(x.size):
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


@numba.njit(cache=True, parallel=True)
def _gelu32_forward(x, y):
    half, root_half = np.float32(0.5), np.float32(SQRT_HALF)
    for k in numba.prange(x.size):
        v = x[k]
        y[k] = v * half * (np.float32(1) + _erf32(v * root_half))


@numba.njit(cache=True, parallel=True)
def _gelu32_backward(dy, x, dx):
    half, root_half, inv_root_2pi = (np.float32(0.5), np.float32(SQRT_HALF),
                                     np.float32(INV_SQRT_2PI))
    for k in numba.prange(x.size):
        v = x[k]
        pdf = _exp_neg32(half * v * v) * inv_root_2pi
        dx[k] = dy[k] * (half * (np.float32(1) + _erf32(v * root_half)) + v * pdf)


def _fast_erf(x: np.ndarray, approximate: str) -> bool:
    return x.dtype == np.float32 and approximate == "none"


def gelu_forward(x: np.ndarray, approximate: str) -> tuple[np.ndarray, tuple]:
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    if _fast_erf(x, approximate):
        _gelu32_forward(x.reshape(-1), y.reshape(-1))
    else:
        _gelu_forward(x.reshape(-1), approximate == "tanh", y.reshape(-1))
    return y, (x, approximate)


def gelu_backward(dy: np.ndarray, ctx: tuple) -> np.ndarray:
    x, approximate = ctx
    dx = np.empty_like(x)
    dy = np.ascontiguousarray(dy).reshape(-1)
    if _fast_erf(x, approximate):
        _gelu32_backward(dy, x.reshape(-1), dx.reshape(-1))
    else:
        _gelu_backward(dy, x.reshape(-1), approximate == "tanh", dx.reshape(-1))
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
