"""Which algorithm computes a convolution in the numpy and numba backends, and the switch
that overrides the choice, shaped like ``torch.backends`` flags::

    backends.set_conv_algorithm("winograd")     # "auto" (default) | "im2col" | "winograd"
    with backends.conv_algorithm("im2col"):
        ...

"im2col" is :mod:`backends.gemm_conv`, "winograd" is :mod:`backends.winograd` wherever it
applies (3x3, stride 1, dilation 1; elsewhere im2col), and "auto" follows
:func:`choose_algorithm`. The forward pass records its algorithm in the ctx, so the backward
pass always matches it whatever the setting is by then.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from backends import gemm_conv, winograd
from backends.geometry import WindowGeometry, window_geometry

ALGORITHMS = ("auto", "im2col", "winograd")
_setting = {"algorithm": "auto"}


def set_conv_algorithm(name: str) -> None:
    """Compute every later convolution of the numpy and numba backends with ``name``."""
    if name not in ALGORITHMS:
        raise ValueError(f"set_conv_algorithm: expected one of {', '.join(map(repr, ALGORITHMS))}"
                         f", got {name!r}")
    _setting["algorithm"] = name


def get_conv_algorithm() -> str:
    return _setting["algorithm"]


@contextmanager
def conv_algorithm(name: str) -> Iterator[None]:
    """``with conv_algorithm("winograd"): ...``: the setting inside, the previous one after."""
    before = get_conv_algorithm()
    set_conv_algorithm(name)
    try:
        yield
    finally:
        set_conv_algorithm(before)


#: Fewest input and output channels at which "auto" picks Winograd: see choose_algorithm.
WINOGRAD_MIN_CHANNELS = 16


def choose_algorithm(g: WindowGeometry, out_channels: int) -> str:
    """The algorithm "auto" picks: Winograd where eligible and both channel counts reach
    :data:`WINOGRAD_MIN_CHANNELS`; with fewer, its 16 GEMMs are too thin to beat one
    im2col GEMM over 9x the input channels."""
    if winograd.eligible(g) and min(g.c, out_channels) >= WINOGRAD_MIN_CHANNELS:
        return "winograd"
    return "im2col"


def _algorithm(g: WindowGeometry, out_channels: int) -> str:
    setting = get_conv_algorithm()
    if setting == "auto":
        return choose_algorithm(g, out_channels)
    return setting if setting == "im2col" or winograd.eligible(g) else "im2col"


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int], patch_ops: gemm_conv.PatchOps,
                   winograd_ops: winograd.WinogradOps) -> tuple[np.ndarray, tuple]:
    """The convolution by the algorithm of the setting; ctx = (algorithm, its ctx)."""
    g = window_geometry(x.shape, weight.shape[2:], stride, padding, dilation)
    algorithm = _algorithm(g, weight.shape[0])
    if algorithm == "winograd":
        y, ctx = winograd.conv2d_forward(x, weight, bias, g, winograd_ops)
    else:
        y, ctx = gemm_conv.conv2d_forward(x, weight, bias, stride, padding, dilation, patch_ops)
    return y, (algorithm, ctx)


def conv2d_backward(dy: np.ndarray, ctx: tuple, patch_ops: gemm_conv.PatchOps,
                    winograd_ops: winograd.WinogradOps, input_grad: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, or None when not ``input_grad``; dweight; dbias) by the forward's algorithm."""
    algorithm, inner = ctx
    if algorithm == "winograd":
        return winograd.conv2d_backward(dy, inner, winograd_ops, input_grad)
    return gemm_conv.conv2d_backward(dy, inner, patch_ops, input_grad)
