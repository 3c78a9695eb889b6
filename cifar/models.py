"""Network architectures, built from a plain model-config dict so checkpoints can rebuild them.

Each architecture is written once, against a namespace of layers with torch's names: `torch.nn`
for the torch engine, or a PyNet backend (`backends.get("numba")`) for the PyNet engine. Both
get the same layer tree, parameter names and initialisation rules.

`airnet` follows the airbench family: a frozen 2x2 whitening convolution initialised from the
patch covariance of the training images, then conv-pool-BN-GELU groups whose BN layers have a
fixed unit scale, a global max-pool and a scaled linear head. `course` is the typical course
solution: three conv-BN-ReLU-pool layers and a hidden fully connected layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cifar.errors import CheckpointError
from cifar.max_pool import with_fast_max_pool

ACTIVATIONS = {"gelu": "GELU", "relu": "ReLU"}


def _norm_act(nn: Any, channels: int, bn_momentum: float, activation: str,
              batch_norm: bool) -> list:
    norm = [nn.BatchNorm2d(channels, momentum=bn_momentum, eps=1e-12)] if batch_norm else []
    return [*norm, getattr(nn, ACTIVATIONS[activation])()]


def _conv3x3(nn: Any, in_channels: int, out_channels: int) -> Any:
    """Bias-free 3x3 convolution whose first `in_channels` filters start as identities
    (airbench's partial Dirac initialisation, `torch.nn.init.dirac_` on those filters)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    weight = conv.weight.detach() if hasattr(conv.weight, "detach") else conv.weight
    weight[:in_channels] = 0
    for channel in range(min(in_channels, out_channels)):
        weight[channel, channel, 1, 1] = 1
    return conv


def airnet(nn: Any, widths: list[int], whiten_kernel: int = 2, bn_momentum: float = 0.4,
           output_scale: float = 1 / 9, activation: str = "gelu", num_classes: int = 10,
           batch_norm: bool = True, convs_per_group: int = 2) -> Any:
    """Whitening stem, one conv3x3-maxpool2-BN-act group per entry of `widths`, each followed
    by `convs_per_group - 1` more conv3x3-BN-act layers (airbench94 has 2 per group, airbench96
    3), global max-pool, bias-free linear head. The logits are multiplied by `output_scale`
    outside the layer tree (`output_scale`)."""
    if type(convs_per_group) is not int or convs_per_group < 1:
        raise CheckpointError(f"model config: expected convs_per_group a whole number >= 1, "
                              f"got {convs_per_group!r}")
    whiten_width = 2 * 3 * whiten_kernel**2
    whiten = nn.Conv2d(3, whiten_width, whiten_kernel, padding=0, bias=True)
    stem_activation = getattr(nn, ACTIVATIONS[activation])()
    channels = [whiten_width, *widths]
    groups = []
    for c_in, c_out in zip(channels, widths, strict=False):
        layers = [_conv3x3(nn, c_in, c_out), nn.MaxPool2d(2),
                  *_norm_act(nn, c_out, bn_momentum, activation, batch_norm)]
        for _ in range(convs_per_group - 1):
            layers += [_conv3x3(nn, c_out, c_out),
                       *_norm_act(nn, c_out, bn_momentum, activation, batch_norm)]
        groups.append(nn.Sequential(*layers))
    return nn.Sequential(OrderedDict(
        whiten=whiten,
        stem_activation=stem_activation,
        groups=nn.Sequential(*groups),
        pool=nn.AdaptiveMaxPool2d(1),
        flatten=nn.Flatten(),
        head=nn.Linear(widths[-1], num_classes, bias=False),
    ))


def course(nn: Any, widths: list[int], hidden: int = 256, num_classes: int = 10,
           batch_norm: bool = True) -> Any:
    """Course baseline: (conv3x3-BN-ReLU-maxpool) x 3, FC hidden layer with ReLU, FC output."""
    layers: list = []
    for c_in, c_out in zip([3, *widths], widths, strict=False):
        norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), *norm, nn.ReLU(), nn.MaxPool2d(2)]
    spatial = 32 // 2 ** len(widths)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(widths[-1] * spatial**2, hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))


