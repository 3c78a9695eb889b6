"""The naive reference backend: explicit loops that follow the textbook formulas.

Every output element is computed on its own, accumulating in the input's dtype, so the
code reads like the math. It is slow: use it on small shapes, to check the fast backends.
"""

from __future__ import annotations

import math

import numpy as np

from backends.geometry import (
    Grads,
    Pair,
    WindowGeometry,
    window_geometry,
)
from spec.activation import GELU_KAPPA, INV_SQRT_2PI, SQRT_2_OVER_PI, SQRT_HALF


def _input_pixel(g: WindowGeometry, i: int, j: int, p: int, q: int) -> tuple[int, int]:
    """Unpadded input coordinates read by output pixel (i, j) at kernel tap (p, q)."""
    return i * g.sh + p * g.dh - g.ph, j * g.sw + q * g.dw - g.pw


def _inside(g: WindowGeometry, r: int, c: int) -> bool:
    return 0 <= r < g.h and 0 <= c < g.w


# ---- Conv2d: y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x[n, c, i s + p d - pad, ...] -------


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: Pair, padding: Pair, dilation: Pair) -> tuple[np.ndarray, tuple]:
    g = window_geometry(x.shape, weight.shape[2:], stride, padding, dilation)
    y = np.zeros((g.n, weight.shape[0], g.oh, g.ow), x.dtype)
    for n in range(g.n):
        for o in range(weight.shape[0]):
            for i in range(g.oh):
                for j in range(g.ow):
                    acc = x.dtype.type(0) if bias is None else bias[o]
                    for c in range(g.c):
                        for p in range(g.kh):
                            for q in range(g.kw):
                                r, s = _input_pixel(g, i, j, p, q)
                                if _inside(g, r, s):
                                    acc += weight[o, c, p, q] * x[n, c, r, s]
                    y[n, o, i, j] = acc
    return y, (x, weight, bias is not None, g)


def conv2d_backward(dy: np.ndarray, ctx: tuple) -> Grads:
    x, weight, has_bias, g = ctx
    dx, dweight = np.zeros_like(x), np.zeros_like(weight)
    dbias = np.zeros(weight.shape[0], dy.dtype)
    for n in range(g.n):
        for o in range(weight.shape[0]):
            for i in range(g.oh):
                for j in range(g.ow):
                    grad = dy[n, o, i, j]
                    dbias[o] += grad
                    for c in range(g.c):
                        for p in range(g.kh):
                            for q in range(g.kw):
                                r, s = _input_pixel(g, i, j, p, q)
                                if _inside(g, r, s):
                                    dweight[o, c, p, q] += grad * x[n, c, r, s]
                                    dx[n, c, r, s] += grad * weight[o, c, p, q]
    return dx, dweight, (dbias if has_bias else None)


# ---- Linear: y[n,o] = b[o] + sum_k w[o,k] x[n,k] ------------------------------------------


def linear_forward(x: np.ndarray, weight: np.ndarray,
                   bias: np.ndarray | None) -> tuple[np.ndarray, tuple]:
    y = np.zeros((x.shape[0], weight.shape[0]), x.dtype)
    for n in range(x.shape[0]):
        for o in range(weight.shape[0]):
            acc = x.dtype.type(0) if bias is None else bias[o]
            for k in range(x.shape[1]):
                acc += weight[o, k] * x[n, k]
            y[n, o] = acc
    return y, (x, weight, bias is not None)


def linear_backward(dy: np.ndarray, ctx: tuple) -> Grads:
    x, weight, has_bias = ctx
    dx, dweight = np.zeros_like(x), np.zeros_like(weight)
    dbias = np.zeros(weight.shape[0], dy.dtype)
    for n in range(x.shape[0]):
        for o in range(weight.shape[0]):
            dbias[o] += dy[n, o]
            for k in range(x.shape[1]):
                dweight[o, k] += dy[n, o] * x[n, k]
                dx[n, k] += dy[n, o] * weight[o, k]
    return dx, dweight, (dbias if has_bias else None)


# ---- MaxPool2d: y = max over the window (padding is -inf); the first maximum wins ----------


def max_pool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair,
                       dilation: Pair, out_size: Pair) -> tuple[np.ndarray, tuple]:
    g = window_geometry(x.shape, kernel, stride, padding, dilation, out_size)
    y = np.empty((g.n, g.c, g.oh, g.ow), x.dtype)
    argmax = np.zeros((g.n, g.c, g.oh, g.ow, 2), np.int64)
    for n in range(g.n):
        for c in range(g.c):
            for i in range(g.oh):
                for j in range(g.ow):
                    best, where = x.dtype.type(-np.inf), None
                    for p in range(g.kh):
                        for q in range(g.kw):
                            r, s = _input_pixel(g, i, j, p, q)
                            if _inside(g, r, s) and (where is None or x[n, c, r, s] > best
                                                     or np.isnan(x[n, c, r, s])):
                                best, where = x[n, c, r, s], (r, s)
                    y[n, c, i, j], argmax[n, c, i, j] = best, where
    return y, (argmax, x.shape)


def max_pool2d_backward(dy: np.ndarray, ctx: tuple) -> np.ndarray:
    argmax, x_shape = ctx
    dx = np.zeros(x_shape, dy.dtype)
    n_, c_, oh, ow = dy.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(oh):
                for j in range(ow):
                    r, s = argmax[n, c, i, j]
                    dx[n, c, r, s] += dy[n, c, i, j]
    return dx


# ---- BatchNorm: y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel -----------------


