"""The vectorized NumPy backend: im2col + one GEMM per convolution, no Python loop over the
batch, pixels or channels. im2col is one copy of a strided window view; col2im, whose
windows overlap, loops over the kernel taps (kh*kw strided adds, as in Chainer's col2im),
which keeps ``np.add.at`` out of the hot paths.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from backends import conv_dispatch, gemm_conv, winograd
from backends.geometry import (
    Grads,
    Pair,
    WindowGeometry,
    window_geometry,
)
from spec.activation import GELU_KAPPA, INV_SQRT_2PI, SQRT_2_OVER_PI, SQRT_HALF

# ---- Conv2d -------------------------------------------------------------------------------


def im2col(x: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """(N, C, H, W) -> patch matrix (N*OH*OW, kH*kW*C): one copy of a (N, OH, OW, kH, kW, C)
    window view of the padded NHWC input. NumPy then copies runs of kW*C contiguous values
    (one tap's C at a time, Chainer's kh*kw copies: 2.7x slower at C = 3)."""
    hp, wp = g.padded
    xp = np.zeros((g.n, hp, wp, g.c), x.dtype)
    xp[:, g.ph:g.ph + g.h, g.pw:g.pw + g.w, :] = x.transpose(0, 2, 3, 1)
    image, row, column, channel = xp.strides
    windows = np.lib.stride_tricks.as_strided(
        xp, (g.n, g.oh, g.ow, g.kh, g.kw, g.c),
        (image, g.sh * row, g.sw * column, g.dh * row, g.dw * column, channel), writeable=False)
    return windows.reshape(g.n * g.oh * g.ow, g.kh * g.kw * g.c)


#: Fewest input channels for which :func:`col2im` adds in NHWC rather than NCHW.
COL2IM_NHWC_CHANNELS = 16


def col2im(dcols: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add patch gradients back to (N, C, H, W), tap by
    tap, into a padded dx laid out so that each add moves long contiguous runs: NHWC (runs
    of C) for many channels, NCHW (runs of OW) for few. Measured, 3x3: NCHW 3.6x faster at
    C = 3, even at C = 16, 1.7x slower at C = 32."""
    dcols = dcols.reshape(g.n, g.oh, g.ow, g.kh, g.kw, g.c)
    hp, wp = g.padded
    nhwc = g.c >= COL2IM_NHWC_CHANNELS
    dxp = np.zeros((g.n, hp, wp, g.c) if nhwc else (g.n, g.c, hp, wp), dcols.dtype)
    for p in range(g.kh):
        for q in range(g.kw):
            rows, columns = g.window_slices(p, q)
            if nhwc:
                dxp[:, rows, columns, :] += dcols[:, :, :, p, q, :]
            else:
                dxp[:, :, rows, columns] += dcols[:, :, :, p, q, :].transpose(0, 3, 1, 2)
    if nhwc:
        dxp = dxp.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(dxp[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w])


PATCH_OPS = gemm_conv.PatchOps(im2col, col2im)
CONV_ALGORITHMS = ("im2col", "winograd")  # the settings it honours besides "auto"


# Winograd F(2x2, 3x3) transforms (backends.winograd), as strided slices: tile value [a, b]
# of every tile at once is the slice [a::2, b::2] of the padded input (or output).


