"""The layer table and FLOP count of a network, measured with forward hooks on one image.

FLOPs follow the usual convention: a multiply-add is 2 FLOPs, and only convolutions and
linear layers are counted (batch norm, activations, pooling and bias adds are left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cifar.models import build_model

FLOP_CONVENTION = ("forward pass of one 3×32×32 image; 2 FLOPs per multiply-add, counting "
                   "convolutions and linear layers only (batch norm, activations, pooling "
                   "and bias adds are left out)")


@dataclass
class Layer:
    """One leaf module as seen in a forward pass."""

    name: str
    kind: str
    detail: str
    output_shape: tuple[int, ...]
    params: int
    frozen: int
    flops: int


@dataclass
class Architecture:
    """The leaf layers of a network in call order, with totals."""

    arch: str
    model_config: dict[str, Any]
    layers: list[Layer]
    params: int
    trainable: int
    flops: int


def _detail(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        k = "×".join(map(str, module.kernel_size))
        extra = f", pad {module.padding[0]}" if any(module.padding) else ""
        bias = "" if module.bias is not None else ", no bias"
        frozen = "" if module.weight.requires_grad else ", weight frozen"
        return f"{module.in_channels}→{module.out_channels}, {k}{extra}{bias}{frozen}"
    if isinstance(module, nn.Linear):
        bias = "" if module.bias is not None else ", no bias"
        return f"{module.in_features}→{module.out_features}{bias}"
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        frozen = "" if module.weight is None or module.weight.requires_grad else ", scale frozen"
        return f"{module.num_features}{frozen}"
    if isinstance(module, nn.MaxPool2d):
        return f"{module.kernel_size}×{module.kernel_size}"
    return ""


def _flops(module: nn.Module, output: torch.Tensor) -> int:
    """2 × multiply-adds of a conv or linear layer for this call's output; 0 otherwise."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return 2 * output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return 2 * output.numel() * module.in_features
    return 0


@torch.no_grad()
def describe_model(model: nn.Module, model_config: dict[str, Any] | None = None
                   ) -> Architecture:
    """Run one 1×3×32×32 image through `model` (in eval mode) and record every leaf layer."""
    layers: list[Layer] = []
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        own = list(module.parameters(recurse=False))
        layers.append(Layer(
            name=names[module], kind=type(module).__name__, detail=_detail(module),
            output_shape=tuple(output.shape[1:]), params=sum(p.numel() for p in own),
            frozen=sum(p.numel() for p in own if not p.requires_grad),
            flops=_flops(module, output)))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, 32, 32, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = dict(model_config or {})
    return Architecture(arch=str(config.get("arch", type(model).__name__)), model_config=config,
                        layers=layers, params=params, trainable=trainable,
                        flops=sum(layer.flops for layer in layers))


def describe_config(model_config: dict[str, Any]) -> Architecture:
    """Build the network that a run's `config["model"]` describes and describe it."""
    return describe_model(build_model(model_config), model_config)


def format_flops(flops: float) -> str:
    """Human-readable FLOPs: 1.23 GFLOP, 45.6 MFLOP or 789 kFLOP."""
    for unit, scale in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if flops >= scale:
            value = flops / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{flops:.0f} FLOP"
