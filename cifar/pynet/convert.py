"""PyTorch <-> PyNet model conversion, layer by layer.

Every network in `cifar.models` is an `nn.Sequential` tree of standard layers, so a model
converts by walking the tree: each torch layer becomes the PyNet layer of the same name and
constructor arguments, and takes over its parameters and buffers unchanged (same names,
shapes and layouts). Children are numbered in the PyNet model ("groups.1.4.weight" becomes
"2.1.4.weight"); `Converted.torch_names` keeps the mapping.

AirNet multiplies its logits by `output_scale`, which is not a layer: training keeps it
beside the model, and `fold_output_scale` bakes it into the head for inference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from spec.module import Module


def _conv2d(pn: SimpleNamespace, m: nn.Conv2d) -> Module:
    if m.groups != 1 or m.padding_mode != "zeros":
        raise ValueError(f"{m}: PyNet converts Conv2d with groups=1 and zero padding only")
    return pn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                     m.dilation, bias=m.bias is not None)


def _batch_norm(cls_name: str) -> Callable[[SimpleNamespace, nn.Module], Module]:
    def convert(pn: SimpleNamespace, m: nn.Module) -> Module:
        return getattr(pn, cls_name)(m.num_features, m.eps, m.momentum, m.affine,
                                     m.track_running_stats, bias=m.bias is not None)
    return convert


def _max_pool2d(pn: SimpleNamespace, m: nn.MaxPool2d) -> Module:
    if m.ceil_mode or m.return_indices:
        raise ValueError(f"{m}: PyNet converts MaxPool2d without ceil_mode or return_indices")
    return pn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation)


LAYERS: dict[type[nn.Module], Callable[[SimpleNamespace, Any], Module]] = {
    nn.Conv2d: _conv2d,
    nn.Linear: lambda pn, m: pn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
    nn.BatchNorm1d: _batch_norm("BatchNorm1d"),
    nn.BatchNorm2d: _batch_norm("BatchNorm2d"),
    nn.MaxPool2d: _max_pool2d,
    nn.AdaptiveMaxPool2d: lambda pn, m: pn.AdaptiveMaxPool2d(m.output_size),
    nn.ReLU: lambda pn, m: pn.ReLU(),
    nn.GELU: lambda pn, m: pn.GELU(m.approximate),
    nn.Flatten: lambda pn, m: pn.Flatten(m.start_dim, m.end_dim),
}


@dataclass
class Converted:
    """A PyNet model, the scale its logits take, and the torch name of each parameter."""

    model: Module
    output_scale: float
    torch_names: dict[str, str]


def _pairs(model: nn.Module, pynet: Module, prefix: str = "", torch_prefix: str = ""
           ) -> list[tuple[str, str, nn.Module, Module]]:
    """(pynet prefix, torch prefix, torch layer, PyNet layer) for every leaf layer."""
    if not isinstance(model, nn.Sequential):
        return [(prefix, torch_prefix, model, pynet)]
    return [pair for index, (name, child) in enumerate(model.named_children())
            for pair in _pairs(child, pynet[index], f"{prefix}{index}.",
                               f"{torch_prefix}{name}.")]


def _layer(pn: SimpleNamespace, model: nn.Module) -> Module:
    if isinstance(model, nn.Sequential):
        return pn.Sequential(*(_layer(pn, child) for child in model.children()))
    convert = LAYERS.get(type(model))
    if convert is None:
        raise ValueError(f"{type(model).__name__}: no PyNet equivalent (PyNet converts "
                         f"{', '.join(sorted(t.__name__ for t in LAYERS))} and Sequential)")
    return convert(pn, model)


def to_pynet(model: nn.Module, pn: SimpleNamespace) -> Converted:
    """The PyNet twin of torch `model` (built with backend namespace `pn`), same weights."""
    pynet = _layer(pn, model)
    names = {prefix + key: torch_prefix + key
             for prefix, torch_prefix, _, twin in _pairs(model, pynet)
             for key in twin.state_dict()}
    converted = Converted(pynet, float(getattr(model, "output_scale", 1.0)), names)
    load_torch_state(converted, model.state_dict())
    pynet.train(model.training)
    return converted


def load_torch_state(converted: Converted, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict of the torch model into its PyNet twin (floats as float32)."""
    converted.model.load_state_dict({
        name: state[torch_name].detach().cpu().float().numpy()
        if state[torch_name].is_floating_point() else state[torch_name].cpu().numpy()
        for name, torch_name in converted.torch_names.items()})


def to_torch_state(converted: Converted) -> dict[str, torch.Tensor]:
    """The PyNet model's state as the torch model's state dict (CPU tensors)."""
    state = converted.model.state_dict()
    return {converted.torch_names[k]: torch.from_numpy(np.array(v)) for k, v in state.items()}


def fold_output_scale(converted: Converted) -> Module:
    """The model with the logit scale multiplied into its last Linear layer (in place)."""
    head = converted.model[-1]
    if type(head).__name__ != "Linear":
        raise ValueError(f"fold_output_scale: expected a Linear last layer, got {head.describe()}")
    scale = head.weight.dtype.type(converted.output_scale)
    head.weight = head.weight * scale
    if head.bias is not None:
        head.bias = head.bias * scale
    converted.output_scale = 1.0
    return converted.model


def inference_model(model: nn.Module, pn: SimpleNamespace) -> Module:
    """The PyNet model to deploy for torch `model`: eval mode, logit scale folded in."""
    return fold_output_scale(to_pynet(model.eval(), pn))
