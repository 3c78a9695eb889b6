"""PyNet backends: how each layer spec is computed.

``backends.get(name)`` returns a namespace of the layer classes of :mod:`spec`, bound to one
backend's kernel module::

    import backends
    nn = backends.get("numba")             # "naive" | "numpy" | "numba"
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))

Every kernel module has the same shape, one forward and its backward side by side per layer;
``ctx`` is whatever the forward keeps for its backward::

    conv2d_forward(x, weight, bias, stride, padding, dilation)    -> (y, ctx)
    conv2d_backward(dy, ctx)                                      -> (dx, dweight, dbias)
    linear_forward(x, weight, bias)                               -> (y, ctx)
    linear_backward(dy, ctx)                                      -> (dx, dweight, dbias)
    max_pool2d_forward(x, kernel, stride, padding, dilation, out_size) -> (y, ctx)
    max_pool2d_backward(dy, ctx)                                  -> dx
    batch_norm_forward(x3, weight, bias, mean, var, eps)          -> (y3, mean, var, ctx)
    batch_norm_backward(dy3, ctx)                                 -> (dx3, dweight, dbias)
    relu_forward(x)                                               -> (y, ctx)
    relu_backward(dy, ctx)                                        -> dx
    gelu_forward(x, approximate)                                  -> (y, ctx)
    gelu_backward(dy, ctx)                                        -> dx
    cross_entropy_forward(logits, targets, label_smoothing)       -> (per-sample losses, ctx)
    cross_entropy_backward(weights, ctx)                          -> dlogits

BatchNorm works on (N, C, L) views; ``mean`` and ``var`` are None in training mode, where
the kernel computes (and returns) the batch mean and the biased batch variance, and the
running statistics in eval mode. ``weights`` are the per-sample factors dL/dloss_n.

Kernels compute in the dtype of their input (float32 or float64) and never change it.
"""

from __future__ import annotations

import importlib
from functools import cache, partial
from types import ModuleType, SimpleNamespace

import spec
from backends.threads import get_num_threads, set_num_threads
from spec import serialization

BACKENDS = ("naive", "numpy", "numba")
__all__ = ["BACKENDS", "get", "get_num_threads", "set_num_threads"]


@cache
def get(name: str) -> SimpleNamespace:
    """The layer classes of :mod:`spec`, computed by backend ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends are {', '.join(BACKENDS)}")
    kernels = importlib.import_module(f"backends.{name}")
    layers = {cls.__name__: _bind(cls, kernels, name) for cls in spec.LAYERS}
    namespace = SimpleNamespace(name=name, kernels=kernels, **layers)
    namespace.load = partial(serialization.load, namespace)  # nn.load("model.npz")
    return namespace


def _bind(layer: type, kernels: ModuleType, name: str) -> type:
    return type(layer.__name__, (layer,), {
        "kernels": kernels, "__module__": f"backends.{name}", "__doc__": layer.__doc__,
        "__qualname__": layer.__name__})
