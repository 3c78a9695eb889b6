"""CrossEntropyLoss: log-softmax plus negative log-likelihood, as ``torch.nn.CrossEntropyLoss``."""

from __future__ import annotations

from typing import Any

import numpy as np

from spec.module import Module, shape_str

REDUCTIONS = ("mean", "sum", "none")


class CrossEntropyLoss(Module):
    r"""Cross-entropy between logits and integer class targets.

    With :math:`\log p = z - \max z - \log\sum e^{z - \max z}` (stable for huge logits) and
    label smoothing :math:`\varepsilon`, each sample's loss is

    .. math:: \ell = -(1 - \varepsilon)\log p_t - \frac{\varepsilon}{C}\sum_c \log p_c .

    Args:
        label_smoothing: amount of smoothing in [0, 1]. Default: 0.0.
        reduction: ``'mean'`` over the batch (default), ``'sum'`` or ``'none'``.

    Shape:
        - Input: logits (N, C), float32 or float64
        - Target: (N,) integer class indices in [0, C)
        - Output: a scalar, or (N,) with ``reduction='none'``

    Gradients:
        ``backward()`` returns dL/dlogits, ``(softmax - q) * weight`` where ``q`` is the
        smoothed one-hot target and ``weight`` is 1/N, 1 or the given per-sample gradient.
    """

    kernel_names = ("cross_entropy_forward", "cross_entropy_backward")
    __constants__ = ("label_smoothing", "reduction")

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], "
                             f"got {label_smoothing!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"CrossEntropyLoss: reduction must be one of {REDUCTIONS}, "
                             f"got {reduction!r}")
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction

    def expected_input(self) -> str:
        return "logits (N, C)"

    def _input_ok(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 2 and shape[0] > 0 and shape[1] > 0

    def __call__(self, logits: np.ndarray, targets: Any) -> np.ndarray:  # type: ignore[override]
        self._check_input(logits)
        targets = self._check_targets(logits, targets)
        losses, self._ctx = self.kernels.cross_entropy_forward(
            logits, targets, self.label_smoothing)
        self._n, self._dtype = logits.shape[0], logits.dtype
        if self.reduction == "none":
            return losses
        total = losses.sum(dtype=logits.dtype)
        return total / logits.dtype.type(self._n) if self.reduction == "mean" else total

    def _check_targets(self, logits: np.ndarray, targets: Any) -> np.ndarray:
        targets = np.asarray(targets)
        n, classes = logits.shape
        if targets.dtype.kind not in "iu":
            raise TypeError(f"{self.describe()}: expected integer class targets, "
                            f"got dtype {targets.dtype}")
        if targets.shape != (n,):
            raise ValueError(f"{self.describe()}: expected targets of shape ({n},), "
                             f"got {shape_str(targets.shape)}")
        if n and (targets.min() < 0 or targets.max() >= classes):
            raise ValueError(f"{self.describe()}: targets must be in [0, {classes}), got values "
                             f"from {targets.min()} to {targets.max()}")
        return targets.astype(np.int64, copy=False)

    def backward(self, grad: np.ndarray | float | None = None) -> np.ndarray:
        """dL/dlogits; ``grad`` is dL/dloss (default 1), shape (N,) for ``reduction='none'``."""
        if self._ctx is None:
            raise RuntimeError(f"{self.describe()}: backward() called before the loss")
        dtype = self._dtype
        if self.reduction == "none":
            if grad is None:
                raise ValueError(f"{self.describe()}: reduction='none' needs a per-sample "
                                 f"gradient of shape ({self._n},)")
            weights = np.asarray(grad, dtype=dtype)
            if weights.shape != (self._n,):
                raise ValueError(f"{self.describe()}: expected a gradient of shape "
                                 f"({self._n},), got {shape_str(weights.shape)}")
        else:
            scale = 1.0 if grad is None else float(grad)
            if self.reduction == "mean":
                scale /= self._n
            weights = np.full(self._n, scale, dtype=dtype)
        return self.kernels.cross_entropy_backward(weights, self._ctx)
