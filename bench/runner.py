"""Turn a workload into timed calls: forward, backward, or one whole training step."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import backends
from backends.memory import reuse_freed_memory
from bench.workloads import Workload, make_input, nn_for


def set_threads(threads: int | None = None) -> int:
    """Give torch, numba and the BLAS behind NumPy the same thread count (default: all cores),
    and keep freed memory for reuse, as the PyNet trainer does (both engines alike)."""
    reuse_freed_memory()
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    backends.set_num_threads(threads)
    return threads


def prepare(workload: Workload, engine: str, dtype: str = "float32",
            shape: tuple[int, ...] | None = None) -> dict[str, Callable[[], Any]]:
    """``{"forward": f, "backward": g}`` for a layer, or ``{"step": h}`` for a training step.
    ``backward`` re-runs the backward pass of one recorded forward pass."""
    shape = shape or workload.shape_for(engine)
    x = make_input(shape, engine, dtype)
    nn = nn_for(engine)
    layer = workload.build(nn)
    if engine == "torch":
        layer = layer.to(getattr(torch, dtype))
        return _torch_calls(layer, x, workload.training_step)
    layer.to(np.dtype(dtype))
    return _pynet_calls(layer, x, nn, workload.training_step)


def _pynet_calls(layer: Any, x: np.ndarray, nn: Any, training_step: bool) -> dict:
    if training_step:
        crit = nn.CrossEntropyLoss()
        targets = np.arange(x.shape[0]) % 10

        def step() -> None:
            crit(layer(x), targets)
            layer.zero_grad()
            layer.backward(crit.backward(), input_grad=False)  # as torch: x needs no grad
            grads = layer.grads
            for name, param in layer.named_parameters():
                param -= 0.01 * grads[name]  # plain SGD, in place
        return {"step": step}
    y = layer(x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)

    def backward() -> None:
        layer.zero_grad()
        layer.backward(dy)
    return {"forward": lambda: layer(x), "backward": backward}


def _torch_calls(layer: torch.nn.Module, x: torch.Tensor, training_step: bool) -> dict:
    if training_step:
        x = x.detach()
        crit = torch.nn.CrossEntropyLoss()
        targets = torch.arange(x.shape[0]) % 10
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.01)

        def step() -> None:
            optimizer.zero_grad()
            crit(layer(x), targets).backward()
            optimizer.step()
        return {"step": step}
    y = layer(x)
    dy = torch.randn(y.shape, dtype=y.dtype)
    inputs = [x, *layer.parameters()]
    return {"forward": lambda: layer(x),
            "backward": lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True)}


def median_seconds(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_call_seconds(workload: Workload, engine: str, dtype: str,
                       shape: tuple[int, ...] | None = None) -> float:
    """Wall time of the first forward and backward in this process: for numba, the JIT
    compile (or the load from its on-disk cache) plus one run."""
    start = time.perf_counter()
    calls = prepare(workload, engine, dtype, shape)  # runs one forward
    for name, call in calls.items():
        if name != "forward":
            call()
    return time.perf_counter() - start
