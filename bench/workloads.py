"""What the benchmarks run: the layers and shapes a CIFAR-10 network sees, built the same
way in every PyNet backend and in torch, with their FLOP counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import backends

NAIVE_BATCH = 1  # the loop reference runs one image (and small planes); its rows say so


@dataclass(frozen=True)
class Workload:
    """A layer (or a whole training step) and its input shape.

    ``build(nn)`` makes the layer from a namespace with torch's layer names: a PyNet
    backend or ``torch.nn``. ``flops(shape)`` counts the forward pass (a multiply-add is
    2 FLOPs); backward is taken as twice the forward for GEMM layers. ``None`` where
    FLOPs say nothing useful (memory-bound layers)."""

    name: str
    build: Callable[[Any], Any]
    input_shape: tuple[int, ...]
    flops: Callable[[tuple[int, ...]], float] | None = None
    naive_shape: tuple[int, ...] | None = None
    training_step: bool = False

    def shape_for(self, engine: str) -> tuple[int, ...]:
        return self.naive_shape if engine == "naive" and self.naive_shape else self.input_shape


def conv_flops(cin: int, cout: int, k: int) -> Callable[[tuple[int, ...]], float]:
    def flops(shape: tuple[int, ...]) -> float:
        n, _, h, w = shape  # 3x3 with padding 1: output size = input size
        return 2.0 * n * h * w * cout * cin * k * k
    return flops


def small_cnn(nn: Any) -> Any:
    """The benchmark's whole network: three conv-BN-ReLU-pool stages and a classifier."""
    layers = []
    for cin, cout in ((3, 32), (32, 64), (64, 128)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 10))


def small_cnn_flops(shape: tuple[int, ...]) -> float:
    n = shape[0]
    convs = sum(conv_flops(cin, cout, 3)((n, cin, size, size))
                for cin, cout, size in ((3, 32, 32), (32, 64, 16), (64, 128, 8)))
    return convs + 2.0 * n * 2048 * 10


WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("conv-3-32-32x32", lambda nn: nn.Conv2d(3, 32, 3, padding=1), (128, 3, 32, 32),
             conv_flops(3, 32, 3), (NAIVE_BATCH, 3, 8, 8)),
    Workload("conv-32-64-16x16", lambda nn: nn.Conv2d(32, 64, 3, padding=1), (128, 32, 16, 16),
             conv_flops(32, 64, 3), (NAIVE_BATCH, 32, 4, 4)),
    Workload("conv-64-128-8x8", lambda nn: nn.Conv2d(64, 128, 3, padding=1), (128, 64, 8, 8),
             conv_flops(64, 128, 3), (NAIVE_BATCH, 64, 2, 2)),
    Workload("maxpool-2x2", lambda nn: nn.MaxPool2d(2), (128, 32, 32, 32),
             naive_shape=(NAIVE_BATCH, 8, 8, 8)),
    Workload("batchnorm2d", lambda nn: nn.BatchNorm2d(32), (128, 32, 32, 32),
             naive_shape=(NAIVE_BATCH, 32, 4, 4)),
    Workload("relu", lambda nn: nn.ReLU(), (128, 32, 32, 32), naive_shape=(NAIVE_BATCH, 8, 8, 8)),
    Workload("linear-2048-10", lambda nn: nn.Linear(2048, 10), (128, 2048),
             lambda shape: 2.0 * shape[0] * 2048 * 10, (NAIVE_BATCH, 2048)),
    Workload("small-cnn-train-step", small_cnn, (128, 3, 32, 32), small_cnn_flops,
             training_step=True),
)}


#: (batch, in channels, out channels, size) of 3x3, padding-1 convolutions: the benchmark's
#: three (above) and those of the ``fast`` training net at its batch of 512.
CONV_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (128, 3, 32, 32), (128, 32, 64, 16), (128, 64, 128, 8),
    (512, 24, 48, 31), (512, 48, 48, 15), (512, 48, 128, 15), (512, 128, 128, 7),
    (512, 128, 128, 3))


def nn_for(engine: str) -> Any:
    """The layer namespace ``nn`` that ``Workload.build`` takes: ``torch.nn`` or a backend's."""
    return torch.nn if engine == "torch" else backends.get(engine)


def make_input(shape: tuple[int, ...], engine: str, dtype: str) -> Any:
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    return torch.tensor(x, requires_grad=True) if engine == "torch" else x
