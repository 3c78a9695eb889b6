"""`python -m cifar report RUN_DIR`: collect, draw, and write report.md and report.pdf."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cifar.errors import CifarError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cifar.report.content import ReportInputs

DEFAULT_BENCH_JSON = Path("bench") / "results.json"


@dataclass
class ReportFiles:
    """What `build_report` wrote, and what it found missing."""

    pdf: Path
    markdown: Path
    figures: list[Path]
    pages: int
    missing: list[str]


def curves_caption(metrics: list[dict[str, Any]]) -> str:
    """The learning curves' caption, saying after which epochs the test set was evaluated."""
    tested = [int(row["epoch"]) for row in metrics if row.get("test_acc") is not None]
    if len(tested) == len(metrics):
        when = "the model after each epoch"
    elif tested:
        epochs = ", ".join(map(str, tested))
        when = (f"the model after epoch{'s' * (len(tested) > 1)} {epochs} only (the run's "
                f"eval_every)")
    else:
        when = "none (the run evaluated no epoch)"
    return (f"Learning curves. Test: {when}, without TTA; dashed: the 70% bar. Train: the "
            "running mean over each epoch's augmented batches. The legends give each curve's "
            "last value.")

FIGURE_NAMES = ("curves", "lr", "confusion", "per_class", "misclassified")


def _draw_figures(inputs: ReportInputs, folder: Path) -> None:
    """Draw every figure the inputs allow into `folder` (dropping stale ones from an earlier
    report) and record them in `inputs.figures`."""
    import matplotlib

    from cifar.report import figures as fig

    for name in FIGURE_NAMES:
        (folder / f"{name}.png").unlink(missing_ok=True)
    with matplotlib.rc_context(fig.STYLE):
        for name, figure, caption in _figure_list(inputs):
            inputs.figures[name] = fig.save(figure, folder, name, caption)


