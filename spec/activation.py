"""ReLU, GELU and Flatten: element-wise and shape-only layers."""

from __future__ import annotations

import math

import numpy as np

from spec.module import Module

# GELU's constants, as torch writes them: 1/sqrt(2), sqrt(2/pi), 1/sqrt(2 pi), kappa
SQRT_HALF = math.sqrt(0.5)
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
GELU_KAPPA = 0.044715


class ReLU(Module):
    """Applies ``max(0, x)`` element-wise, as ``torch.nn.ReLU``.

    Shape:
        - Input: (*), any shape
        - Output: (*), same shape

    Gradients:
        ``backward(dy)`` returns ``dy * (x > 0)``: the gradient at exactly 0 is 0, as in torch.
    """

    kernel_names = ("relu_forward", "relu_backward")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self._ctx = self.kernels.relu_forward(x)
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.relu_backward(dy, self._ctx)


class Flatten(Module):
    """Flattens dimensions ``start_dim..end_dim`` into one, as ``torch.nn.Flatten``.

    It only reshapes, so every backend shares this one implementation.

    Args:
        start_dim: first dimension to flatten. Default: 1.
        end_dim: last dimension to flatten. Default: -1.

    Shape:
        - Input: (N, *dims)
        - Output: (N, prod(dims)) with the defaults
    """

    __constants__ = ("start_dim", "end_dim")

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def _dims(self, ndim: int) -> tuple[int, int]:
        return self.start_dim % ndim, self.end_dim % ndim

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        start, end = self._dims(len(input_shape))
        merged = int(np.prod(input_shape[start:end + 1], dtype=np.int64))
        return (*input_shape[:start], merged, *input_shape[end + 1:])

    def expected_input(self) -> str:
        return f"an input with dimensions {self.start_dim}..{self.end_dim}"

    def _input_ok(self, shape: tuple[int, ...]) -> bool:
        ndim = len(shape)
        return (-ndim <= self.start_dim < ndim and -ndim <= self.end_dim < ndim
                and self._dims(ndim)[0] <= self._dims(ndim)[1])

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._input_shape = x.shape
        return x.reshape(self.output_shape(x.shape))

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return dy.reshape(self._input_shape)


class GELU(Module):
    r"""Gaussian error linear unit, as ``torch.nn.GELU``.

    ``approximate='none'``: :math:`y = x\,\Phi(x) = \tfrac{x}{2}(1 + \mathrm{erf}(x/\sqrt{2}))`;
    ``approximate='tanh'``: :math:`y = \tfrac{x}{2}(1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))`.

    Args:
        approximate: ``'none'`` (default) or ``'tanh'``.

    Shape:
        - Input: (*), any shape
        - Output: (*), same shape

    Gradients:
        ``backward(dy)`` returns ``dy * (Phi(x) + x phi(x))``, or the tanh form's derivative.
    """

    kernel_names = ("gelu_forward", "gelu_backward")
    __constants__ = ("approximate",)

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self._ctx = self.kernels.gelu_forward(x, self.approximate)
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.gelu_backward(dy, self._ctx)
