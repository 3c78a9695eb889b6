"""Sliding-window geometry shared by the convolution and pooling kernels of every backend."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from spec.shapes import window_output_size

Pair = tuple[int, int]
#: what a backward kernel returns: dL/dx, then the weight and bias gradients (None if absent)
Grads = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


class WindowGeometry(NamedTuple):
    """Sizes of one sliding-window op on an (N, C, H, W) input: kernel (kh, kw), stride
    (sh, sw), padding (ph, pw), dilation (dh, dw) and output (oh, ow)."""

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    oh: int
    ow: int

    @property
    def padded(self) -> tuple[int, int]:
        """Height and width of the padded input that every window fits in (with ceil_mode
        the last window may reach past the right padding)."""
        return (max(self.h + 2 * self.ph, (self.oh - 1) * self.sh + self.dh * (self.kh - 1) + 1),
                max(self.w + 2 * self.pw, (self.ow - 1) * self.sw + self.dw * (self.kw - 1) + 1))

    def window_slices(self, p: int, q: int) -> tuple[slice, slice]:
        """The rows and columns of the padded input that kernel tap (p, q) reads, one per
        output pixel: a strided slice, as in Chainer's im2col."""
        top, left = p * self.dh, q * self.dw
        return (slice(top, top + self.sh * (self.oh - 1) + 1, self.sh),
                slice(left, left + self.sw * (self.ow - 1) + 1, self.sw))


def window_geometry(x_shape: tuple[int, ...], kernel: tuple[int, int],
                    stride: tuple[int, int], padding: tuple[int, int],
                    dilation: tuple[int, int],
                    out_size: tuple[int, int] | None = None) -> WindowGeometry:
    """The geometry of a window op; ``out_size`` overrides the floor-mode output size."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = out_size or (window_output_size(h, kh, sh, ph, dh),
                          window_output_size(w, kw, sw, pw, dw))
    return WindowGeometry(n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
