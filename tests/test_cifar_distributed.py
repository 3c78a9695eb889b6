"""`torchrun ... cifar train`: two gloo processes on this machine take the one-process steps,
write through rank 0 only, evaluate like one process, survive a lost rank by resuming, and
meet across two simulated nodes. Each test launches real processes (seconds each)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixtures import shared_cifar_root_fixture, tiny_config  # noqa: F401

from cifar.checkpoint import load_model, read_checkpoint
from cifar.data import load_split
from cifar.evaluate import evaluate
from cifar.presets import resolve_config
from cifar.train import train

WORKER = Path(__file__).with_name("dist_worker.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
NO_NORM_AIRNET = {"arch": "airnet", "widths": [8, 16, 16], "whiten_kernel": 2,
                  "bn_momentum": 0.4, "output_scale": 1 / 9, "activation": "gelu",
                  "batch_norm": False}
NO_NORM_COURSE = {"arch": "course", "widths": [8, 16, 16], "hidden": 32, "batch_norm": False}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **extra}


def _torchrun(args: list[str], nproc: int = 2, timeout: float = 240,
              **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, "--standalone", f"--nproc-per-node={nproc}", *args],
                          env=_env(**env), capture_output=True, text=True, timeout=timeout)


def _failure(result: subprocess.CompletedProcess) -> str:
    """The ranks' output for an assertion message: stdout (which ranks finished) and both
    ends of stderr (a rank's own error comes first, torchrun's summary last)."""
    err = result.stderr if len(result.stderr) <= 5000 else \
        f"{result.stderr[:2000]}\n[...]\n{result.stderr[-3000:]}"
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-1000:]}\nstderr:\n{err}"


def _worker_run(config: dict, out: Path, nproc: int = 2, *args: str, **env: str
                ) -> subprocess.CompletedProcess:
    config_path = out.with_suffix(".json")
    config_path.write_text(json.dumps(config))
    return _torchrun([str(WORKER), str(config_path), str(out), *args], nproc, **env)


def _config(data_dir: Path, engine: str, preset: str, **overrides) -> dict:
    settings = {"data_dir": str(data_dir), "device": "cpu", "threads": 1, "epochs": 2,
                "batch_size": 32, "eval_batch_size": 16, "engine": engine, **overrides}
    if engine == "torch":
        settings.update(precision="fp32", channels_last=False)
    config = resolve_config(preset, **settings)
    config["model"] = NO_NORM_AIRNET if preset.startswith("fast") else NO_NORM_COURSE
    if preset.startswith("fast"):
        config.update(whiten_bias_epochs=1, lookahead={"every": 2, "decay": 0.9})
    return config


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "model.pt")["model"]


def _metrics(run: Path) -> list[list[str]]:
    return [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("engine", ["torch", "pynet"])
@pytest.mark.parametrize("preset", ["fast-sgd", "course"], ids=["sum-loss", "mean-loss"])
def test_two_processes_take_the_one_process_steps_without_batchnorm(
        engine: str, preset: str, shared_cifar_root: Path, tmp_path: Path):
    # `fast-sgd`, not `fast`: Muon's Newton-Schulz iteration turns the gradient's round-off
    # into ~5e-6 of its (unit-sized) step, and this network without BatchNorm amplifies that
    # over 14 steps: the weights differ by 1.9e-3 (measured). Muon steps on identical
    # gradients are identical; what this test checks is how the gradients combine, which
    # does not depend on the optimiser.
    # Winograd's weight gradient mixes the kernel taps, so a tap whose gradient is exactly 0
    # gets round-off instead, and Adam (the mean-loss preset), dividing by the gradient's own
    # size, turns that into steps of ~1e-2 lr: two epochs later two processes differ by ~1e-3,
    # as runs on another thread count would. Each step is still equal to round-off
    # (tests/test_winograd.py); here Adam's case uses the GEMM path, which keeps zeros exact.
    overrides = {"conv_algorithm": "im2col"} if (engine, preset) == ("pynet", "course") else {}
    config = _config(shared_cifar_root, engine, preset, **overrides)
    train(config, out=tmp_path / "one", quiet=True)
    result = _worker_run(config, tmp_path / "two")
    assert result.returncode == 0, _failure(result)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-4, atol=1e-5, msg=name)
    for row_one, row_two in zip(_metrics(tmp_path / "one"), _metrics(tmp_path / "two"),
                                strict=True):
        np.testing.assert_allclose([float(v) for v in row_two[1:6]],
                                   [float(v) for v in row_one[1:6]], rtol=1e-4)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2


@pytest.mark.parametrize("engine", ["torch", "pynet"])
def test_only_rank_0_writes_and_the_sharded_evaluation_counts_every_test_image(
        engine: str, shared_cifar_root: Path, tmp_path: Path):
    config = tiny_config(shared_cifar_root, engine=engine, threads=1, test_subset=59,
                         batch_size=32, **({"precision": "fp32", "channels_last": False}
                                           if engine == "torch" else {}))
    result = _worker_run(config, tmp_path / "run", DIST_TEST_FORBID_WRITES="1")
    assert result.returncode == 0, _failure(result)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "last.pt",
                                               "model.pt", "summary.json"}
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["world_size"], summary["n_test"]) == (2, 59)
    loaded = load_model(run / "model.pt", torch.device("cpu"))
    split = load_split(shared_cifar_root, train=False).subset(59)
    single = evaluate(loaded.model, split, 0, 16, "fp32")
    assert round(single.accuracy * 59) == round(summary["test_accuracy"] * 59)


@pytest.mark.parametrize(("engine", "resume_processes"), [("torch", 2), ("pynet", 1)])
def test_a_killed_rank_stops_the_others_and_the_run_resumes(
        engine: str, resume_processes: int, shared_cifar_root: Path, tmp_path: Path):
    """Killed after the whitening bias froze (epoch 1): the resumed DDP model trains the
    parameters that train now, on the same or another number of processes."""
    config = _config(shared_cifar_root, engine, "fast", epochs=30, dist_timeout=30)
    out = tmp_path / "run"
    config_path = out.with_suffix(".json")
    config_path.write_text(json.dumps(config))
    launcher = subprocess.Popen([*TORCHRUN, "--standalone", "--nproc-per-node=2", str(WORKER),
                                 str(config_path), str(out)], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not (out / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (out / "last.pt").exists(), "no epoch finished"
    os.kill(int(Path(f"{out}.pid1").read_text()), signal.SIGKILL)
    killed = time.monotonic()
    output, _ = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert time.monotonic() - killed < 60
    assert "rank: 1" in output or "lost contact with rank(s) 1" in output, output[-3000:]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    finished = read_checkpoint(out / "last.pt")["epoch"]
    assert 1 <= finished < 30 and len(_metrics(out)) == finished
    if resume_processes == 1:
        summary = train(config, resume=out, quiet=True)
        assert summary["resumed"] and summary["world_size"] == 1
    else:
        resumed = _worker_run(config, out, resume_processes, "--resume")
        assert resumed.returncode == 0, _failure(resumed)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["resumed"] and summary["world_size"] == resume_processes
    assert [int(row[0]) for row in _metrics(out)] == list(range(1, 31))


def test_nan_on_one_rank_stops_both_with_the_same_message(shared_cifar_root: Path,
                                                           tmp_path: Path):
    config = _config(shared_cifar_root, "torch", "fast")
    result = _worker_run(config, tmp_path / "run", DIST_TEST_NAN_RANK="1")
    assert result.returncode != 0
    message = "Error: training diverged: loss is nan at step 2; lower --lr or check the data"
    assert result.stderr.count(message) == 2, _failure(result)  # once from each rank


def test_two_torchrun_nodes_meet_at_a_localhost_rendezvous(shared_cifar_root: Path,
                                                            tmp_path: Path):
    nodes = _two_torchrun_nodes([
        "-m", "cifar", "train", "--data-dir", str(shared_cifar_root), "--epochs", "1",
        "--batch-size", "64", "--threads", "1", "--precision", "fp32",
        "--out", str(tmp_path / "run"), "--quiet"])
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert sum("test_accuracy" in output for output in outputs) == 1  # rank 0 reports


def test_a_rank_lost_on_another_node_is_named_by_the_survivor(shared_cifar_root: Path,
                                                                 tmp_path: Path):
    """Two torchrun agents, one process each: when rank 1 dies its agent cannot stop rank 0,
    which fails in its next collective and names rank 1 from the rendezvous store."""
    config = _config(shared_cifar_root, "torch", "fast", epochs=30, dist_timeout=30)
    out = tmp_path / "run"
    config_path = out.with_suffix(".json")
    config_path.write_text(json.dumps(config))
    nodes = _two_torchrun_nodes([str(WORKER), str(config_path), str(out)])
    deadline = time.monotonic() + 180
    while not (out / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    # c10d ignores --node-rank: kill whichever rank runs under the agent without the store
    pids = {rank: int(Path(f"{out}.pid{rank}").read_text()) for rank in (0, 1)}
    lost = next(rank for rank, pid in pids.items() if _parent(pid) == nodes[1].pid)
    os.kill(pids[lost], signal.SIGKILL)
    outputs = "".join(node.communicate(timeout=120)[0] for node in nodes)
    assert f"Error: rank {1 - lost} of 2: lost contact with rank(s) {lost}" in outputs, \
        outputs[-3000:]


def _two_torchrun_nodes(command: list[str]) -> list[subprocess.Popen]:
    """Two torchrun agents of one process each, meeting at a c10d rendezvous on localhost.
    The second starts once the first hosts the rendezvous store, as on a cluster (the two
    racing to host it hung once in CI: node 0's agent after its worker had finished)."""
    port = _free_port()
    common = ["--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
              f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-conf=join_timeout=120", *command]
    nodes = []
    for node_rank in (0, 1):
        nodes.append(subprocess.Popen([*TORCHRUN, f"--node-rank={node_rank}", *common],
                                      env=_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
        if node_rank == 0:
            _wait_for_listener(port)
    return nodes


def _wait_for_listener(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {seconds}s")


def _parent(pid: int) -> int:
    """The parent process id of ``pid`` (Linux /proc)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("case", ["nobody-joins", "port-in-use"])
def test_a_process_group_that_cannot_form_is_a_one_line_error(case: str,
                                                              shared_cifar_root: Path,
                                                              tmp_path: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        if case == "port-in-use":
            holder.listen()
        else:
            holder.close()
        env = _env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "cifar", "train", "--data-dir", str(shared_cifar_root),
             "--dist-timeout", "3", "--out", str(tmp_path / "run")],
            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert time.monotonic() - started < 60
    assert f"could not form the gloo process group at 127.0.0.1:{port} within 3s" in \
        result.stderr
    assert "Traceback" not in result.stderr
