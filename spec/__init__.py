"""PyNet layer specs: what each layer is (shapes, parameters, gradients), backend-free.

Use them through a backend, which binds the kernels that compute them::

    import backends
    nn = backends.get("numba")
    conv = nn.Conv2d(3, 16, 3, padding=1)
"""

from spec.activation import GELU, Flatten, ReLU
from spec.batchnorm import BatchNorm1d, BatchNorm2d
from spec.container import Sequential
from spec.conv import Conv2d
from spec.linear import Linear
from spec.loss import CrossEntropyLoss
from spec.module import Module
from spec.pooling import AdaptiveMaxPool2d, MaxPool2d

#: The layer specs every backend provides, by their torch.nn names.
LAYERS = (Conv2d, Linear, MaxPool2d, AdaptiveMaxPool2d, BatchNorm1d, BatchNorm2d, ReLU, GELU,
          Flatten, CrossEntropyLoss, Sequential)

__all__ = ["GELU", "LAYERS", "AdaptiveMaxPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d",
           "CrossEntropyLoss", "Flatten", "Linear", "MaxPool2d", "Module", "ReLU", "Sequential"]
