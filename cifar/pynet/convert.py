"""PyTorch <-> PyNet model conversion, layer by layer.

Any `torch.nn.Sequential` tree of standard layers converts by walking the tree: each torch
layer becomes the PyNet layer of the same class name and constructor arguments, and takes
over its parameters and buffers unchanged (same names, shapes and layouts; named children
keep their names, so the state dicts have the same keys).

AirNet multiplies its logits by `output_scale`, which is not a layer: training keeps it
beside the model, and `fold_output_scale` bakes it into the head for inference.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from cifar import max_pool
from spec.module import Module


def _conv2d(nn: SimpleNamespace, m: torch.nn.Conv2d) -> Module:
    if m.groups != 1 or m.padding_mode != "zeros":
        raise ValueError(f"{m}: PyNet converts Conv2d with groups=1 and zero padding only")
    return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                     m.dilation, bias=m.bias is not None)


def _batch_norm(cls_name: str) -> Callable[[SimpleNamespace, torch.nn.Module], Module]:
    def convert(nn: SimpleNamespace, m: torch.nn.Module) -> Module:
        return getattr(nn, cls_name)(m.num_features, m.eps, m.momentum, m.affine,
                                     m.track_running_stats, bias=m.bias is not None)
    return convert


def _max_pool2d(nn: SimpleNamespace, m: torch.nn.MaxPool2d) -> Module:
    if m.ceil_mode or m.return_indices:
        raise ValueError(f"{m}: PyNet converts MaxPool2d without ceil_mode or return_indices")
    return nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation)


LAYERS: dict[type[torch.nn.Module], Callable[[SimpleNamespace, Any], Module]] = {
    torch.nn.Conv2d: _conv2d,
    torch.nn.Linear: lambda nn, m: nn.Linear(m.in_features, m.out_features,
                                             bias=m.bias is not None),
    torch.nn.BatchNorm1d: _batch_norm("BatchNorm1d"),
    torch.nn.BatchNorm2d: _batch_norm("BatchNorm2d"),
    torch.nn.MaxPool2d: _max_pool2d,
    max_pool.MaxPool2d: _max_pool2d,  # the same layer with a faster bfloat16 path
    torch.nn.AdaptiveMaxPool2d: lambda nn, m: nn.AdaptiveMaxPool2d(m.output_size),
    torch.nn.ReLU: lambda nn, m: nn.ReLU(),
    torch.nn.GELU: lambda nn, m: nn.GELU(m.approximate),
    torch.nn.Flatten: lambda nn, m: nn.Flatten(m.start_dim, m.end_dim),
}


def _layer(nn: SimpleNamespace, model: torch.nn.Module) -> Module:
    if isinstance(model, torch.nn.Sequential):
        return nn.Sequential(OrderedDict((name, _layer(nn, child))
                                         for name, child in model.named_children()))
    convert = LAYERS.get(type(model))
    if convert is None:
        raise ValueError(f"{type(model).__name__}: no PyNet equivalent (PyNet converts "
                         f"{', '.join(sorted({t.__name__ for t in LAYERS}))} and Sequential)")
    return convert(nn, model)


def to_pynet(model: torch.nn.Module, nn: SimpleNamespace) -> Module:
    """The PyNet twin of torch `model` (built with backend namespace `nn`): same layers,
    state-dict names and weights (floats as float32), same train/eval mode."""
    pynet = _layer(nn, model)
    load_torch_state(pynet, model.state_dict())
    return pynet.train(model.training)


def load_torch_state(model: Module, state: dict[str, torch.Tensor]) -> None:
    """Load a torch state dict into a PyNet model of the same names (floats as float32)."""
    model.load_state_dict({
        name: value.detach().cpu().float().numpy() if value.is_floating_point()
        else value.cpu().numpy() for name, value in state.items()})


def to_torch_state(model: Module) -> dict[str, torch.Tensor]:
    """The PyNet model's state dict as CPU tensors, under the same names."""
    return {name: torch.from_numpy(np.array(value)) for name, value in model.state_dict().items()}


def fold_output_scale(model: Module, output_scale: float) -> Module:
    """`model` with the logit scale multiplied into its last Linear layer (in place)."""
    head = model[-1]
    if type(head).__name__ != "Linear":
        raise ValueError(f"fold_output_scale: expected a Linear last layer, got {head.describe()}")
    scale = head.weight.dtype.type(output_scale)
    head.weight = head.weight * scale
    if head.bias is not None:
        head.bias = head.bias * scale
    return model


def inference_model(model: torch.nn.Module, nn: SimpleNamespace) -> Module:
    """The PyNet model to deploy for torch `model`: eval mode, logit scale folded in."""
    return fold_output_scale(to_pynet(model.eval(), nn), getattr(model, "output_scale", 1.0))