def _tile_planes(buffer: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """(16, C, n*tiles) -> a (16, n, C, tile rows, tile columns) view of it."""
    th, tw = winograd.tile_grid(g)
    return buffer.reshape(16, buffer.shape[1], g.n, th, tw).transpose(0, 2, 1, 3, 4)


def winograd_input(x: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """(n, C, H, W) -> V (16, C, n*tiles), B^T d B of every 4x4 input tile."""
    th, tw = winograd.tile_grid(g)
    xp = np.zeros((g.n, g.c, 2 * th + 2, 2 * tw + 2), x.dtype)
    xp[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w] = x
    bands = winograd.apply_bt(*(xp[:, :, a:a + 2 * th:2] for a in range(4)))
    v = winograd.tile_buffer(g.c, g.n * th * tw, x.dtype)
    planes = _tile_planes(v, g)
    for xi, band in enumerate(bands):
        columns = (band[..., b:b + 2 * tw:2] for b in range(4))
        for nu, value in enumerate(winograd.apply_bt(*columns)):
            planes[4 * xi + nu] = value
    return v


def winograd_output(m: np.ndarray, y: np.ndarray, g: WindowGeometry) -> None:
    """M (16, K, n*tiles) -> A^T M A, written into y (n, K, OH, OW)."""
    planes = _tile_planes(m, g)
    down = [winograd.apply_at(*planes[nu::4]) for nu in range(4)]  # down[nu][a]
    for a in range(2):
        rows = (g.oh - a + 1) // 2  # outputs a, a + 2, ... inside the edge
        for b, value in enumerate(winograd.apply_at(*(down[nu][a] for nu in range(4)))):
            columns = (g.ow - b + 1) // 2
            y[:, :, a::2, b::2] = value[:, :, :rows, :columns]


def winograd_output_adjoint(dy: np.ndarray, g: WindowGeometry) -> np.ndarray:
    """dy (n, K, OH, OW) -> dM (16, K, n*tiles) = A dY A^T of every 2x2 output tile."""
    th, tw = winograd.tile_grid(g)
    if (2 * th, 2 * tw) != (g.oh, g.ow):  # a partial last tile reads zeros past the edge
        dy = np.pad(dy, ((0, 0), (0, 0), (0, 2 * th - g.oh), (0, 2 * tw - g.ow)))
    down = [winograd.apply_a(dy[:, :, 0::2, b::2], dy[:, :, 1::2, b::2]) for b in range(2)]
    dm = winograd.tile_buffer(dy.shape[1], g.n * th * tw, dy.dtype)
    planes = _tile_planes(dm, g)
    for xi in range(4):
        for nu, value in enumerate(winograd.apply_a(down[0][xi], down[1][xi])):
            planes[4 * xi + nu] = value
    return dm


def winograd_input_adjoint(dv: np.ndarray, dx: np.ndarray, g: WindowGeometry) -> None:
    """dV (16, C, n*tiles) -> the sum of B dV B^T over the overlapping tiles, into dx."""
    th, tw = winograd.tile_grid(g)
    planes = _tile_planes(dv, g)
    across = [winograd.apply_b(*planes[4 * xi:4 * xi + 4]) for xi in range(4)]  # [xi][b]
    dxp = np.zeros((g.n, g.c, 2 * th + 2, 2 * tw + 2), dv.dtype)
    for b in range(4):
        for a, value in enumerate(winograd.apply_b(*(across[xi][b] for xi in range(4)))):
            dxp[:, :, a:a + 2 * th:2, b:b + 2 * tw:2] += value
    dx[...] = dxp[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w]


WINOGRAD_OPS = winograd.WinogradOps(winograd_input, winograd_output, winograd_output_adjoint,
                                    winograd_input_adjoint)


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: Pair, padding: Pair, dilation: Pair) -> tuple[np.ndarray, tuple]:
    return conv_dispatch.conv2d_forward(x, weight, bias, stride, padding, dilation,
                                         "numpy", PATCH_OPS, WINOGRAD_OPS)


def conv2d_backward(dy: np.ndarray, ctx: tuple) -> Grads:
    return conv_dispatch.conv2d_backward(dy, ctx, PATCH_OPS, WINOGRAD_OPS)


def conv2d_backward_weight(dy: np.ndarray, ctx: tuple) -> tuple[np.ndarray, np.ndarray | None]:
    """(dweight, dbias) without dx: for a first layer, whose input needs no gradient."""
    return conv_dispatch.conv2d_backward(dy, ctx, PATCH_OPS, WINOGRAD_OPS, input_grad=False)[1:]


# ---- Linear -------------------------------------------------------------------------------


def linear_forward(x: np.ndarray, weight: np.ndarray,
                   bias: np.ndarray | None) -> tuple[np.ndarray, tuple]:
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(dy: np.ndarray, ctx: tuple) -> Grads:
    x, weight, has_bias = ctx
    return dy @ weight, dy.T @ x, (dy.sum(axis=0) if has_bias else None)


# ---- MaxPool2d ----------------------------------------------------------------------------


def _pad_with_neg_inf(x: np.ndarray, g: WindowGeometry) -> np.ndarray:
    hp, wp = g.padded
    if (hp, wp) == (g.h, g.w):
        return x
    xp = np.full((g.n, g.c, hp, wp), -np.inf, x.dtype)
    xp[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w] = x
    return xp


def max_pool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair,
                       dilation: Pair, out_size: Pair) -> tuple[np.ndarray, tuple]:
    g = window_geometry(x.shape, kernel, stride, padding, dilation, out_size)
    xp = _pad_with_neg_inf(x, g)
    slices = _taps(g)
    taps = [xp[:, :, rows, columns] for rows, columns in slices]
    y = taps[0].copy()
    for v in taps[1:]:
        np.maximum(y, v, out=y)  # NaN propagates, as in torch
    # the tap of the maximum: the first one, as in torch, so scan backwards keeping hits;
    # arithmetic on masks, since masked copies (np.where, copyto) are several times slower
    tap = np.zeros(y.shape, np.int32)
    padded = xp is not x
    for k in reversed(range(len(taps))):
        hit = taps[k] == y
        if padded:  # the padding never holds the maximum, even of a window of -inf
            hit &= _inside(g, *slices[k])
        tap += (k - tap) * hit
    if np.isnan(y).any():  # torch lets every NaN replace the maximum: the last one wins
        for k, v in enumerate(taps):
            tap[np.isnan(v)] = k
    return y, (tap, g)


