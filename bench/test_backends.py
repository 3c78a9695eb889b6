"""The backend benchmark suite (``nox -s bench``): every layer x {naive, numpy, numba, torch},
forward and backward timed separately, float32, and a whole small-CNN training step.

The naive backend runs each layer on a reduced shape; torch is timed on that shape too, so
its ratio compares like with like. ``python -m bench.report`` turns the JSON into tables.
"""

import pytest

from bench.runner import prepare
from bench.workloads import WORKLOADS

LAYERS = [w for w in WORKLOADS.values() if not w.training_step]
STEPS = [w for w in WORKLOADS.values() if w.training_step]
ROUNDS = {"naive": 3}  # the loop reference is slow even on its reduced shapes


def run(benchmark, workload, engine, call, shape_kind, threads):
    shape = workload.naive_shape if shape_kind == "reduced" else workload.input_shape
    calls = prepare(workload, engine, "float32", shape)
    benchmark.group = f"{workload.name} {call} ({shape_kind})"
    benchmark.extra_info.update(
        workload=workload.name, engine=engine, call=call, shape=list(shape),
        shape_kind=shape_kind, threads=threads,
        flops=workload.flops(shape) if workload.flops else None)
    benchmark.pedantic(calls[call], rounds=ROUNDS.get(engine, 15), warmup_rounds=1)


@pytest.mark.parametrize("call", ["forward", "backward"])
@pytest.mark.parametrize("engine", ["numpy", "numba", "torch"])
@pytest.mark.parametrize("workload", LAYERS, ids=lambda w: w.name)
def test_layer(benchmark, workload, engine, call, threads):
    run(benchmark, workload, engine, call, "full", threads)


@pytest.mark.parametrize("call", ["forward", "backward"])
@pytest.mark.parametrize("engine", ["naive", "torch"])
@pytest.mark.parametrize("workload", LAYERS, ids=lambda w: w.name)
def test_layer_reduced_shape(benchmark, workload, engine, call, threads):
    run(benchmark, workload, engine, call, "reduced", threads)


@pytest.mark.parametrize("engine", ["numpy", "numba", "torch"])
@pytest.mark.parametrize("workload", STEPS, ids=lambda w: w.name)
def test_training_step(benchmark, workload, engine, threads):
    run(benchmark, workload, engine, "step", "full", threads)
