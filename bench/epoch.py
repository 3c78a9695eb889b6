"""``python -m bench.epoch``: wall-clock of one training epoch, PyTorch vs PyNet, side by side.

Trains the same preset architecture for one epoch with each engine in turn, in this process,
with the same thread count, and prints the epoch time (training only: `epoch_seconds` in
metrics.csv, evaluation excluded), its ratio to PyTorch fp32, and the ratio to the preset's
own PyTorch precision (bf16 autocast where the CPU has bf16 kernels, and channels_last, for
the airnet presets).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import torch

from cifar.evaluate import resolve_precision
from cifar.presets import PRESETS, resolve_config
from cifar.train import train

ENGINES = {
    "torch (preset precision)": {},
    "torch fp32": {"precision": "fp32", "channels_last": False},
    "pynet numba": {"engine": "pynet", "backend": "numba"},
    "pynet numpy": {"engine": "pynet", "backend": "numpy"},
}


def epoch_seconds(preset: str, overrides: dict, common: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve_config(preset, **common, **overrides)
        return train(config, out=Path(tmp) / "run", quiet=True)["train_seconds"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="fast", show_default=True)
@click.option("--data-dir", help="Folder holding cifar-10-batches-py/.")
@click.option("--train-subset", type=click.IntRange(1),
              help="Images per epoch. [default: all 50,000]")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--engines", default=",".join(ENGINES), show_default=True,
              help="Comma-separated engines to time, from the list above.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the timings as JSON here.")
def main(preset: str, data_dir: str | None, train_subset: int | None, threads: int,
         engines: str, out: Path | None) -> None:
    """Time one epoch of PRESET with each engine."""
    common = {"epochs": 1, "threads": threads, "data_dir": data_dir,
              "train_subset": train_subset, "test_subset": 1000, "device": "cpu"}
    names = [name.strip() for name in engines.split(",")]
    unknown = sorted(set(names) - set(ENGINES))
    if unknown:
        raise click.BadParameter(f"unknown engines {unknown}; choose from {list(ENGINES)}",
                                 param_hint="--engines")
    seconds = {name: epoch_seconds(preset, ENGINES[name], common) for name in names}
    precision = resolve_precision(PRESETS[preset]["precision"], torch.device("cpu"))
    click.echo(f"| engine | epoch (s) | × torch fp32 | × torch ({precision}) |"
               "\n|---|---|---|---|")
    fp32, native = seconds.get("torch fp32"), seconds.get("torch (preset precision)")
    for name, value in seconds.items():
        ratios = [f"{value / base:.2f}" if base else "–" for base in (fp32, native)]
        click.echo(f"| {name} | {value:.1f} | {ratios[0]} | {ratios[1]} |")
    if out:
        out.write_text(json.dumps({"preset": preset, "threads": threads,
                                   "train_subset": train_subset, "seconds": seconds},
                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
