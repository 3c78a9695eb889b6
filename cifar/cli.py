"""The `python -m cifar` command line: train, test, predict, export-pynet and report."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from backends import BACKENDS
from backends.conv_dispatch import ALGORITHMS
from cifar.checkpoint import load_model, resolve_checkpoint
from cifar.data import batches_dir, default_data_dir, load_classes, load_split
from cifar.engine import resolve_device
from cifar.errors import CifarError
from cifar.evaluate import PRECISIONS, evaluate, predict_logits, resolve_precision
from cifar.pipeline import MAX_SEED
from cifar.presets import PRESETS, resolve_config
from cifar.report import report
from cifar.train import train as run_training

DATA_DIR_HELP = ("Folder holding cifar-10-batches-py/ (or that folder). "
                 "[default: $CIFAR10_DIR or ./data]")


def _one_line_errors(command: Callable) -> Callable:
    """Turn the package's expected errors into click's one-line 'Error: ...' exit."""
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (CifarError, ValueError, KeyError) as exc:
            raise click.ClickException(str(exc).strip("'\"")) from None
    return wrapper


@click.group()
def main() -> None:
    """CIFAR-10 with PyTorch (or PyNet): train, test, predict, export to PyNet, write the report."""


@main.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="fast", show_default=True,
              help="Model and recipe.")
@click.option("--epochs", type=click.IntRange(1),
              help="Number of epochs. [default: the preset's]")
@click.option("--batch-size", type=click.IntRange(1),
              help="Training batch size. [default: the preset's]")
@click.option("--data-dir", help=DATA_DIR_HELP)
@click.option("--out", type=click.Path(file_okay=False), help="Run directory. "
              "[default: runs/PRESET-sSEED-TIME]")
@click.option("--seed", type=click.IntRange(-MAX_SEED, MAX_SEED), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--threads", type=click.IntRange(1), help="torch.set_num_threads (and PyNet's "
              "threads with --engine pynet: backends.set_num_threads). [default: torch's]")
@click.option("--engine", type=click.Choice(["torch", "pynet"]), help="Train with PyTorch or "
              "with PyNet layers (NumPy/numba, CPU, float32). [default: torch]")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="PyNet backend for --engine pynet. [default: numba]")
@click.option("--conv-algorithm", type=click.Choice(ALGORITHMS), help="PyNet's convolution "
              "algorithm for --engine pynet (backends.set_conv_algorithm). [default: auto]")
@click.option("--resume", type=click.Path(exists=True), help="Run directory or last.pt to resume.")
@click.option("--train-subset", type=click.IntRange(1),
              help="Train on the first N training images only.")
@click.option("--test-subset", type=click.IntRange(1),
              help="Evaluate on the first N test images only.")
@click.option("--eval-every", type=click.IntRange(0),
              help="Evaluate the test set every N epochs (0: last only).")
@click.option("--precision", type=click.Choice(PRECISIONS), help="auto: bf16 autocast where "
              "the device has bf16 kernels (a GPU, an AVX-512 CPU), else fp32. "
              "[default: the preset's]")
@click.option("--channels-last/--no-channels-last", default=None, help="[default: the preset's]")
@click.option("--compile/--no-compile", "compile_model", default=None,
              help="torch.compile the model. [default: the preset's]")
@click.option("--sync-bn/--no-sync-bn", default=None, help="Synchronise BatchNorm statistics "
              "across processes under torchrun (torch's SyncBatchNorm: CUDA only). "
              "[default: per-process statistics, as DDP]")
@click.option("--dist-timeout", type=click.FloatRange(min=0, min_open=True),
              help="Seconds a process waits for the others "
              "(forming the group, each collective) before it stops. [default: 300]")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Change any config entry, nested ones by dotted key; VALUE is JSON "
              "(repeatable): --set muon.lr=0.16 --set model.widths=[56,160,160] "
              "--set lookahead=null. Applied after the other options.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@_one_line_errors
def train(preset: str, out: str | None, resume: str | None, quiet: bool, compile_model: bool,
          settings: tuple[str, ...], **overrides: Any) -> None:
    """Train a model and write its run directory.

    Runs unchanged under torchrun (`torchrun --standalone --nproc-per-node N -m cifar train
    ...`): --batch-size stays the global batch, rank 0 writes the run directory."""
    if resume is not None and settings:
        raise click.UsageError("--set: a resumed run keeps the recipe in its config.json; "
                               "drop --set, or start a new run")
    config = resolve_config(preset, settings, compile=compile_model, **overrides)
    if out is None and resume is None:
        out = f"runs/{preset}-s{config['seed']}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = run_training(config, out=out, resume=resume, quiet=quiet)
    if int(os.environ.get("RANK", 0)) != 0:
        return
    processes = f" x {summary['world_size']} processes" if summary["world_size"] > 1 else ""
    click.echo(f"{summary['preset']} seed {summary['seed']}: test_accuracy "
               f"{summary['test_accuracy']:.4f} (TTA {summary['test_accuracy_tta']:.4f}) after "
               f"{summary['epochs']} epochs{processes}; train "
               f"{summary['train_seconds']:.0f}s, wall "
               f"{summary['wall_seconds']:.0f}s; {summary['params']} params; "
               f"run {Path(resume or out)}")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--data-dir", help=DATA_DIR_HELP)
@click.option("--tta/--no-tta", default=False, show_default=True,
              help="Average over test-time-augmentation views: the checkpoint's for torch, "
              "mirror and 1-pixel shifts (level 2) for a PyNet file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (last line).")
@click.option("--save-predictions", type=click.Path(dir_okay=False),
              help="Write the predicted class of every test image as an int .npy.")
@click.option("--engine", type=click.Choice(["torch", "pynet"]), default="torch",
              show_default=True, help="torch: CHECKPOINT is a model.pt (or run directory); "
              "pynet: CHECKPOINT is a PyNet .npz from export-pynet, run without torch layers.")
@click.option("--backend", type=click.Choice(BACKENDS), default="numba",
              show_default=True, help="PyNet backend for --engine pynet.")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="torch autocast precision (auto: bf16 where the device has bf16 kernels). "
              "[default: the checkpoint's]")
@click.option("--threads", type=click.IntRange(1), help="CPU threads (torch, numba and the BLAS).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@_one_line_errors
def test(checkpoint: str, data_dir: str | None, tta: bool, as_json: bool,
         save_predictions: str | None, engine: str, backend: str, precision: str | None,
         threads: int | None, device: str) -> None:
    """Evaluate CHECKPOINT on test_batch: a PyTorch checkpoint (model.pt, last.pt or a run
    directory) or, with --engine pynet, a PyNet model file (.npz)."""
    if threads:
        torch.set_num_threads(threads)
    split = load_split(data_dir or default_data_dir(), train=False)
    start = time.perf_counter()
    if engine == "pynet":
        model, level, batch_size = _pynet_model(checkpoint, backend, threads), 2, 500
        precision, channels_last = "fp32", False
    else:
        if Path(checkpoint).suffix == ".npz":
            raise CifarError(f"{checkpoint}: a PyNet model file; pass --engine pynet")
        target = resolve_device(device)
        loaded = load_model(checkpoint, target)
        cfg = loaded.config
        model, level, batch_size = loaded.model, cfg["tta_level"], cfg["eval_batch_size"]
        precision = resolve_precision(precision or cfg["precision"], target)
        channels_last = cfg["channels_last"]
    result = evaluate(model, split, level if tta else 0, batch_size, precision, channels_last)
    seconds = time.perf_counter() - start
    if save_predictions:
        np.save(save_predictions, result.predictions.numpy().astype(np.int64))
    report = {"test_accuracy": result.accuracy, "n": len(split.labels),
              "test_loss": result.loss, "tta": tta, "engine": engine,
              "backend": backend if engine == "pynet" else None, "precision": precision,
              "seconds": seconds}
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"test_accuracy {result.accuracy:.4f} on {len(split.labels)} images "
                   f"(loss {result.loss:.4f}, TTA {'on' if tta else 'off'}, {engine}"
                   f"{'/' + backend if engine == 'pynet' else ''}, {precision}, "
                   f"{seconds:.1f}s)")


def _pynet_model(path: str, backend: str, threads: int | None) -> torch.nn.Module:
    """The PyNet model in `path`, behind the torch facade the evaluation code calls."""
    import backends
    from cifar.pynet.facade import TorchFacade

    backends.set_num_threads(threads or torch.get_num_threads())
    return TorchFacade(backends.get(backend).load(path).eval())


@main.command("export-pynet")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@_one_line_errors
def export_pynet(checkpoint: str, out: str) -> None:
    """Convert a PyTorch CHECKPOINT (model.pt, last.pt or a run directory) into the PyNet model
    file OUT (.npz): same layers and weights, the logit scale folded into the head. It loads
    with `backends.get(name).load(OUT)` and runs with NumPy and numba only."""
    import backends
    from cifar.pynet.convert import inference_model

    loaded = load_model(checkpoint, torch.device("cpu"))
    model = inference_model(loaded.model, backends.get("numpy"))
    model.save(out)
    click.echo(f"{out}: PyNet model, {len(model.state_dict())} arrays, "
               f"{sum(p.size for p in model.parameters())} parameters "
               f"(from {resolve_checkpoint(checkpoint)})")


def _read_image(path: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
    except (OSError, UnidentifiedImageError) as exc:
        message = f"{path}: expected a PNG or JPEG image, could not read it ({exc})"
        raise CifarError(message) from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--data-dir", help="Where batches.meta gives class names if the checkpoint lacks "
              "them. " + DATA_DIR_HELP)
@_one_line_errors
def predict(checkpoint: str, images: tuple[str, ...], device: str, data_dir: str | None) -> None:
    """Print the top-3 classes, with probabilities, for each image (any size, resized to 32x32)."""
    loaded = load_model(checkpoint, resolve_device(device))
    classes = loaded.classes or load_classes(batches_dir(data_dir or default_data_dir()))
    batch = torch.stack([_read_image(p) for p in images])
    cfg = loaded.config
    probabilities = predict_logits(loaded.model, batch, cfg["tta_level"], cfg["eval_batch_size"],
                                   cfg["precision"], cfg["channels_last"]).softmax(1)
    top = probabilities.topk(3, dim=1)
    for path, values, indices in zip(images, top.values, top.indices, strict=True):
        ranked = ", ".join(f"{classes[i]} {v:.3f}"
                           for v, i in zip(values.tolist(), indices.tolist(), strict=True))
        click.echo(f"{path}: {ranked}")


main.add_command(report)
