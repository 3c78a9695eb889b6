"""The training loop: data, progress bar, metrics, checkpoints and summary around an Engine."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cifar.checkpoint import LAST_NAME, read_checkpoint, resolve_checkpoint
from cifar.data import Split, batches_dir, default_data_dir, load_classes, load_split
from cifar.engine import Engine, resolve_device
from cifar.errors import CheckpointError, CifarError
from cifar.pipeline import normalize, train_batches
from cifar.rundir import RunDir

WHITENING_IMAGES = 5000


def _run_epoch(engine: Engine, split: Split, epoch: int, quiet: bool) -> tuple[float, float]:
    """Train one epoch; return mean train loss and train accuracy."""
    cfg = engine.config
    engine.start_epoch(epoch)
    steps = math.ceil(len(split.labels) / cfg["batch_size"])
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg['epochs']}", disable=quiet,
               leave=False, dynamic_ncols=True)
    for inputs, labels in train_batches(split, cfg["batch_size"], cfg["seed"], epoch,
                                        cfg["crop_pad"], cfg["flip"], cfg["channels_last"]):
        batch_loss, batch_correct = engine.train_step(inputs, labels)
        loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + len(labels)
        bar.update()
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                        img_s=f"{seen / (time.perf_counter() - start):.0f}")
    bar.close()
    return loss_sum / seen, correct / seen


def _pynet_engine() -> type:
    from cifar.pynet.engine import PynetEngine  # imports numba: only for --engine pynet

    return PynetEngine


def _resume_state(resume: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    path = resolve_checkpoint(resume, LAST_NAME)
    state = read_checkpoint(path)
    if "optimizer" not in state or "epoch" not in state:
        raise CheckpointError(f"--resume {path}: expected a resumable {LAST_NAME} (or its run "
                              f"directory), got an inference checkpoint without optimiser state")
    return path.parent, state


def train(config: dict[str, Any], out: str | os.PathLike | None = None,
          resume: str | os.PathLike | None = None, quiet: bool = False) -> dict[str, Any]:
    """Train (or resume) a run and return its summary; `config` is ignored when resuming,
    except for the machine settings device, threads and data_dir."""
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    config, state = dict(config), None
    if resume is not None:
        out, state = _resume_state(resume)
        machine = {k: config[k] for k in ("device", "threads", "data_dir") if config.get(k)}
        config = {**state["config"], **machine}
    run = RunDir(out)
    if state is None and run.last.exists():
        raise CifarError(f"--out {run.path}: already holds a run ({LAST_NAME}); pass --resume "
                         f"{run.path} to continue it or choose another --out")
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    pynet = config.get("engine", "torch") == "pynet"
    device = resolve_device("cpu" if pynet and config["device"] == "auto" else config["device"])
    data_dir = config["data_dir"] = str(Path(config["data_dir"] or default_data_dir()).resolve())
    train_split = load_split(data_dir, train=True).subset(config["train_subset"]).to(device)
    test_split = load_split(data_dir, train=False).subset(config["test_subset"]).to(device)
    classes = load_classes(batches_dir(data_dir))

    torch.manual_seed(config["seed"])
    steps_per_epoch = math.ceil(len(train_split.labels) / config["batch_size"])
    engine_type = _pynet_engine() if pynet else Engine
    engine = engine_type(config, steps_per_epoch, device)
    if state is None:
        engine.prepare(normalize(train_split.images[:WHITENING_IMAGES]))
        run.create(config)
        rows: list[dict[str, Any]] = []
    else:
        engine.load_state_dict(state)
        torch.set_rng_state(state["rng"]["torch"])
        rows = run.read_metrics()[:state["epoch"]]
        run.write_metrics(rows)

    result = None
    for epoch in range(len(rows), config["epochs"]):
        start = time.perf_counter()
        lr = engine.lr
        train_loss, train_acc = _run_epoch(engine, train_split, epoch, quiet)
        seconds = time.perf_counter() - start
        every, last = config["eval_every"], epoch + 1 == config["epochs"]
        result = engine.evaluate(test_split, 0) if last or (every and (epoch + 1) % every == 0) \
            else None
        rows.append({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                     "train_acc": train_acc, "test_loss": result.loss if result else "",
                     "test_acc": result.accuracy if result else "", "epoch_seconds": seconds})
        run.write_metrics(rows)
        run.save_last({**engine.state_dict(), "config": config, "epoch": epoch + 1,
                       "rng": {"torch": torch.get_rng_state()}, "classes": classes})
        if not quiet:
            tqdm.write(f"epoch {epoch + 1}: train_loss {train_loss:.4f} train_acc "
                       f"{train_acc:.4f}" + (f" test_acc {result.accuracy:.4f}" if result else "")
                       + f" ({seconds:.1f}s)")

    result = result or engine.evaluate(test_split, 0)
    tta = engine.evaluate(test_split, config["tta_level"])
    engine.save_model(run, classes)
    summary = {
        "test_accuracy": result.accuracy, "test_accuracy_tta": tta.accuracy,
        "test_loss": result.loss, "tta_level": config["tta_level"], "epochs": config["epochs"],
        "train_seconds": sum(float(r["epoch_seconds"]) for r in rows),
        "wall_seconds": time.perf_counter() - wall_start,
        "cpu_seconds": time.process_time() - cpu_start, "preset": config["preset"],
        "params": engine.num_parameters(), "seed": config["seed"],
        "device": str(device), "threads": torch.get_num_threads(),
        "n_train": len(train_split.labels), "n_test": len(test_split.labels),
        "resumed": state is not None,
    }
    run.write_summary(summary)
    return summary
