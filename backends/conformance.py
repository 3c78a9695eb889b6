"""Conformance cases: every spec, on every backend, against its PyTorch counterpart.

A :class:`Case` names a layer, its constructor arguments (PyTorch's, which PyNet shares) and
an input. :func:`compare_with_torch` builds the layer in torch and in a PyNet backend with
the same parameters, runs forward and backward on the same input and upstream gradient,
and returns the worst relative error ``max|a - b| / max|b|`` of each quantity (``dx``,
``dweight``, ``running_var``...). :func:`finite_difference` checks the backward pass against
central differences, without torch. ``pynet-check`` and the test suite both run these cases,
on any backend that ``backends.get`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch

import backends
from backends.conv_dispatch import METHODS, computes, conv_algorithm, get_conv_algorithm
from backends.geometry import window_geometry

TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
FD_TOLERANCE = 1e-6  # central differences in float64 with h = 1e-6 are good to ~1e-8

Layer = tuple[str, tuple, dict]
Backend = str | ModuleType  # what backends.get takes: a name, a .py file or a module


@dataclass(frozen=True)
class Case:
    """One configuration of one layer. ``inputs`` is 'normal', 'ties' (ReLU'd and rounded,
    so pooling windows hold equal maxima) or 'huge' (logits of +-1e3). ``steps`` training
    steps run before a BatchNorm's eval-mode check."""

    id: str
    layer: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    input_shape: tuple = ()
    inputs: str = "normal"
    steps: int = 1
    children: tuple[Layer, ...] = ()


SMALL_CNN: tuple[Layer, ...] = (
    # no conv bias before BatchNorm: its true gradient is 0, so only round-off would compare
    ("Conv2d", (3, 4, 3), {"padding": 1, "bias": False}), ("BatchNorm2d", (4,), {}),
    ("ReLU", (), {}), ("MaxPool2d", (2,), {}), ("Flatten", (), {}),
    ("Linear", (4 * 3 * 3, 5), {}))

CASES: tuple[Case, ...] = (
    Case("conv-3x3-pad1", "Conv2d", (3, 4, 3), {"padding": 1}, (2, 3, 6, 6)),
    Case("conv-stride2", "Conv2d", (2, 3, 3), {"stride": 2, "padding": 1}, (2, 2, 7, 7)),
    Case("conv-dilation2", "Conv2d", (2, 3, 3), {"dilation": 2, "padding": 2}, (1, 2, 7, 6)),
    Case("conv-nonsquare", "Conv2d", (3, 2, (3, 2)), {"stride": (2, 1), "padding": (1, 0)},
         (2, 3, 5, 6)),
    Case("conv-1x1-nobias", "Conv2d", (4, 3, 1), {"bias": False}, (2, 4, 3, 5)),
    Case("conv-batch1-odd", "Conv2d", (1, 2, 5), {"stride": 3, "padding": 2}, (1, 1, 9, 7)),
    Case("conv-3x3-pad0-odd", "Conv2d", (3, 5, 3), {}, (2, 3, 9, 7)),
    Case("conv-3x3-pad2-nobias-batch1", "Conv2d", (4, 3, 3), {"padding": 2, "bias": False},
         (1, 4, 5, 6)),
    Case("conv-3x3-pad1-odd-wide", "Conv2d", (8, 16, 3), {"padding": 1}, (3, 8, 9, 11)),
    Case("conv-16-channels-stride2", "Conv2d", (16, 4, 3), {"stride": 2, "padding": 1},
         (2, 16, 7, 6)),  # numpy's col2im adds in NHWC from 16 input channels
    Case("linear", "Linear", (6, 4), {}, (3, 6)),
    Case("linear-nobias-batch1", "Linear", (5, 3), {"bias": False}, (1, 5)),
    Case("pool-2x2", "MaxPool2d", (2,), {}, (2, 3, 6, 6)),
    Case("pool-ties", "MaxPool2d", (2,), {}, (2, 3, 6, 6), inputs="ties"),
    Case("pool-overlap-padded-ties", "MaxPool2d", (3,), {"stride": 2, "padding": 1},
         (2, 2, 7, 7), inputs="ties"),
    Case("pool-nonsquare-ceil", "MaxPool2d", ((3, 2),), {"stride": (2, 1), "ceil_mode": True},
         (1, 2, 6, 5)),
    Case("adaptive-global-ties", "AdaptiveMaxPool2d", (1,), {}, (2, 3, 4, 4), inputs="ties"),
    Case("adaptive-2x3", "AdaptiveMaxPool2d", ((2, 3),), {}, (2, 2, 4, 6)),
    Case("bn2d-3steps", "BatchNorm2d", (3,), {}, (4, 3, 3, 3), steps=3),
    Case("bn2d-cumulative-noaffine", "BatchNorm2d", (2,),
         {"momentum": None, "affine": False}, (3, 2, 2, 3), steps=2),
    Case("bn2d-weight-only", "BatchNorm2d", (3,), {"bias": False}, (2, 3, 3, 2), steps=2),
    Case("bn1d-3steps", "BatchNorm1d", (5,), {"momentum": 0.3}, (6, 5), steps=3),
    Case("bn1d-ncl", "BatchNorm1d", (3,), {}, (2, 3, 4), steps=2),
    Case("relu", "ReLU", (), {}, (3, 4, 5)),
    Case("relu-zeros", "ReLU", (), {}, (4, 6), inputs="ties"),
    Case("gelu", "GELU", (), {}, (3, 4, 5)),
    Case("gelu-tanh", "GELU", (), {"approximate": "tanh"}, (2, 7)),
    Case("flatten", "Flatten", (), {}, (2, 3, 2, 2)),
    Case("cross-entropy", "CrossEntropyLoss", (), {}, (5, 4)),
    Case("cross-entropy-smoothing", "CrossEntropyLoss", (), {"label_smoothing": 0.1}, (6, 3)),
    Case("cross-entropy-huge-logits", "CrossEntropyLoss", (), {"label_smoothing": 0.2}, (4, 5),
         inputs="huge"),
    Case("small-cnn", "Sequential", input_shape=(2, 3, 6, 6), children=SMALL_CNN),
)


