"""Which algorithm computes a convolution in the numpy and numba backends, and the switch
that overrides the choice, shaped like ``torch.backends`` flags::

    backends.set_conv_algorithm("winograd")  # "auto" (default) | "im2col" | "winograd" | "direct"
    with backends.conv_algorithm("im2col"):
        ...

"im2col" is :mod:`backends.gemm_conv`, "winograd" is :mod:`backends.winograd` wherever it
applies (3x3, stride 1, dilation 1), "direct" is :mod:`backends.direct_conv` wherever it
applies (the same, padding at most 2; numba backend only), im2col elsewhere; "auto" follows
:func:`choose_algorithm`. The forward pass records its algorithm in the ctx, so the backward
pass always matches it whatever the setting is by then.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from backends import direct_conv, gemm_conv, winograd
from backends.geometry import WindowGeometry, window_geometry

METHODS = ("im2col", "winograd", "direct")  # what computes a convolution
ALGORITHMS = ("auto", *METHODS)   # what the setting takes
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


#: Smallest output height and width at which "auto" picks Winograd in the numba backend.
WINOGRAD_MIN_OUTPUT = 8
#: Most input channels at which "auto" picks the direct kernel in the numba backend.
DIRECT_MAX_IN_CHANNELS = 4


def choose_algorithm(g: WindowGeometry, backend: str) -> str:
    """The algorithm "auto" picks for geometry ``g`` in ``backend`` ("numpy" or "numba").

    numba: the direct kernel where it is eligible and the input has at most
    :data:`DIRECT_MAX_IN_CHANNELS` channels; else Winograd where it is eligible and the
    output is at least :data:`WINOGRAD_MIN_OUTPUT` pixels high and wide; else im2col.
    Measured fwd+bwd, float32, Winograd's time over im2col's: 0.74 at 24->48 @31x31, 0.82
    at 48->128 @15, 0.78 at 3->32 @32, 0.95-1.0 at 32->64 @16, 64->128 @8, 48->48 @15, but
    1.05 at 128->128 @7 and 1.65 at @3, where a partial last tile wastes 23% and 44% of the
    work. Direct's median time over Winograd's, N = 128, @32: 0.64 at 3->32, 0.79 at 4->32,
    0.77 at 6->32, 0.95 and 1.20 at 8->32 (two runs), 1.82 at 16->32; 1.22 at 8->64 @16
    (``python -m bench.conv_algorithms --shape ...``, AMD EPYC, 2 threads).
    numpy: always im2col; its strided-slice transforms cost more than the GEMM work they
    save (Winograd took 0.93x im2col's time at 3->32 @32, 1.2-3.2x on the other shapes).
    """
    if backend != "numba":
        return "im2col"
    if direct_conv.eligible(g) and g.c <= DIRECT_MAX_IN_CHANNELS:
        return "direct"
    if winograd.eligible(g) and min(g.oh, g.ow) >= WINOGRAD_MIN_OUTPUT:
        return "winograd"
    return "im2col"


def computes(method: str, g: WindowGeometry) -> bool:
    """Whether ``method`` (one of :data:`METHODS`) computes a convolution of geometry ``g``."""
    return {"im2col": True, "winograd": winograd.eligible(g),
            "direct": direct_conv.eligible(g)}[method]


def _algorithm(g: WindowGeometry, backend: str, has_direct: bool) -> str:
    setting = get_conv_algorithm()
    if setting == "auto":
        return choose_algorithm(g, backend)
    usable = computes(setting, g) and (setting != "direct" or has_direct)
    return setting if usable else "im2col"


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int], backend: str, patch_ops: gemm_conv.PatchOps,
                   winograd_ops: winograd.WinogradOps,
                   direct_ops: direct_conv.DirectOps | None = None) -> tuple[np.ndarray, tuple]:
    """The convolution by the algorithm of the setting (for "auto", ``backend``'s choice;
    "direct" needs ``direct_ops``); ctx = (algorithm, its ctx)."""
    g = window_geometry(x.shape, weight.shape[2:], stride, padding, dilation)
    algorithm = _algorithm(g, backend, direct_ops is not None)
    if algorithm == "direct":
        y, ctx = direct_conv.conv2d_forward(x, weight, bias, g, direct_ops)
    elif algorithm == "winograd":
        y, ctx = winograd.conv2d_forward(x, weight, bias, g, winograd_ops)
    else:
        y, ctx = gemm_conv.conv2d_forward(x, weight, bias, stride, padding, dilation, patch_ops)
    return y, (algorithm, ctx)


def conv2d_backward(dy: np.ndarray, ctx: tuple, patch_ops: gemm_conv.PatchOps,
                    winograd_ops: winograd.WinogradOps,
                    direct_ops: direct_conv.DirectOps | None = None, input_grad: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, or None when not ``input_grad``; dweight; dbias) by the forward's algorithm."""
    algorithm, inner = ctx
    if algorithm == "direct":
        return direct_conv.conv2d_backward(dy, inner, direct_ops, input_grad)
    if algorithm == "winograd":
        return winograd.conv2d_backward(dy, inner, winograd_ops, input_grad)
    return gemm_conv.conv2d_backward(dy, inner, patch_ops, input_grad)