ARCHITECTURES: dict[str, Callable[..., Any]] = {"airnet": airnet, "course": course}


def _arch(model_config: dict[str, Any]) -> tuple[Callable[..., Any], dict[str, Any]]:
    kwargs = dict(model_config)
    arch = kwargs.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"model config: expected arch in {sorted(ARCHITECTURES)}, "
                              f"got {arch!r}")
    return ARCHITECTURES[arch], kwargs


def build_layers(model_config: dict[str, Any], nn: Any) -> Any:
    """The layer tree of `model_config` ({"arch": NAME, **kwargs}) from namespace `nn`
    (`torch.nn` or a PyNet backend), with the architecture's initialisation."""
    build, kwargs = _arch(model_config)
    return build(nn, **kwargs)


def output_scale(model_config: dict[str, Any]) -> float:
    """The factor the architecture multiplies its logits by (1 where it has none)."""
    return float(model_config.get("output_scale", 1.0))


def is_frozen(model_config: dict[str, Any], name: str, layer: str) -> bool:
    """Whether the architecture never trains parameter `name` of a `layer` (class name):
    airnet's whitening filters and BatchNorm scales (airbench)."""
    if model_config.get("arch") != "airnet":
        return False
    return name == "whiten.weight" or (layer == "BatchNorm2d" and name.endswith(".weight"))


def named_parameter_layers(model: Any) -> list[tuple[str, str]]:
    """(parameter name, class name of the layer that owns it) for a torch or PyNet model."""
    if isinstance(model, torch.nn.Module):
        return [(f"{prefix}.{name}" if prefix else name, type(layer).__name__)
                for prefix, layer in model.named_modules()
                for name, _ in layer.named_parameters(recurse=False)]
    return [(prefix + name, type(layer).__name__)
            for prefix, layer in model.named_modules() for name in layer._parameters]


class ScaledSequential(torch.nn.Sequential):
    """A torch layer tree whose logits are multiplied by `output_scale`."""

    def __init__(self, layers: torch.nn.Sequential, output_scale: float = 1.0) -> None:
        super().__init__(OrderedDict(layers.named_children()))
        self.output_scale = output_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits if self.output_scale == 1.0 else logits * self.output_scale


def build_model(model_config: dict[str, Any]) -> torch.nn.Module:
    """The torch network that `model_config` describes; frozen parameters (`is_frozen`) have
    requires_grad False. Its max-pools take `cifar.max_pool`'s faster path where it applies."""
    model = ScaledSequential(build_layers(model_config, torch.nn), output_scale(model_config))
    model = with_fast_max_pool(model)
    for name, layer in named_parameter_layers(model):
        model.get_parameter(name).requires_grad = not is_frozen(model_config, name, layer)
    return model


def whitening_weight(images: np.ndarray, kernel: int, eps: float = 5e-4,
                     chunk: int = 1000) -> np.ndarray:
    """airbench's whitening filters for normalised `images` (N, 3, H, W): the eigenvectors of
    the covariance of their `kernel`x`kernel` patches scaled by 1/sqrt(eigenvalue + eps),
    largest first, followed by their negatives. Shape (2 * 3 * kernel**2, 3, kernel, kernel),
    float32; computed in float64, `chunk` images at a time."""
    size = 3 * kernel * kernel
    covariance, count = np.zeros((size, size)), 0
    for start in range(0, len(images), chunk):
        windows = np.lib.stride_tricks.sliding_window_view(
            images[start:start + chunk], (kernel, kernel), axis=(2, 3))
        patches = windows.transpose(0, 2, 3, 1, 4, 5).reshape(-1, size).astype(np.float64)
        covariance += patches.T @ patches
        count += len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance / count)
    filters = (eigenvectors.T / np.sqrt(eigenvalues + eps)[:, None])[::-1]
    filters = filters.reshape(-1, 3, kernel, kernel).astype(np.float32)
    return np.concatenate([filters, -filters])


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters, trainable or frozen."""
    return sum(p.numel() for p in model.parameters())