def _pair(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple) else (value, value)


def conv_algorithms(case: Case, backend: Backend) -> tuple[str | None, ...]:
    """The convolution algorithms a case runs under on ``backend``: each of its
    ``CONV_ALGORITHMS`` (numpy, numba) that computes the case, or (None,), the default."""
    names = getattr(backends.get(backend).kernels, "CONV_ALGORITHMS", ())
    if case.layer != "Conv2d" or not names:
        return (None,)
    kernel, stride, padding, dilation = (_pair(case.kwargs.get(key, default)) for key, default in (
        ("kernel_size", case.args[2]), ("stride", 1), ("padding", 0), ("dilation", 1)))
    g = window_geometry(case.input_shape, kernel, stride, padding, dilation)
    return tuple(name for name in names if name not in METHODS or computes(name, g))


def relative_error(actual: Any, expected: Any, quantity: str = "values") -> float:
    """``max|a - b| / max|b|`` (the absolute error where ``b`` is all zeros)."""
    a, b = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{quantity} has shape {a.shape}, expected {b.shape}")
    if a.size == 0:
        return 0.0
    scale = np.abs(b).max()
    return float(np.abs(a - b).max() / (scale if scale > 0 else 1.0))


def column_of(quantity: str) -> str:
    """The pynet-check column of a quantity measured here: 'forward', 'dx', 'eval forward'
    and 'eval dx', 'fd ...', 'd' + a parameter's name (params) or a buffer's name (running)."""
    first = quantity.split()[0]
    if first in ("forward", "dx", "eval", "fd"):
        return first
    return "params" if quantity.startswith("d") else "running"


def tolerance(quantity: str, dtype: str) -> float:
    """The largest relative error of ``quantity`` that passes in ``dtype``."""
    return FD_TOLERANCE if column_of(quantity) == "fd" else TOLERANCE[dtype]


def too_large(errors: dict[str, float], dtype: str) -> dict[str, float]:
    """The errors above their tolerance (NaN included), by quantity."""
    return {quantity: error for quantity, error in errors.items()
            if not error <= tolerance(quantity, dtype)}


def _keep_worst(errors: dict[str, float], quantity: str, actual: Any, expected: Any) -> None:
    """Record the relative error of ``quantity``, the worst over training steps (NaN wins)."""
    error = relative_error(actual, expected, quantity)
    errors[quantity] = float(np.max([errors.get(quantity, 0.0), error]))


