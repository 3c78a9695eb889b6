"""``python -m bench.scaleout``: one process x 2 threads against 2 processes x 1 thread.

Trains the preset for its full schedule with each engine, once as one process with
`--threads 2` and once under `torchrun --standalone --nproc-per-node 2` with `--threads 1`,
one run after another, and prints the mean epoch time (training only), its ratio, the final
accuracy (with TTA) and the wall-clock of each run. The run directories stay under --out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from cifar.presets import PRESETS

LAYOUTS = {"1x2": (1, 2), "2x1": (2, 1)}  # processes x threads per process


def run(engine: str, processes: int, threads: int, out: Path, common: list[str]) -> dict:
    """Train one run and return its summary, with the launcher's wall-clock."""
    train = ["-m", "cifar", "train", "--engine", engine, "--threads", str(threads),
             "--out", str(out), "--quiet", *common]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={processes}", *train]
    else:
        command = [sys.executable, *train]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    summary = json.loads((out / "summary.json").read_text())
    return {**summary, "launcher_wall_seconds": time.perf_counter() - started}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="fast", show_default=True)
@click.option("--data-dir", help="Folder holding cifar-10-batches-py/.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--engines", default="torch,pynet", show_default=True,
              help="Comma-separated engines: torch, pynet.")
@click.option("--epochs", type=click.IntRange(min=1), help="[default: the preset's]")
@click.option("--train-subset", type=click.IntRange(min=1), help="[default: all 50,000]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/scaleout"), show_default=True,
              help="Folder for the run directories and results.json.")
def main(preset: str, data_dir: str | None, seed: int, engines: str, epochs: int | None,
         train_subset: int | None, out: Path) -> None:
    """Time PRESET as 1 process x 2 threads and 2 processes x 1 thread, for each engine."""
    common = ["--preset", preset, "--seed", str(seed)]
    common += ["--data-dir", data_dir] if data_dir else []
    common += ["--epochs", str(epochs)] if epochs else []
    common += ["--train-subset", str(train_subset)] if train_subset else []
    results: dict[str, dict[str, dict]] = {}
    for engine in [e.strip() for e in engines.split(",")]:
        for layout, (processes, threads) in LAYOUTS.items():
            results.setdefault(engine, {})[layout] = run(
                engine, processes, threads, out / f"{engine}-{layout}-s{seed}", common)
    click.echo("| engine | layout | mean epoch (s) | speed-up | accuracy | with TTA | wall (s) |"
               "\n|---|---|---|---|---|---|---|")
    for engine, layouts in results.items():
        base = layouts["1x2"]["train_seconds"]
        for layout, summary in layouts.items():
            epoch = summary["train_seconds"] / summary["epochs"]
            click.echo(f"| {engine} | {layout} | {epoch:.1f} | "
                       f"{base / summary['train_seconds']:.2f}x | "
                       f"{summary['test_accuracy']:.2%} | {summary['test_accuracy_tta']:.2%} | "
                       f"{summary['launcher_wall_seconds']:.0f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
