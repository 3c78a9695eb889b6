"""MaxPool2d, as ``torch.nn.MaxPool2d``: -inf padding, first maximum wins a tie."""

from __future__ import annotations

import numpy as np

from spec.module import Module
from spec.shapes import pair, window_output_size


class MaxPool2d(Module):
    """Applies 2-D max pooling over an input of shape (N, C, H, W).

    Padding is implicit -inf, so it never wins a window. When several elements of a
    window share the maximum, the gradient goes to the first one in row-major window
    order, as in PyTorch's CPU and CUDA kernels (ties are common after ReLU).

    Args:
        kernel_size: size of the window, an int or a (h, w) pair.
        stride: stride of the window. Default: ``kernel_size``.
        padding: implicit -inf padding on both sides, at most half the kernel. Default: 0.
        dilation: spacing between window elements. Default: 1.
        ceil_mode: use ceil instead of floor for the output size. Default: ``False``.

    Shape:
        - Input: (N, C, H, W)
        - Output: (N, C, H_out, W_out) with
          H_out = floor((H + 2 padding - dilation (kernel - 1) - 1) / stride) + 1

    Gradients:
        ``backward(dy)`` returns dL/dx; overlapping windows add their contributions.
    """

    kernel_names = ("max_pool2d_forward", "max_pool2d_backward")
    __constants__ = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        name = "MaxPool2d"
        self.kernel_size = pair(kernel_size, name, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else pair(stride, name, "stride", 1)
        self.padding = pair(padding, name, "padding")
        self.dilation = pair(dilation, name, "dilation", minimum=1)
        self.ceil_mode = bool(ceil_mode)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(f"{self.describe()}: padding should be at most half of the kernel "
                             f"size, got padding={self.padding}")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        n, c, h, w = input_shape
        size = [window_output_size(s, k, st, p, d, self.ceil_mode) for s, k, st, p, d in zip(
            (h, w), self.kernel_size, self.stride, self.padding, self.dilation, strict=True)]
        return (n, c, size[0], size[1])

    def expected_input(self) -> str:
        return "(N, C, H, W) with H, W at least the window size"

    def _input_ok(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and shape[0] > 0 and min(self.output_shape(shape)[2:]) > 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        out_size = self.output_shape(x.shape)[2:]
        y, self._ctx = self.kernels.max_pool2d_forward(
            x, self.kernel_size, self.stride, self.padding, self.dilation, out_size)
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.max_pool2d_backward(dy, self._ctx)


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed output size, as ``torch.nn.AdaptiveMaxPool2d``.

    PyNet supports output sizes that divide the input size, where the adaptive windows are
    the regular ``kernel = stride = input // output`` windows of :class:`MaxPool2d` (whose
    kernels it reuses); ``AdaptiveMaxPool2d(1)`` is global max pooling.

    Args:
        output_size: the output (H_out, W_out), an int or a pair.

    Shape:
        - Input: (N, C, H, W) with H divisible by H_out and W by W_out
        - Output: (N, C, H_out, W_out)

    Gradients:
        ``backward(dy)`` returns dL/dx; a tie sends the gradient to the first maximum.
    """

    kernel_names = ("max_pool2d_forward", "max_pool2d_backward")
    __constants__ = ("output_size",)

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        super().__init__()
        self.output_size = pair(output_size, "AdaptiveMaxPool2d", "output_size", minimum=1)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        return (input_shape[0], input_shape[1], *self.output_size)

    def expected_input(self) -> str:
        oh, ow = self.output_size
        return f"(N, C, H, W) with H a multiple of {oh} and W a multiple of {ow}"

    def _input_ok(self, shape: tuple[int, ...]) -> bool:
        return (len(shape) == 4 and shape[0] > 0
                and all(s >= o and s % o == 0
                        for s, o in zip(shape[2:], self.output_size, strict=True)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        window = tuple(s // o for s, o in zip(x.shape[2:], self.output_size, strict=True))
        y, self._ctx = self.kernels.max_pool2d_forward(
            x, window, window, (0, 0), (1, 1), self.output_size)
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.max_pool2d_backward(dy, self._ctx)

    def _repr_value(self, name: str, value: tuple[int, int]) -> str:
        # PyNet keeps a pair; a square one prints as the int torch shows for ...Pool2d(1)
        return repr(value[0] if value[0] == value[1] else value)
