"""``python -m bench.conv_algorithms``: each convolution algorithm of a backend against torch,
side by side.

For every shape (the benchmark's three convolutions and those of the ``fast`` training net,
or those of ``--shape``) it runs, round after round, conv forward + backward (dx, dweight,
dbias) once per algorithm of the backend ("auto" and its ``CONV_ALGORITHMS``) and once in
torch float32, in the
same round, so that a busy machine slows all of them alike. It prints the median
milliseconds of each and the median over rounds of each round's ratio to torch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import click
import numpy as np
import torch

import backends
from backends.conv_dispatch import conv_algorithm
from bench.runner import set_threads
from bench.workloads import CONV_SHAPES

#: Seconds of rest after each timed call: torch's OpenMP workers keep spinning for a while
#: after a call, and took the cores from whatever ran next (up to +50% measured).
PAUSE = 0.3
Shape = tuple[int, int, int, int]  # batch, in channels, out channels, size (3x3, padding 1)


def pynet_step(backend: str, algorithm: str, x: np.ndarray, weight: np.ndarray,
               bias: np.ndarray, dy: np.ndarray) -> Callable[[], None]:
    kernels = backends.get(backend).kernels

    def step() -> None:
        with conv_algorithm(algorithm):
            _, ctx = kernels.conv2d_forward(x, weight, bias, (1, 1), (1, 1), (1, 1))
        kernels.conv2d_backward(dy, ctx)
    return step


def torch_step(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
               dy: np.ndarray) -> Callable[[], None]:
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    tdy = torch.tensor(dy)

    def step() -> None:
        y = torch.nn.functional.conv2d(tx, tw, tb, padding=1)
        torch.autograd.grad(y, (tx, tw, tb), tdy)
    return step


def algorithms(backend: str) -> tuple[str, ...]:
    return ("auto", *backends.get(backend).kernels.CONV_ALGORITHMS)


def compare(backend: str, shape: Shape, rounds: int) -> dict[str, tuple[float, float]]:
    """{engine: (median ms, median ratio to torch)} for one shape."""
    n, c, k, size = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, size, size), np.float32)
    weight = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    bias, dy = rng.standard_normal(k, np.float32), rng.standard_normal((n, k, size, size),
                                                                       np.float32)
    steps = {algorithm: pynet_step(backend, algorithm, x, weight, bias, dy)
             for algorithm in algorithms(backend)}
    steps["torch"] = torch_step(x, weight, bias, dy)
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(rounds + 1):  # the first round warms up and is not counted
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            if round_:
                seconds[name].append(time.perf_counter() - started)
            time.sleep(PAUSE)
    return {name: (1e3 * statistics.median(times), statistics.median(
        [t / ref for t, ref in zip(times, seconds["torch"], strict=True)]))
        for name, times in seconds.items()}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--backend", type=click.Choice(["numpy", "numba"]), default="numba",
              show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=7, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True,
              help="Threads for torch, numba and BLAS alike.")
@click.option("--shape", "shapes", type=(int, int, int, int), multiple=True,
              metavar="N C_IN C_OUT SIZE", help="A shape to time; repeat for more. "
              "[default: the benchmark's and the fast net's]")
def main(backend: str, rounds: int, threads: int, shapes: tuple[Shape, ...]) -> None:
    """Conv2d forward + backward (3x3, padding 1, float32) by each algorithm and by torch:
    median ms and median ratio to torch of the same round."""
    set_threads(threads)
    names = algorithms(backend)
    click.echo(f"{backend}, float32, {threads} threads, median of {rounds} rounds; "
               f"ms (ratio to torch fp32 of the same round)")
    click.echo("| N, C_in -> C_out @ size | " + " | ".join([*names, "torch"]) + " |")
    click.echo("|---|" + "---:|" * (len(names) + 1))
    for shape in shapes or CONV_SHAPES:
        result = compare(backend, shape, rounds)
        cells = [f"{ms:.1f} ({ratio:.2f})" for ms, ratio in result.values()]
        n, c, k, size = shape
        click.echo(f"| {n}, {c} -> {k} @ {size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
