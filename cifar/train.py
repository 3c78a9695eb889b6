"""The training loop: data, progress bar, metrics, checkpoints and summary around an Engine.

Under `torchrun` every rank runs this loop on its slice of each global batch
(`cifar.distributed`); rank 0 alone writes the run directory and shows progress.
"""

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
from cifar.distributed import World
from cifar.engine import Engine, resolve_device
from cifar.errors import CheckpointError, CifarError
from cifar.evaluate import EvalResult
from cifar.pipeline import normalize, train_batches
from cifar.rundir import RunDir
from cifar.settings import check_table, is_count, is_number

WHITENING_IMAGES = 5000
#: Settings of the machine rather than the recipe: on --resume the command line's win.
MACHINE_SETTINGS = ("device", "threads", "data_dir", "dist_timeout")


def crop_size(config: dict[str, Any], epoch: int) -> int | None:
    """The training crops' size in `epoch` (0-based): `early_crops["size"]` during the first
    `early_crops["epochs"]` epochs, else None (the images' own size)."""
    early = config.get("early_crops")
    return early["size"] if early and epoch < early["epochs"] else None


def _run_epoch(engine: Engine, split: Split, epoch: int, world: World,
               quiet: bool) -> tuple[float, float]:
    """Train one epoch; return the global mean train loss and train accuracy."""
    cfg = engine.config
    engine.start_epoch(epoch)
    steps = math.ceil(len(split.labels) / cfg["batch_size"])
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg['epochs']}",
               disable=quiet or not world.is_main, leave=False, dynamic_ncols=True)
    for inputs, labels in train_batches(split, cfg["batch_size"], cfg["seed"], epoch,
                                        cfg["crop_pad"], cfg["flip"], cfg["channels_last"],
                                        world.shard if world.distributed else None,
                                        crop_size(cfg, epoch), cfg.get("color_jitter")):
        batch_loss, batch_correct, batch_size = engine.train_step(inputs, labels)
        loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, \
            seen + batch_size
        bar.update()
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                        img_s=f"{seen / (time.perf_counter() - start):.0f}")
    bar.close()
    return loss_sum / seen, correct / seen


def _evaluate(engine: Engine, split: Split, tta_levels: tuple[int, ...],
              world: World) -> dict[int, EvalResult]:
    """Loss and accuracy on `split` at each TTA level, each rank evaluating its contiguous
    part; the counts are summed, so the accuracy is that of one process evaluating all of it."""
    part = world.shard(len(split.labels))
    local = Split(split.images[part], split.labels[part])
    n = len(local.labels)
    results = engine.evaluate(local, tta_levels) if n else {}
    sums: list[float] = []
    for level in tta_levels:
        result = results.get(level)
        sums += [result.loss * n, int((result.predictions == local.labels.cpu()).sum())] \
            if result else [0.0, 0]
    *sums, total = world.sum([*sums, n])
    return {level: EvalResult(loss=sums[2 * i] / total, accuracy=sums[2 * i + 1] / total,
                              predictions=torch.empty(0, dtype=torch.long))
            for i, level in enumerate(tta_levels)}


def _engine_type(config: dict[str, Any]) -> type:
    if config.get("engine", "torch") != "pynet":
        return Engine
    from cifar.pynet.engine import PynetEngine  # imports numba: only for --engine pynet

    return PynetEngine