def batch_norm_forward(x3: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                       mean: np.ndarray | None, var: np.ndarray | None,
                       eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    n_, channels, length = x3.shape
    m = n_ * length
    batch_stats = mean is None
    if batch_stats:
        mean, var = np.zeros(channels, x3.dtype), np.zeros(channels, x3.dtype)
        for c in range(channels):
            total = x3.dtype.type(0)
            for n in range(n_):
                for k in range(length):
                    total += x3[n, c, k]
            mean[c] = total / m
            squares = x3.dtype.type(0)
            for n in range(n_):
                for k in range(length):
                    squares += (x3[n, c, k] - mean[c]) ** 2
            var[c] = squares / m  # biased
    xhat, y3 = np.empty_like(x3), np.empty_like(x3)
    invstd = np.empty(channels, x3.dtype)
    for c in range(channels):
        invstd[c] = 1 / np.sqrt(var[c] + x3.dtype.type(eps))
        gamma = 1 if weight is None else weight[c]
        beta = 0 if bias is None else bias[c]
        for n in range(n_):
            for k in range(length):
                xhat[n, c, k] = (x3[n, c, k] - mean[c]) * invstd[c]
                y3[n, c, k] = xhat[n, c, k] * gamma + beta
    return y3, mean, var, (xhat, invstd, weight, batch_stats)


def batch_norm_backward(dy3: np.ndarray, ctx: tuple) -> Grads:
    xhat, invstd, weight, batch_stats = ctx
    n_, channels, length = dy3.shape
    m = n_ * length
    dx3 = np.empty_like(dy3)
    dweight, dbias = np.zeros(channels, dy3.dtype), np.zeros(channels, dy3.dtype)
    for c in range(channels):
        for n in range(n_):
            for k in range(length):
                dbias[c] += dy3[n, c, k]
                dweight[c] += dy3[n, c, k] * xhat[n, c, k]
        scale = invstd[c] * (1 if weight is None else weight[c])
        for n in range(n_):
            for k in range(length):
                if batch_stats:  # the batch mean and variance depend on x too
                    dx3[n, c, k] = scale * (dy3[n, c, k] - dbias[c] / m
                                            - xhat[n, c, k] * dweight[c] / m)
                else:
                    dx3[n, c, k] = scale * dy3[n, c, k]
    return dx3, dweight, dbias


# ---- ReLU: y = max(x, 0); dy/dx = 1 if x > 0 else 0 (0 at exactly 0) -----------------------


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.empty_like(x)
    for index, value in np.ndenumerate(x):
        y[index] = value if (value > 0 or np.isnan(value)) else 0
    return y, x


def relu_backward(dy: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    dx = np.empty_like(dy)
    for index, value in np.ndenumerate(ctx):
        dx[index] = 0 if value <= 0 else dy[index]  # torch's threshold_backward: NaN passes
    return dx


# ---- GELU: y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2; dy/dx = Phi(x) + x phi(x) --------
# (math.erf and math.tanh work in double; each result is rounded to the input's dtype)


def gelu_forward(x: np.ndarray, approximate: str) -> tuple[np.ndarray, tuple]:
    y = np.empty_like(x)
    for index, value in np.ndenumerate(x):
        v = float(value)
        if approximate == "tanh":
            y[index] = 0.5 * v * (1 + math.tanh(SQRT_2_OVER_PI * (v + GELU_KAPPA * v**3)))
        else:
            y[index] = v * 0.5 * (1 + math.erf(v * SQRT_HALF))
    return y, (x, approximate)


def gelu_backward(dy: np.ndarray, ctx: tuple) -> np.ndarray:
    x, approximate = ctx
    dx = np.empty_like(dy)
    for index, value in np.ndenumerate(x):
        v = float(value)
        if approximate == "tanh":
            t = math.tanh(SQRT_2_OVER_PI * (v + GELU_KAPPA * v**3))
            slope = (0.5 * (1 + t)
                     + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_KAPPA * v * v))
        else:
            slope = 0.5 * (1 + math.erf(v * SQRT_HALF)) + v * math.exp(-0.5 * v * v) * INV_SQRT_2PI
        dx[index] = float(dy[index]) * slope
    return dx


# ---- CrossEntropyLoss: loss = -(1-e) log p_t - e/C sum_c log p_c, log p by log-sum-exp -------


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray,
                          label_smoothing: float) -> tuple[np.ndarray, tuple]:
    n_, classes = logits.shape
    logp = np.empty_like(logits)
    losses = np.empty(n_, logits.dtype)
    for n in range(n_):
        top = max(logits[n])
        total = logits.dtype.type(0)
        for c in range(classes):
            total += np.exp(logits[n, c] - top)
        log_total = np.log(total)
        smooth = logits.dtype.type(0)
        for c in range(classes):
            logp[n, c] = logits[n, c] - top - log_total
            smooth += logp[n, c]
        losses[n] = (-(1 - label_smoothing) * logp[n, targets[n]]
                     - label_smoothing / classes * smooth)
    return losses, (logp, targets, label_smoothing)


def cross_entropy_backward(weights: np.ndarray, ctx: tuple) -> np.ndarray:
    logp, targets, label_smoothing = ctx
    n_, classes = logp.shape
    grad = np.empty_like(logp)
    for n in range(n_):
        for c in range(classes):
            target = (1 - label_smoothing) * (c == targets[n]) + label_smoothing / classes
            grad[n, c] = weights[n] * (np.exp(logp[n, c]) - target)
    return grad
