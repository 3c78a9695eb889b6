"""Network architectures, built from a plain model-config dict so checkpoints can rebuild them.

`airnet` follows the airbench family: a frozen 2x2 whitening convolution initialised from the
patch covariance of the training images, then conv-pool-BN-GELU groups whose BN layers have a
fixed unit scale, a global max-pool and a scaled linear head. `course` is the typical course
solution: three conv-BN-ReLU-pool layers and a hidden fully connected layer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from cifar.errors import CheckpointError


def _batch_norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, momentum=momentum, eps=1e-12)
    norm.weight.requires_grad = False
    return norm


ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """Bias-free 3x3 convolution whose first `in_channels` filters start as identities
    (airbench's partial Dirac initialisation)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    nn.init.dirac_(conv.weight.data[:in_channels])
    return conv


class ConvGroup(nn.Sequential):
    """conv3x3 -> maxpool2 -> BN -> act -> conv3x3 -> BN -> act."""

    def __init__(self, in_channels: int, out_channels: int, bn_momentum: float,
                 activation: str) -> None:
        super().__init__(
            _conv3x3(in_channels, out_channels),
            nn.MaxPool2d(2),
            _batch_norm(out_channels, bn_momentum),
            ACTIVATIONS[activation](),
            _conv3x3(out_channels, out_channels),
            _batch_norm(out_channels, bn_momentum),
            ACTIVATIONS[activation](),
        )


class AirNet(nn.Sequential):
    """Whitening stem, three `ConvGroup`s of the given widths, global max-pool, linear head,
    with the logits multiplied by `output_scale`. A Sequential, so that it converts to PyNet
    layer by layer (`cifar.pynet.convert`)."""

    def __init__(self, widths: list[int], whiten_kernel: int = 2, bn_momentum: float = 0.4,
                 output_scale: float = 1 / 9, activation: str = "gelu",
                 num_classes: int = 10) -> None:
        whiten_width = 2 * 3 * whiten_kernel**2
        whiten = nn.Conv2d(3, whiten_width, whiten_kernel, padding=0, bias=True)
        whiten.weight.requires_grad = False
        channels = [whiten_width, *widths]
        super().__init__(OrderedDict(
            whiten=whiten,
            stem_activation=ACTIVATIONS[activation](),
            groups=nn.Sequential(*(ConvGroup(c_in, c_out, bn_momentum, activation)
                                   for c_in, c_out in zip(channels, widths, strict=False))),
            pool=nn.AdaptiveMaxPool2d(1),
            flatten=nn.Flatten(),
            head=nn.Linear(widths[-1], num_classes, bias=False),
        ))
        self.output_scale = output_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.output_scale

    @torch.no_grad()
    def init_whitening(self, inputs: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to the ZCA-like whitening of `inputs`' patches (and their negatives)."""
        k = self.whiten.kernel_size[0]
        patches = inputs.float().unfold(2, k, 1).unfold(3, k, 1)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k).double()
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0)
        filters = filters.reshape(-1, 3, k, k).float()
        self.whiten.weight.copy_(torch.cat([filters, -filters]))
        self.whiten.bias.zero_()


class CourseNet(nn.Sequential):
    """Course baseline: (conv3x3-BN-ReLU-maxpool) x 3, FC hidden layer with ReLU, FC output."""

    def __init__(self, widths: list[int], hidden: int = 256, num_classes: int = 10) -> None:
        layers: list[nn.Module] = []
        for c_in, c_out in zip([3, *widths], widths, strict=False):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
        spatial = 32 // 2 ** len(widths)
        super().__init__(*layers, nn.Flatten(), nn.Linear(widths[-1] * spatial**2, hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))


ARCHITECTURES: dict[str, type[nn.Module]] = {"airnet": AirNet, "course": CourseNet}


def build_model(model_config: dict[str, Any]) -> nn.Module:
    """Build the network that `model_config` ({"arch": NAME, **kwargs}) describes."""
    kwargs = dict(model_config)
    arch = kwargs.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"model config: expected arch in {sorted(ARCHITECTURES)}, "
                              f"got {arch!r}")
    return ARCHITECTURES[arch](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters, trainable or frozen."""
    return sum(p.numel() for p in model.parameters())