def _resume_state(resume: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    path = resolve_checkpoint(resume, LAST_NAME)
    state = read_checkpoint(path)
    if "optimizer" not in state or "epoch" not in state:
        raise CheckpointError(f"--resume {path}: expected a resumable {LAST_NAME} (or its run "
                              f"directory), got an inference checkpoint without optimiser state")
    return path.parent, state


def _check_shards(n_train: int, batch_size: int, world: World) -> None:
    """Every rank needs at least one image of every global batch (BatchNorm needs it)."""
    smallest = min(batch_size, n_train % batch_size or batch_size)
    if smallest < world.size:
        raise CifarError(f"--batch-size {batch_size} with {n_train} training images: the "
                         f"smallest batch has {smallest} images, fewer than the {world.size} "
                         f"processes; use a batch size (and train subset) that gives each "
                         f"process at least one image")


def _check_early_crops(config: dict[str, Any], image_size: int) -> None:
    largest = image_size + 2 * config["crop_pad"]
    check_table("early_crops", config.get("early_crops"), {
        "size": (lambda size: is_count(size, 1) and size <= largest,
                 f"1 to {largest} (the {image_size}-pixel images padded by crop_pad "
                 f"{config['crop_pad']})"),
        "epochs": (is_count, "a count of epochs")})


def _check_color_jitter(config: dict[str, Any]) -> None:
    def fraction(amount: Any) -> bool:
        return is_number(amount) and 0 <= amount < 1

    check_table("color_jitter", config.get("color_jitter"), {
        "brightness": (fraction, "a number >= 0 and < 1 (a shift, in standard deviations)"),
        "contrast": (fraction, "a number >= 0 and < 1 (a relative scale)")})


def train(config: dict[str, Any], out: str | os.PathLike | None = None,
          resume: str | os.PathLike | None = None, quiet: bool = False) -> dict[str, Any]:
    """Train (or resume) a run and return its summary; `config` is ignored when resuming,
    except for the machine settings (`MACHINE_SETTINGS`). Under torchrun (RANK and
    WORLD_SIZE set) every process calls this; see `cifar.distributed`."""
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    config, state = dict(config), None
    if resume is not None:
        out, state = _resume_state(resume)
        machine = {k: config[k] for k in MACHINE_SETTINGS if config.get(k)}
        config = {**state["config"], **machine}
    config.setdefault("dist_timeout", 300)
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    pynet = config.get("engine", "torch") == "pynet"
    device = resolve_device("cpu" if pynet and config["device"] == "auto" else config["device"])
    world = World.from_env(device, config["dist_timeout"])
    try:
        with world.guard():
            return _train(config, RunDir(out), state, world, world.device(device), quiet,
                          wall_start, cpu_start)
    finally:
        world.close()


def _train(config: dict[str, Any], run: RunDir, state: dict[str, Any] | None, world: World,
           device: torch.device, quiet: bool, wall_start: float,
           cpu_start: float) -> dict[str, Any]:
    taken = world.is_main and state is None and run.last.exists()
    if world.broadcast_object(taken):
        raise CifarError(f"--out {run.path}: already holds a run ({LAST_NAME}); pass --resume "
                         f"{run.path} to continue it or choose another --out")
    _check_color_jitter(config)
    data_dir = config["data_dir"] = str(Path(config["data_dir"] or default_data_dir()).resolve())
    train_split = load_split(data_dir, train=True).subset(config["train_subset"]).to(device)
    test_split = load_split(data_dir, train=False).subset(config["test_subset"]).to(device)
    classes = load_classes(batches_dir(data_dir))
    _check_shards(len(train_split.labels), config["batch_size"], world)
    _check_early_crops(config, train_split.images.shape[-1])
    say = (lambda message: None) if quiet or not world.is_main else tqdm.write

    torch.manual_seed(config["seed"])
    steps_per_epoch = math.ceil(len(train_split.labels) / config["batch_size"])
    engine = _engine_type(config)(config, steps_per_epoch, device, world)
    if config["precision"] == "auto":
        every = " on every process" if world.size > 1 else ""
        say(f"precision auto: {engine.precision}" + ("" if engine.precision == "bf16" else
            f" (bf16 autocast needs bf16 kernels{every}: a GPU, or a CPU with AVX-512)"))
    if state is None:
        engine.prepare(normalize(train_split.images[:WHITENING_IMAGES]))
        if world.is_main:
            run.create(config)
        rows: list[dict[str, Any]] = []
    else:
        engine.load_state_dict(state)
        torch.set_rng_state(state["rng"]["torch"])
        rows = run.read_metrics()[:state["epoch"]] if world.is_main else [{}] * state["epoch"]
        if world.is_main:
            run.write_metrics(rows)
        was = state.get("world_size", 1)
        say(f"resuming {run.path} after epoch {state['epoch']} with {world.size} "
            f"process{'es' if world.size > 1 else ''} (the run had {was})")

    final_levels = tuple(dict.fromkeys((0, config["tta_level"])))  # one pass gives both
    results = None
    for epoch in range(len(rows), config["epochs"]):
        start = time.perf_counter()
        lr = engine.lr
        train_loss, train_acc = _run_epoch(engine, train_split, epoch, world, quiet)
        seconds = time.perf_counter() - start
        every, last = config["eval_every"], epoch + 1 == config["epochs"]
        results = _evaluate(engine, test_split, final_levels if last else (0,), world) \
            if last or (every and (epoch + 1) % every == 0) else None
        result = results[0] if results else None
        rows.append({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                     "train_acc": train_acc, "test_loss": result.loss if result else "",
                     "test_acc": result.accuracy if result else "", "epoch_seconds": seconds})
        if world.is_main:
            run.write_metrics(rows)
            run.save_last({**engine.state_dict(), "config": config, "epoch": epoch + 1,
                           "rng": {"torch": torch.get_rng_state()}, "classes": classes,
                           "world_size": world.size})
        say(f"epoch {epoch + 1}: train_loss {train_loss:.4f} train_acc {train_acc:.4f}"
            + (f" test_acc {result.accuracy:.4f}" if result else "") + f" ({seconds:.1f}s)")

    if results is None:  # resumed after the last epoch
        results = _evaluate(engine, test_split, final_levels, world)
    result, tta = results[0], results[config["tta_level"]]
    if world.is_main:
        engine.save_model(run, classes)
    summary = {
        "test_accuracy": result.accuracy, "test_accuracy_tta": tta.accuracy,
        "test_loss": result.loss, "tta_level": config["tta_level"], "epochs": config["epochs"],
        "train_seconds": sum(float(r["epoch_seconds"]) for r in rows if r),
        "wall_seconds": time.perf_counter() - wall_start,
        "cpu_seconds": time.process_time() - cpu_start, "preset": config["preset"],
        "params": engine.num_parameters(), "seed": config["seed"],
        "precision": engine.precision,
        "device": str(device), "threads": torch.get_num_threads(),
        "world_size": world.size,
        "n_train": len(train_split.labels), "n_test": len(test_split.labels),
        "resumed": state is not None,
    }
    if world.is_main:
        run.write_summary(summary)
    world.barrier()
    return summary
