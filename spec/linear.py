"""Linear: y = x W^T + b, as ``torch.nn.Linear``."""

from __future__ import annotations

import numpy as np

from spec import init
from spec.module import Module
from spec.shapes import float_dtype, positive_int


class Linear(Module):
    """Applies an affine map to the last dimension of the input.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: if ``True``, adds a learnable bias. Default: ``True``.
        dtype: parameter dtype, float32 (default) or float64.

    Shape:
        - Input: (*, in_features), at least 2-D
        - Output: (*, out_features)

    Gradients:
        ``backward(dy)`` returns dL/dx and accumulates ``grads['weight']`` of shape
        (out_features, in_features) and ``grads['bias']`` of shape (out_features,).
    """

    kernel_names = ("linear_forward", "linear_backward")
    __constants__ = ("in_features", "out_features", "bias")

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: object = None) -> None:
        super().__init__()
        name = f"Linear({in_features!r}, {out_features!r})"
        self.in_features = positive_int(in_features, name, "in_features")
        self.out_features = positive_int(out_features, name, "out_features")
        dtype = float_dtype(dtype, name)
        self.register_parameter(
            "weight", init.kaiming_uniform((out_features, in_features), in_features, dtype))
        self.register_parameter(
            "bias", init.fan_in_bias((out_features,), in_features, dtype) if bias else None)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*input_shape[:-1], self.out_features)

    def expected_input(self) -> str:
        return f"(N, {self.in_features})"

    def _input_ok(self, shape: tuple[int, ...]) -> bool:
        return len(shape) >= 2 and shape[-1] == self.in_features

    def forward(self, x: np.ndarray) -> np.ndarray:
        x2 = x.reshape(-1, self.in_features)
        y, self._ctx = self.kernels.linear_forward(x2, self.weight, self.bias)
        self._input_shape = x.shape
        return y.reshape(self.output_shape(x.shape))

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = self.kernels.linear_backward(
            dy.reshape(-1, self.out_features), self._ctx)
        self._accumulate_grad("weight", dweight)
        if dbias is not None:
            self._accumulate_grad("bias", dbias)
        return dx.reshape(self._input_shape)
