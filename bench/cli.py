"""``pynet-bench``: one-off timings of a PyNet backend against torch.

    pynet-bench conv --backend numba --batch 128 --in-channels 32 --out-channels 64 --size 16
    pynet-bench conv --backend numba --algorithm winograd
    pynet-bench all --backend numpy
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from backends import BACKENDS, conv_algorithm
from backends.conv_dispatch import ALGORITHMS
from bench.runner import first_call_seconds, median_seconds, prepare, set_threads
from bench.table import markdown, summarize
from bench.workloads import WORKLOADS, Workload, conv_flops


def common(fn: Callable) -> Callable:
    options = [
        click.option("--backend", type=click.Choice(BACKENDS), default="numba",
                     show_default=True),
        click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
                     show_default=True),
        click.option("--repeat", type=click.IntRange(1), default=20, show_default=True,
                     help="Timed runs per call; the median is reported."),
        click.option("--threads", type=click.IntRange(1), default=None,
                     help="Threads for torch, numba and BLAS alike. Default: all cores."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def measure(workloads: list[Workload], backend: str, dtype: str, repeat: int,
            threads: int | None) -> None:
    threads = set_threads(threads)
    click.echo(f"{backend} vs torch, {dtype}, {threads} threads, median of {repeat} runs")
    measurements: list[dict[str, Any]] = []
    for workload in workloads:
        shape = workload.shape_for(backend)
        shape_kind = "reduced" if shape != workload.input_shape else "full"
        if backend == "numba":
            seconds = first_call_seconds(workload, backend, dtype, shape)
            click.echo(f"{workload.name}: numba first call (JIT compile or cache load, plus one "
                       f"run) {seconds:.2f} s, excluded from the timings")
        for engine in (backend, "torch"):
            calls = prepare(workload, engine, dtype, shape)
            for call, fn in calls.items():
                measurements.append({
                    "workload": workload.name, "engine": engine, "call": call,
                    "shape_kind": shape_kind, "shape": shape,
                    "flops": workload.flops(shape) if workload.flops else None,
                    "seconds": median_seconds(fn, 3 if engine == "naive" else repeat)})
    click.echo(markdown(summarize(measurements)))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Time PyNet's backends against torch: forward and backward, GFLOP/s, ratio to torch."""


@main.command()
@click.option("--batch", type=click.IntRange(1), default=128, show_default=True)
@click.option("--in-channels", type=click.IntRange(1), default=32, show_default=True)
@click.option("--out-channels", type=click.IntRange(1), default=64, show_default=True)
@click.option("--size", type=click.IntRange(1), default=16, show_default=True,
              help="Input height and width.")
@click.option("--kernel", type=click.IntRange(1), default=3, show_default=True)
@click.option("--stride", type=click.IntRange(1), default=1, show_default=True)
@click.option("--padding", type=click.IntRange(0), default=None,
              help="Default: kernel // 2 ('same' for odd kernels at stride 1).")
@click.option("--algorithm", type=click.Choice(ALGORITHMS), default="auto", show_default=True,
              help="Convolution algorithm of the numpy and numba backends (winograd: where "
                   "it applies, 3x3 stride 1; direct: the same, numba only; see "
                   "backends.set_conv_algorithm).")
@common
def conv(batch: int, in_channels: int, out_channels: int, size: int, kernel: int, stride: int,
         padding: int | None, algorithm: str, backend: str, dtype: str, repeat: int,
         threads: int | None) -> None:
    """Conv2d forward and backward."""
    padding = kernel // 2 if padding is None else padding
    name = f"conv-{in_channels}-{out_channels}-k{kernel}-s{stride}-{size}x{size}"
    flops = None
    if stride == 1 and 2 * padding == kernel - 1:
        flops = conv_flops(in_channels, out_channels, kernel)
    workload = Workload(
        name, lambda nn: nn.Conv2d(in_channels, out_channels, kernel, stride, padding),
        (batch, in_channels, size, size), flops)
    with conv_algorithm(algorithm):
        measure([workload], backend, dtype, repeat, threads)


def _plane_command(name: str, build: Callable[[Any, int], Any], doc: str) -> None:
    @main.command(name=name, help=doc)
    @click.option("--batch", type=click.IntRange(1), default=128, show_default=True)
    @click.option("--channels", type=click.IntRange(1), default=32, show_default=True)
    @click.option("--size", type=click.IntRange(2), default=32, show_default=True)
    @common
    def command(batch: int, channels: int, size: int, backend: str, dtype: str, repeat: int,
                threads: int | None) -> None:
        workload = Workload(f"{name}-{channels}x{size}x{size}",
                            lambda nn: build(nn, channels), (batch, channels, size, size))
        measure([workload], backend, dtype, repeat, threads)


_plane_command("maxpool", lambda nn, c: nn.MaxPool2d(2), "MaxPool2d(2) forward and backward.")
_plane_command("batchnorm", lambda nn, c: nn.BatchNorm2d(c),
               "BatchNorm2d (training mode) forward and backward.")
_plane_command("relu", lambda nn, c: nn.ReLU(), "ReLU forward and backward.")


@main.command()
@click.option("--batch", type=click.IntRange(1), default=128, show_default=True)
@click.option("--in-features", type=click.IntRange(1), default=2048, show_default=True)
@click.option("--out-features", type=click.IntRange(1), default=10, show_default=True)
@common
def linear(batch: int, in_features: int, out_features: int, backend: str, dtype: str,
           repeat: int, threads: int | None) -> None:
    """Linear forward and backward."""
    workload = Workload(f"linear-{in_features}-{out_features}",
                        lambda nn: nn.Linear(in_features, out_features), (batch, in_features),
                        lambda shape: 2.0 * shape[0] * in_features * out_features)
    measure([workload], backend, dtype, repeat, threads)


@main.command()
@common
def step(backend: str, dtype: str, repeat: int, threads: int | None) -> None:
    """One training step of the benchmark's small CNN (forward, loss, backward, SGD)."""
    measure([WORKLOADS["small-cnn-train-step"]], backend, dtype, repeat, threads)


@main.command(name="all")
@common
def all_(backend: str, dtype: str, repeat: int, threads: int | None) -> None:
    """Every workload of the benchmark suite (the naive backend on reduced shapes)."""
    workloads = list(WORKLOADS.values())
    if backend == "naive":
        workloads = [w for w in workloads if not w.training_step]
    measure(workloads, backend, dtype, repeat, threads)