def make_input(case: Case, dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal(case.input_shape)
    if case.inputs == "ties":
        x = np.maximum(np.round(x * 2), 0)  # many exact zeros and repeated integers
    elif case.inputs == "huge":
        x = x * 1e3
    elif case.layer.startswith("BatchNorm"):
        x = 3 * x + 1  # a mean and variance far from the normalised ones
    return x.astype(dtype)


def build_torch(name: str, args: tuple, kwargs: dict,
                children: tuple[Layer, ...] = ()) -> torch.nn.Module:
    if name == "Sequential":
        return torch.nn.Sequential(*(build_torch(*child) for child in children))
    return getattr(torch.nn, name)(*args, **kwargs)


def build_pair(case: Case, backend: Backend, dtype: np.dtype, seed: int = 0):
    """The torch layer (with non-trivial parameters) and the PyNet layer loaded from it."""
    torch.manual_seed(seed)
    reference = build_torch(case.layer, case.args, case.kwargs, case.children)
    reference = reference.to(torch.float64 if dtype == np.float64 else torch.float32)
    for name, param in reference.named_parameters():
        if name.endswith("weight") and param.dim() == 1:  # BatchNorm gamma, otherwise all 1
            torch.nn.init.uniform_(param, 0.5, 1.5)
        elif name.endswith("bias") and param.dim() == 1:
            torch.nn.init.uniform_(param, -0.5, 0.5)
    nn = backends.get(backend)
    layer = build_pynet(nn, case.layer, case.args, case.kwargs, case.children)
    layer.load_state_dict(reference.state_dict())
    return reference, layer


def build_pynet(nn: Any, name: str, args: tuple, kwargs: dict,
                children: tuple[Layer, ...] = ()):
    if name == "Sequential":
        return nn.Sequential(*(build_pynet(nn, *child) for child in children))
    return getattr(nn, name)(*args, **kwargs)


def _targets(case: Case, rng: np.random.Generator, batch: int) -> np.ndarray:
    classes = 5 if case.layer == "Sequential" else case.input_shape[-1]
    return rng.integers(0, classes, size=batch)


def _step(reference, layer, nn: Any, case: Case, x: np.ndarray, rng: np.random.Generator,
          errors: dict[str, float], prefix: str) -> None:
    """One forward and backward through both; record the worst errors of ``prefix`` +
    'forward' and 'dx'."""
    tx = torch.tensor(x, requires_grad=True)
    if case.layer in ("CrossEntropyLoss", "Sequential"):
        targets = _targets(case, rng, x.shape[0])
        criterion = (reference if case.layer == "CrossEntropyLoss"
                     else torch.nn.CrossEntropyLoss())
        tout = reference(tx) if case.layer == "Sequential" else tx
        tloss = criterion(tout, torch.tensor(targets))
        tloss.backward()
        crit = layer if case.layer == "CrossEntropyLoss" else nn.CrossEntropyLoss()
        out = layer(x) if case.layer == "Sequential" else x
        loss = crit(out, targets)
        dx = crit.backward()
        if case.layer == "Sequential":
            dx = layer.backward(dx)
        _keep_worst(errors, prefix + "forward", loss, tloss.detach().numpy())
    else:
        ty = reference(tx)
        dy = rng.standard_normal(ty.shape).astype(x.dtype)
        ty.backward(torch.tensor(dy))
        y = layer(x)
        _keep_worst(errors, prefix + "forward", y, ty.detach().numpy())
        dx = layer.backward(dy)
        weight_only = getattr(layer.kernels, "conv2d_backward_weight", None)
        if case.layer == "Conv2d" and weight_only is not None:
            _check_backward_weight(weight_only(dy, layer._ctx), reference, errors)
        if y.dtype != x.dtype or dx.dtype != x.dtype:
            raise TypeError(f"{case.id}: dtype changed: input {x.dtype}, output {y.dtype}, "
                            f"dx {dx.dtype}")
    _keep_worst(errors, prefix + "dx", dx, tx.grad.numpy())


def _check_backward_weight(grads: tuple, reference: torch.nn.Module,
                           errors: dict[str, float]) -> None:
    """Record the errors of conv2d_backward_weight's (dweight, dbias) against torch's."""
    dweight, dbias = grads
    _keep_worst(errors, "dweight by conv2d_backward_weight", dweight,
                reference.weight.grad.numpy())
    if reference.bias is not None:
        _keep_worst(errors, "dbias by conv2d_backward_weight", dbias,
                    reference.bias.grad.numpy())
    elif dbias is not None:
        raise TypeError("conv2d_backward_weight returned a dbias for a layer without bias")


def compare_with_torch(case: Case, backend: Backend, dtype: str, seed: int = 0,
                       algorithm: str | None = None) -> dict[str, float]:
    """Worst relative errors of one case against torch, by quantity: 'forward', 'dx', each
    parameter gradient ('dweight', 'dbias'; 'd0.weight' in a Sequential) and, for BatchNorm,
    each running statistic ('running_mean', ...), 'eval forward' and 'eval dx'. A Conv2d
    runs under convolution ``algorithm`` (default: the current setting) and, where the
    backend defines conv2d_backward_weight, adds 'dweight by conv2d_backward_weight' (and
    dbias)."""
    with conv_algorithm(algorithm or get_conv_algorithm()):
        return _compare_with_torch(case, backend, dtype, seed)


def _compare_with_torch(case: Case, backend: Backend, dtype: str, seed: int) -> dict[str, float]:
    np_dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    reference, layer = build_pair(case, backend, np_dtype, seed)
    nn = backends.get(backend)
    errors: dict[str, float] = {}
    for _ in range(case.steps):
        _step(reference, layer, nn, case, make_input(case, np_dtype, rng), rng, errors, "")
    torch_grads = {name: p.grad.numpy() for name, p in reference.named_parameters()}
    if set(torch_grads) != set(layer.grads):
        raise KeyError(f"{case.id}: gradients {sorted(layer.grads)} != torch's "
                       f"{sorted(torch_grads)}")
    for name, grad in torch_grads.items():
        _keep_worst(errors, f"d{name}", layer.grads[name], grad)
    buffers = dict(reference.named_buffers())
    if buffers:
        for name, value in layer.named_buffers():
            _keep_worst(errors, name, value, buffers[name].numpy())
        reference.eval()
        layer.eval()
        _step(reference, layer, nn, case, make_input(case, np_dtype, rng), rng, errors, "eval ")
    return errors


def differentiable(case: Case) -> bool:
    """Whether finite differences apply: tied maxima and ReLU at 0 have no derivative."""
    return case.inputs != "ties"


def finite_difference(case: Case, backend: Backend, seed: int = 0, h: float = 1e-6,
                      probes: int = 6, algorithm: str | None = None) -> dict[str, float]:
    """Relative errors of the analytic gradients against central differences of
    ``L = sum(layer(x) * R)``, in float64, at ``probes`` random coordinates per tensor, by
    quantity: 'fd dx' and 'fd d' + each parameter's name, under convolution ``algorithm``
    (default: the current setting). Uses no torch."""
    with conv_algorithm(algorithm or get_conv_algorithm()):
        return _finite_difference(case, backend, seed, h, probes)


def _finite_difference(case: Case, backend: Backend, seed: int, h: float,
                       probes: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    nn = backends.get(backend)
    layer = build_pynet(nn, case.layer, case.args, case.kwargs, case.children).double()
    x = make_input(case, np.dtype(np.float64), rng)
    if case.layer in ("CrossEntropyLoss", "Sequential"):
        targets = _targets(case, rng, x.shape[0])
        crit = layer if case.layer == "CrossEntropyLoss" else nn.CrossEntropyLoss()
        net = (lambda v: v) if case.layer == "CrossEntropyLoss" else layer

        def loss() -> float:
            return float(crit(net(x), targets))

        loss()
        upstream = crit.backward()
        dx = upstream if case.layer == "CrossEntropyLoss" else layer.backward(upstream)
    else:
        projection = rng.standard_normal(layer.output_shape(x.shape))

        def loss() -> float:
            return float((layer(x) * projection).sum())

        loss()
        dx = layer.backward(projection)
    tensors = {"fd dx": (x, dx)} | {f"fd d{name}": (value, layer.grads[name])
                                    for name, value in layer.named_parameters()}
    errors = {}
    for quantity, (tensor, analytic) in tensors.items():
        flat, grad = tensor.reshape(-1), analytic.reshape(-1)
        picks = rng.choice(flat.size, size=min(probes, flat.size), replace=False)
        numeric = np.empty(len(picks))
        for k, index in enumerate(picks):
            saved = flat[index]
            flat[index] = saved + h
            up = loss()
            flat[index] = saved - h
            down = loss()
            flat[index] = saved
            numeric[k] = (up - down) / (2 * h)
        errors[quantity] = relative_error(grad[picks], numeric, quantity)
    return errors