def _figure_list(inputs: ReportInputs) -> list[tuple[str, Figure, str]]:
    """(name, figure, caption) of every figure that the collected inputs allow."""
    from cifar.report import figures as fig

    run, evaluation = inputs.run, inputs.evaluation
    drawn = []
    if any(r.get("train_loss") is not None for r in run.metrics):
        drawn.append(("curves", fig.curves_figure(run.metrics),
                       curves_caption(run.metrics)))
    if inputs.lr is not None:
        what = "optimiser steps" if inputs.lr.per_step else "epochs"
        drawn.append(("lr", fig.lr_figure(inputs.lr, run.metrics),
                      f"Learning rate over {what}: {inputs.lr.source}."))
    if evaluation is not None:
        drawn += [("confusion", fig.confusion_figure(evaluation),
                   "Confusion matrix, normalised per true class (no TTA)."),
                  ("per_class", fig.per_class_figure(evaluation),
                   "Test accuracy per class (no TTA).")]
        grid = fig.misclassified_figure(evaluation)
        if grid is not None:
            drawn.append(("misclassified", grid, "The most confidently misclassified test "
                          "images, with true and predicted class and the softmax probability "
                          "of the prediction (no TTA)."))
    return drawn


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 data_dir: str | None = None, check_json: str | os.PathLike | None = None,
                 bench_json: str | os.PathLike | None = None, run_check: bool = True,
                 log: Callable[[str], None] | None = None) -> ReportFiles:
    """Write the PDF (default RUN_DIR/report.pdf), the Markdown beside it and its PNG figures
    in `<pdf stem>-figures/`. Missing run files are stated in the report, not raised."""
    from cifar.report import collect
    from cifar.report.architecture import describe_config
    from cifar.report.content import ReportInputs, build_blocks
    from cifar.report.document import to_markdown, write_pdf
    from cifar.report.training import lr_curve

    log = log or (lambda message: None)
    run_path = Path(run_dir)
    if not run_path.is_dir():
        raise CifarError(f"RUN_DIR {run_path}: expected a run directory, got "
                         f"{'a file' if run_path.exists() else 'nothing there'}")
    pdf_path = Path(out) if out else run_path / "report.pdf"
    if pdf_path.suffix.lower() != ".pdf":
        raise CifarError(f"--out {pdf_path}: expected a file name ending in .pdf")
    check = collect.load_check_json(check_json) if check_json else None
    bench_path = Path(bench_json) if bench_json else DEFAULT_BENCH_JSON
    bench = collect.load_bench_json(bench_path) if bench_json else None

    run = collect.read_run(run_path)
    inputs = ReportInputs(run, missing=list(run.missing))
    if run.config and isinstance(run.config.get("model"), dict):
        try:
            inputs.architecture = describe_config(run.config["model"])
        except (CifarError, TypeError, KeyError, ValueError, RuntimeError) as exc:
            inputs.missing.append(f"The model in the config could not be built ({exc}): no "
                                  f"layer table or FLOP count.")
    inputs.lr = lr_curve(run.config, run.summary, run.metrics)
    if run.checkpoint is not None:
        log(f"evaluating {run.checkpoint.name} on the test set")
    needs_tta = run.summary is None or run.summary.get("test_accuracy_tta") is None
    inputs.evaluation = collect.evaluate_checkpoint(run, data_dir, inputs.missing, needs_tta)
    if check is None and run_check:
        log("running pynet-check (about 20 s)")
        check = collect.run_check_now()
    if check is None:
        inputs.missing.append("PyNet checker results: not run (--no-run-check) and no "
                              "--check-json given.")
    if bench is None and bench_path.is_file():
        try:
            bench = collect.load_bench_json(bench_path)
        except collect.ReportError as exc:
            inputs.missing.append(f"Benchmark results unusable: {exc}.")
    elif bench is None:
        inputs.missing.append(f"Benchmark results: {bench_path} does not exist (run the "
                              f"benchmarks and `python -m bench.report`, or pass --bench-json).")
    inputs.check, inputs.bench = check, bench

    _draw_figures(inputs, pdf_path.parent / f"{pdf_path.stem}-figures")
    blocks = build_blocks(inputs)
    markdown = pdf_path.with_suffix(".md")
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(to_markdown(blocks, markdown.parent))
    pages = write_pdf(blocks, pdf_path, blocks[0].text)
    return ReportFiles(pdf_path, markdown, [f.path for f in inputs.figures.values()], pages,
                       inputs.missing)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="PDF to write; report.md and the "
              "figures go beside it. [default: RUN_DIR/report.pdf]")
@click.option("--data-dir", help="Folder holding cifar-10-batches-py/ (or that folder), for the "
              "test-set figures. [default: the run's data_dir, $CIFAR10_DIR or ../shared/cifar10]")
@click.option("--check-json", type=click.Path(exists=True, dir_okay=False),
              help="Saved `pynet-check --json` results to show instead of running the checker.")
@click.option("--bench-json", type=click.Path(exists=True, dir_okay=False),
              help=f"Benchmark results JSON. [default: {DEFAULT_BENCH_JSON} if it exists]")
@click.option("--run-check/--no-run-check", default=True, show_default=True,
              help="Run pynet-check now (about 20 s) when no --check-json is given.")
def report(run_dir: str, out: str | None, data_dir: str | None, check_json: str | None,
           bench_json: str | None, run_check: bool) -> None:
    """Write RUN_DIR/report.pdf and report.md (with PNG figures) describing a training run."""
    try:
        files = build_report(run_dir, out, data_dir, check_json, bench_json, run_check,
                             log=lambda message: click.echo(f"report: {message}", err=True))
    except (CifarError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for item in files.missing:
        click.echo(f"report: missing: {item}", err=True)
    click.echo(f"wrote {files.pdf} ({files.pages} pages), {files.markdown} and "
               f"{len(files.figures)} figures")
