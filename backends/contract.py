"""The kernel contract: the functions a backend's kernel module defines, by name and parameters.

A backend is a module of plain functions, one forward and its backward per layer. A layer
spec calls them positionally with the arguments below; which of them it calls is its
``kernel_names`` (``spec.Conv2d.kernel_names == ("conv2d_forward", "conv2d_backward")``).
A backend may also define the functions of :class:`OptionalKernels`, shortcuts a layer takes
when they exist and does without otherwise (``optional_kernel_names``).
:func:`validate` checks a module against :class:`Kernels`, and ``pynet-check --template``
writes a module to fill in from the same definition.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import numpy as np


class ContractError(ValueError):
    """A kernel module whose functions do not follow :class:`Kernels`."""


class Kernels(Protocol):
    """The functions of a backend's kernel module.

    ``ctx`` is any object a forward returns for its own backward: the backend's choice (the
    input, a mask, a tuple of intermediates...). Kernels compute in the dtype of their input,
    float32 or float64, and never change it; they must not modify their arguments.
    """

    def conv2d_forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                       stride: tuple[int, int], padding: tuple[int, int],
                       dilation: tuple[int, int]) -> tuple[np.ndarray, Any]:
        """Conv2d: cross-correlation of x with weight, plus bias.

        x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out,) or None; stride,
        padding (zeros on both sides) and dilation are (h, w) pairs.
        Returns (y, ctx) with y (N, C_out, H_out, W_out),
        H_out = (H + 2 padding - dilation (kH - 1) - 1) // stride + 1 (W_out alike).
        """

    def conv2d_backward(self, dy: np.ndarray, ctx: Any) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray | None]:
        """Conv2d: gradients from dy (N, C_out, H_out, W_out) and conv2d_forward's ctx.

        Returns (dx, dweight, dbias): dx like x, dweight like weight, dbias (C_out,), or
        None when the forward had no bias.
        """

    def linear_forward(self, x: np.ndarray, weight: np.ndarray,
                       bias: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """Linear: y = x weight^T + bias.

        x (N, in_features), weight (out_features, in_features), bias (out_features,) or None.
        Returns (y, ctx) with y (N, out_features).
        """

    def linear_backward(self, dy: np.ndarray, ctx: Any) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray | None]:
        """Linear: gradients from dy (N, out_features) and linear_forward's ctx.

        Returns (dx, dweight, dbias): dx like x, dweight like weight, dbias
        (out_features,), or None when the forward had no bias.
        """

    def max_pool2d_forward(self, x: np.ndarray, kernel: tuple[int, int],
                           stride: tuple[int, int], padding: tuple[int, int],
                           dilation: tuple[int, int],
                           out_size: tuple[int, int]) -> tuple[np.ndarray, Any]:
        """MaxPool2d and AdaptiveMaxPool2d: the maximum of each window.

        x (N, C, H, W); kernel, stride, padding (-inf on both sides, so it never wins) and
        dilation are (h, w) pairs; out_size is (H_out, W_out), computed by the layer (with
        ceil_mode the last window may reach past the padding). NaN propagates.
        Returns (y, ctx) with y (N, C, H_out, W_out).
        """

    def max_pool2d_backward(self, dy: np.ndarray, ctx: Any) -> np.ndarray:
        """MaxPool2d and AdaptiveMaxPool2d: dx from dy (N, C, H_out, W_out) and ctx.

        Each window's gradient goes to its first maximum in row-major window order (ties
        are common after ReLU); overlapping windows add up. Returns dx (N, C, H, W).
        """

    def batch_norm_forward(self, x3: np.ndarray, weight: np.ndarray | None,
                           bias: np.ndarray | None, mean: np.ndarray | None,
                           var: np.ndarray | None,
                           eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """BatchNorm1d and BatchNorm2d: y = (x - mean) / sqrt(var + eps) * weight + bias.

        x3 (N, C, L), a view of the layer's input; weight and bias (C,) or None (then 1
        and 0). mean and var (C,) are None in training mode: the kernel uses the batch mean
        and the biased batch variance over N and L. In eval mode they are the running
        statistics. Returns (y3, mean, var, ctx): y3 (N, C, L) and the mean and variance
        it used.
        """

    def batch_norm_backward(self, dy3: np.ndarray, ctx: Any) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
        """BatchNorm1d and BatchNorm2d: gradients from dy3 (N, C, L) and ctx.

        In training mode the batch statistics depend on x too. Returns (dx3, dweight, dbias):
        dx3 (N, C, L), dweight and dbias (C,) (the layer ignores those it has no parameter
        for).
        """

    def relu_forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        """ReLU: y = max(x, 0) element-wise, any shape; NaN propagates. Returns (y, ctx)."""

    def relu_backward(self, dy: np.ndarray, ctx: Any) -> np.ndarray:
        """ReLU: dx = dy where x > 0, else 0 (0 at exactly 0, as in torch). Returns dx."""

    def gelu_forward(self, x: np.ndarray, approximate: str) -> tuple[np.ndarray, Any]:
        """GELU, element-wise, any shape. Returns (y, ctx).

        approximate 'none': y = x / 2 (1 + erf(x / sqrt 2));
        'tanh': y = x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
        """

    def gelu_backward(self, dy: np.ndarray, ctx: Any) -> np.ndarray:
        """GELU: dx = dy * dy/dx of gelu_forward's formula. Returns dx, shaped like dy."""

    def cross_entropy_forward(self, logits: np.ndarray, targets: np.ndarray,
                              label_smoothing: float) -> tuple[np.ndarray, Any]:
        """CrossEntropyLoss: each sample's loss, before the batch reduction.

        logits (N, C); targets (N,) int64 class indices. With log p the log-softmax of the
        logits (stable for logits of +-1e3) and e = label_smoothing, sample n's loss is
        -(1 - e) log p[n, targets[n]] - e / C sum_c log p[n, c].
        Returns (losses, ctx) with losses (N,).
        """

    def cross_entropy_backward(self, weights: np.ndarray, ctx: Any) -> np.ndarray:
        """CrossEntropyLoss: dlogits from weights (N,), each dL/dloss_n, and ctx.

        dlogits[n] = weights[n] * (softmax(logits[n]) - q[n]), q the smoothed one-hot
        target. Returns dlogits (N, C).
        """


