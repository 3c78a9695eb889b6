"""Conv2d: 2-D cross-correlation, as ``torch.nn.Conv2d`` (groups=1, zero padding)."""

from __future__ import annotations

import numpy as np

from spec import init
from spec.module import Module
from spec.shapes import float_dtype, pair, positive_int, window_output_size


class Conv2d(Module):
    r"""Applies a 2-D convolution over an input of shape (N, C_in, H, W).

    .. math::
        y[n, o, i, j] = b[o] + \sum_{c, p, q} w[o, c, p, q]\,
                        x_{pad}[n, c, s_h i + d_h p, s_w j + d_w q]

    Args:
        in_channels: channels of the input image.
        out_channels: channels produced by the convolution.
        kernel_size: size of the kernel, an int or a (h, w) pair.
        stride: stride of the window. Default: 1.
        padding: zeros added to both sides, an int, a pair, or ``'valid'``/``'same'``
            (``'same'`` needs stride 1 and an odd effective kernel). Default: 0.
        dilation: spacing between kernel elements. Default: 1.
        bias: if ``True``, adds a learnable bias. Default: ``True``.
        dtype: parameter dtype, float32 (default) or float64.

    Shape:
        - Input: (N, C_in, H, W)
        - Output: (N, C_out, H_out, W_out) with
          H_out = floor((H + 2 padding - dilation (kernel - 1) - 1) / stride) + 1

    Gradients:
        ``backward(dy)`` returns dL/dx and accumulates ``grads['weight']`` of shape
        (C_out, C_in, kH, kW) and ``grads['bias']`` of shape (C_out,);
        ``backward(dy, input_grad=False)`` only accumulates them (the backend's
        ``conv2d_backward_weight`` where it has one).
    """

    kernel_names = ("conv2d_forward", "conv2d_backward")
    optional_kernel_names = ("conv2d_backward_weight",)
    __constants__ = ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                     "dilation", "bias")
    _repr_positional = 2
    _repr_defaults = {"padding": (0, 0), "dilation": (1, 1), "bias": True}

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1,
                 bias: bool = True, dtype: object = None) -> None:
        super().__init__()
        name = f"Conv2d({in_channels!r}, {out_channels!r}, {kernel_size!r})"
        self.in_channels = positive_int(in_channels, name, "in_channels")
        self.out_channels = positive_int(out_channels, name, "out_channels")
        self.kernel_size = pair(kernel_size, name, "kernel_size", minimum=1)
        self.stride = pair(stride, name, "stride", minimum=1)
        self.dilation = pair(dilation, name, "dilation", minimum=1)
        self.padding = self._resolve_padding(padding, name)
        dtype = float_dtype(dtype, name)
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        self.register_parameter(
            "weight", init.kaiming_uniform((out_channels, in_channels, kh, kw), fan_in, dtype))
        self.register_parameter(
            "bias", init.fan_in_bias((out_channels,), fan_in, dtype) if bias else None)

    def _resolve_padding(self, padding: int | tuple[int, int] | str,
                         name: str) -> tuple[int, int]:
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            if self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' needs stride 1, got {self.stride}")
            spans = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation, strict=True)]
            if any(span % 2 for span in spans):
                raise ValueError(f"{name}: padding='same' with an even effective kernel "
                                 f"needs asymmetric padding, which PyNet does not support")
            return (spans[0] // 2, spans[1] // 2)
        return pair(padding, name, "padding")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        n, _, h, w = input_shape
        size = [window_output_size(s, k, st, p, d) for s, k, st, p, d in zip(
            (h, w), self.kernel_size, self.stride, self.padding, self.dilation, strict=True)]
        return (n, self.out_channels, size[0], size[1])

    def expected_input(self) -> str:
        return f"(N, {self.in_channels}, H, W) with H, W large enough for the kernel"

    def _input_ok(self, shape: tuple[int, ...]) -> bool:
        return (len(shape) == 4 and shape[1] == self.in_channels and shape[0] > 0
                and min(self.output_shape(shape)[2:]) > 0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self._ctx = self.kernels.conv2d_forward(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = self.kernels.conv2d_backward(dy, self._ctx)
        self._accumulate_parameter_grads(dweight, dbias)
        return dx

    def _parameter_backward(self, dy: np.ndarray) -> None:
        weight_only = getattr(self.kernels, "conv2d_backward_weight", None)
        if weight_only is None:
            self._backward(dy)
        else:
            self._accumulate_parameter_grads(*weight_only(dy, self._ctx))

    def _accumulate_parameter_grads(self, dweight: np.ndarray, dbias: np.ndarray | None) -> None:
        self._accumulate_grad("weight", dweight)
        if dbias is not None:
            self._accumulate_grad("bias", dbias)