def _taps(g: WindowGeometry) -> list[tuple[slice, slice]]:
    """The strided slices of the padded input read by each tap, in row-major window order."""
    return [g.window_slices(p, q) for p in range(g.kh) for q in range(g.kw)]


def _inside(g: WindowGeometry, rows: slice, columns: slice) -> np.ndarray:
    """(OH, OW) mask: does the tap reading ``rows, columns`` fall inside the unpadded input?"""
    r = np.arange(rows.start, rows.stop, rows.step) - g.ph
    c = np.arange(columns.start, columns.stop, columns.step) - g.pw
    return ((r >= 0) & (r < g.h))[:, None] & ((c >= 0) & (c < g.w))[None, :]


def max_pool2d_backward(dy: np.ndarray, ctx: tuple) -> np.ndarray:
    tap, g = ctx
    dxp = np.zeros((g.n, g.c, *g.padded), dy.dtype)
    for k, (rows, columns) in enumerate(_taps(g)):
        dxp[:, :, rows, columns] += dy * (tap == k)
    return np.ascontiguousarray(dxp[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w])


# ---- BatchNorm ----------------------------------------------------------------------------


def batch_norm_forward(x3: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                       mean: np.ndarray | None, var: np.ndarray | None,
                       eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    batch_stats = mean is None
    if batch_stats:
        mean = x3.mean(axis=(0, 2))
        var = np.square(x3 - mean[:, None]).mean(axis=(0, 2))  # biased, two-pass
    invstd = 1.0 / np.sqrt(var + x3.dtype.type(eps))
    xhat = (x3 - mean[:, None]) * invstd[:, None]
    y3 = xhat if weight is None else xhat * weight[:, None]
    if bias is not None:
        y3 = y3 + bias[:, None]
    return y3, mean, var, (xhat, invstd, weight, batch_stats)


def batch_norm_backward(dy3: np.ndarray, ctx: tuple) -> Grads:
    xhat, invstd, weight, batch_stats = ctx
    dbias = dy3.sum(axis=(0, 2))
    dweight = (dy3 * xhat).sum(axis=(0, 2))
    scale = invstd if weight is None else weight * invstd
    if batch_stats:
        m = dy3.dtype.type(dy3.shape[0] * dy3.shape[2])
        # dx = gamma * invstd / m * (m dy - sum(dy) - xhat * sum(dy xhat))
        dx3 = (scale / m)[:, None] * (m * dy3 - dbias[:, None] - xhat * dweight[:, None])
    else:
        dx3 = dy3 * scale[:, None]
    return dx3, dweight, dbias


# ---- ReLU ---------------------------------------------------------------------------------


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.maximum(x, 0)
    return y, y


def relu_backward(dy: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    # torch's threshold_backward: 0 where y <= 0 (so at x == 0); NaN lets dy through.
    # A product, since np.where is several times slower (only an inf or NaN dy at y <= 0
    # differs: it gives NaN where torch gives 0)
    return dy * ~(ctx <= 0)


# ---- GELU: y = x Phi(x) (erf), or the tanh approximation --------------------------------


def gelu_forward(x: np.ndarray, approximate: str) -> tuple[np.ndarray, tuple]:
    if approximate == "tanh":
        t = np.tanh(SQRT_2_OVER_PI * (x + GELU_KAPPA * x**3))
        return 0.5 * x * (1 + t), (x, approximate, t)
    cdf = 0.5 * (1 + special.erf(x * SQRT_HALF))
    return x * cdf, (x, approximate, cdf)


def gelu_backward(dy: np.ndarray, ctx: tuple) -> np.ndarray:
    x, approximate, aux = ctx
    if approximate == "tanh":
        inner_grad = SQRT_2_OVER_PI * (1 + 3 * GELU_KAPPA * x * x)
        return dy * (0.5 * (1 + aux) + 0.5 * x * (1 - aux * aux) * inner_grad)
    return dy * (aux + x * np.exp(-0.5 * x * x) * INV_SQRT_2PI)


# ---- CrossEntropyLoss ---------------------------------------------------------------------


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray,
                          label_smoothing: float) -> tuple[np.ndarray, tuple]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n, classes = logits.shape
    nll = -logp[np.arange(n), targets]
    losses = (1 - label_smoothing) * nll - (label_smoothing / classes) * logp.sum(axis=1)
    return losses.astype(logits.dtype, copy=False), (logp, targets, label_smoothing)


def cross_entropy_backward(weights: np.ndarray, ctx: tuple) -> np.ndarray:
    logp, targets, label_smoothing = ctx
    n, classes = logp.shape
    grad = np.exp(logp) - label_smoothing / classes
    grad[np.arange(n), targets] -= 1 - label_smoothing
    grad *= weights[:, None]
    return grad
