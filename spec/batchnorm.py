"""BatchNorm1d and BatchNorm2d, as ``torch.nn.BatchNorm1d/2d``."""

from __future__ import annotations

import numpy as np

from spec.module import Module
from spec.shapes import float_dtype, positive_int


class _BatchNorm(Module):
    r"""Batch normalisation over the channel axis (axis 1).

    Training mode normalises with the batch mean and the *biased* batch variance,

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}}\,\gamma + \beta,

    and updates the running statistics with the *unbiased* variance:
    ``running = (1 - momentum) * running + momentum * batch`` (with ``momentum=None``,
    a cumulative average, ``momentum = 1 / num_batches_tracked``). Eval mode normalises
    with the running statistics.

    Args:
        num_features: number of channels C.
        eps: added to the variance for numerical stability. Default: 1e-5.
        momentum: weight of the new batch in the running statistics. Default: 0.1.
        affine: learnable ``weight`` (gamma) and ``bias`` (beta). Default: ``True``.
        track_running_stats: keep running statistics and use them in eval mode.
            Default: ``True``.
        bias: with ``affine``, also learn ``bias`` (keyword-only, as in torch). Default: ``True``.
        dtype: parameter dtype, float32 (default) or float64.

    Gradients:
        ``backward(dy)`` returns dL/dx (through the batch statistics in training mode)
        and accumulates ``grads['weight']`` and ``grads['bias']``, both of shape (C,).
    """

    kernel_names = ("batch_norm_forward", "batch_norm_backward")
    __constants__ = ("num_features", "eps", "momentum", "affine", "bias", "track_running_stats")
    _repr_positional = 1
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 dtype: object = None, *, bias: bool = True) -> None:
        super().__init__()
        self.num_features = positive_int(num_features, type(self).__name__, "num_features")
        if eps <= 0:
            raise ValueError(f"{self.describe()}: eps must be positive, got {eps!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{self.describe()}: momentum must be in [0, 1] or None, "
                             f"got {momentum!r}")
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = float_dtype(dtype, self.describe())
        self.register_parameter("weight", np.ones(num_features, dtype) if affine else None)
        self.register_parameter("bias",
                                np.zeros(num_features, dtype) if affine and bias else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def expected_input(self) -> str:
        return self._layout.replace("C", str(self.num_features))

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1)  # (N, C, L): one layout for the 1-D and 2-D variants
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats and n * x3.shape[2] < 2:
            raise ValueError(f"{self.describe()}: expected more than 1 value per channel "
                             f"when training, got input {x.shape}")
        if not use_batch_stats:
            mean, var = self.running_mean, self.running_var
            if mean.dtype != x.dtype:
                raise TypeError(f"{self.describe()}: input dtype {x.dtype} does not match "
                                f"running statistics dtype {mean.dtype}")
        else:
            mean = var = None
        y3, batch_mean, batch_var, self._ctx = self.kernels.batch_norm_forward(
            x3, self.weight, self.bias, mean, var, self.eps)
        if use_batch_stats and self.training and self.track_running_stats:
            self._update_running_stats(batch_mean, batch_var, n * x3.shape[2])
        return y3.reshape(x.shape)

    def _update_running_stats(self, mean: np.ndarray, biased_var: np.ndarray,
                              count: int) -> None:
        self.num_batches_tracked = np.asarray(self.num_batches_tracked + 1)
        momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                    else self.momentum)
        unbiased_var = biased_var * (count / (count - 1))
        self.running_mean = (1 - momentum) * self.running_mean + momentum * mean
        self.running_var = (1 - momentum) * self.running_var + momentum * unbiased_var

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        dx3, dweight, dbias = self.kernels.batch_norm_backward(
            dy.reshape(dy.shape[0], dy.shape[1], -1), self._ctx)
        if self.weight is not None:
            self._accumulate_grad("weight", dweight)
        if self.bias is not None:
            self._accumulate_grad("bias", dbias)
        return dx3.reshape(dy.shape)


class BatchNorm1d(_BatchNorm):
    __doc__ = (_BatchNorm.__doc__ or "") + """
    Shape:
        - Input: (N, C) or (N, C, L)
        - Output: same shape as the input
    """
    _layout = "(N, C) or (N, C, L)"

    def _input_ok(self, shape: tuple[int, ...]) -> bool:
        return len(shape) in (2, 3) and shape[1] == self.num_features


class BatchNorm2d(_BatchNorm):
    __doc__ = (_BatchNorm.__doc__ or "") + """
    Shape:
        - Input: (N, C, H, W)
        - Output: same shape as the input
    """
    _layout = "(N, C, H, W)"

    def _input_ok(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and shape[1] == self.num_features