class OptionalKernels(Protocol):
    """Functions a backend may add: each computes part of what a required kernel does, and a
    layer calls it when it exists and falls back to the required kernel when it does not."""

    def conv2d_backward_weight(self, dy: np.ndarray,
                               ctx: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Conv2d: only the parameter gradients, for ``backward(dy, input_grad=False)``
        (a network's first layer, whose input needs no gradient).

        Returns (dweight, dbias), equal to those of conv2d_backward(dy, ctx), without
        computing dx.
        """


def _function_names(protocol: type) -> tuple[str, ...]:
    return tuple(name for name, value in vars(protocol).items()
                 if inspect.isfunction(value) and not name.startswith("_"))


#: Every required kernel function of the contract, in the order of :class:`Kernels`.
KERNEL_NAMES: tuple[str, ...] = _function_names(Kernels)
#: The functions of :class:`OptionalKernels`.
OPTIONAL_KERNEL_NAMES: tuple[str, ...] = _function_names(OptionalKernels)


def parameters(name: str) -> tuple[str, ...]:
    """The parameter names of kernel ``name``, e.g. ``('dy', 'ctx')``."""
    protocol = Kernels if name in KERNEL_NAMES else OptionalKernels
    return tuple(inspect.signature(getattr(protocol, name)).parameters)[1:]  # after self


def _parameters_of(function: Any) -> tuple[str, ...] | None:
    try:
        return tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # a builtin or ufunc without an inspectable signature
        return None


def validate(module: Any, backend: str, complete: bool) -> tuple[str, ...]:
    """The contract's required functions that ``module`` lacks. Raise one
    :class:`ContractError` naming every function (optional ones included) whose parameters
    differ from the contract's and, when ``complete``, every missing required one."""
    missing = tuple(name for name in KERNEL_NAMES if not hasattr(module, name))
    problems = [f"{name}({', '.join(parameters(name))}) is missing"
                for name in missing if complete]
    for name in KERNEL_NAMES + OPTIONAL_KERNEL_NAMES:
        if not hasattr(module, name):
            continue
        function, expected = getattr(module, name), parameters(name)
        if not callable(function):
            problems.append(f"{name} is a {type(function).__name__}, expected a function "
                            f"{name}({', '.join(expected)})")
        elif _parameters_of(function) not in (None, expected):
            problems.append(f"{name} takes ({', '.join(_parameters_of(function))}), "
                            f"expected ({', '.join(expected)})")
    if problems:
        raise ContractError(f"backend {backend!r} ({module.__name__}) breaks the kernel "
                            f"contract of backends.contract.Kernels:\n  "
                            + "\n  ".join(problems))
    return missing
