"""``python -m bench.interop RUN_DIR...``: does the exported PyNet model predict what the
PyTorch model predicts? For each run: export model.pt to PyNet, evaluate both on the whole
CIFAR-10 test set, and report accuracies, prediction agreement and time.

The PyTorch model is evaluated in float32 and in its run's precision (bf16 autocast for the
airnet presets where the CPU has bf16 kernels), so the table separates PyNet-vs-torch
differences from bf16 rounding.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import torch

import backends
from cifar.checkpoint import load_model
from cifar.data import default_data_dir, load_split
from cifar.evaluate import EvalResult, evaluate, resolve_precision
from cifar.pynet.convert import inference_model
from cifar.pynet.facade import TorchFacade


def _timed(model: torch.nn.Module, split, precision: str, channels_last: bool
           ) -> tuple[EvalResult, float]:
    start = time.perf_counter()
    result = evaluate(model, split, 0, 500, precision, channels_last)
    return result, time.perf_counter() - start


def compare(run: Path, split, backend: str) -> dict:
    """Accuracies and agreement of the torch model (fp32, run precision) and its PyNet export."""
    loaded = load_model(run, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.npz"
        inference_model(loaded.model, backends.get("numpy")).save(path)
        pynet = TorchFacade(backends.get(backend).load(path).eval())
    torch32, torch32_s = _timed(loaded.model, split, "fp32", False)
    precision = resolve_precision(loaded.config["precision"], torch.device("cpu"))
    native, native_s = _timed(loaded.model, split, precision, loaded.config["channels_last"])
    ours, ours_s = _timed(pynet, split, "fp32", False)
    return {"run": str(run), "backend": backend, "n": len(split.labels),
            "torch_fp32_acc": torch32.accuracy, "torch_run_precision": precision,
            "torch_run_precision_acc": native.accuracy, "pynet_acc": ours.accuracy,
            "agreement_vs_fp32": float((ours.predictions == torch32.predictions).float().mean()),
            "agreement_vs_run_precision":
                float((ours.predictions == native.predictions).float().mean()),
            "torch_fp32_vs_run_precision":
                float((torch32.predictions == native.predictions).float().mean()),
            "seconds": {"torch_fp32": torch32_s, "torch_run_precision": native_s,
                        "pynet": ours_s}}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data-dir", help="Folder holding cifar-10-batches-py/.")
@click.option("--backend", type=click.Choice(backends.BACKENDS), default="numba",
              show_default=True, help="PyNet backend (naive takes hours on the test set).")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the rows as JSON here.")
def main(runs: tuple[Path, ...], data_dir: str | None, backend: str, threads: int,
         out: Path | None) -> None:
    """Compare each RUN's model.pt with its PyNet export on the CIFAR-10 test set."""
    from bench.runner import set_threads

    set_threads(threads)
    split = load_split(data_dir or default_data_dir(), train=False)
    rows = [compare(run, split, backend) for run in runs]
    click.echo("| run | torch fp32 | torch (run precision) | PyNet | PyNet agrees with torch "
               "fp32 | PyNet agrees with torch (run precision) | torch fp32 agrees with torch "
               "(run precision) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        click.echo(f"| {Path(r['run']).name} | {r['torch_fp32_acc']:.2%} | "
                   f"{r['torch_run_precision_acc']:.2%} ({r['torch_run_precision']}) | "
                   f"{r['pynet_acc']:.2%} | {r['agreement_vs_fp32']:.2%} | "
                   f"{r['agreement_vs_run_precision']:.2%} | "
                   f"{r['torch_fp32_vs_run_precision']:.2%} |")
    if out:
        out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
