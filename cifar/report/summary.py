"""Section 1, the report's first page: the headline result, the summary table with the source
of every value, and the learning curves."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from cifar.checkpoint import MODEL_NAME
from cifar.report.architecture import format_flops
from cifar.report.collect import RunData, TestEvaluation
from cifar.report.document import Block, Figure, Headline, Notice, Paragraph, Table
from cifar.report.figures import ACCURACY_BAR
from cifar.report.narrative import duration
from cifar.report.training import TTA_VIEWS

if TYPE_CHECKING:
    from cifar.report.content import ReportInputs

LAST_EPOCH_MODEL = "the model after the last epoch"
UNKNOWN = ("unknown", "")


class WallClock(NamedTuple):
    """The run's duration: total seconds (None when unknown), seconds in training epochs."""

    total: float | None
    training: float
    source: str


class Accuracy(NamedTuple):
    """A test accuracy, where the number comes from, and which weights it measures."""

    value: float
    source: str
    model: str


def pct(value: float) -> str:
    """A fraction as a percentage with two decimals: 0.8766 -> '87.66%'."""
    return f"{100 * value:.2f}%"


def _recomputed(evaluation: TestEvaluation) -> tuple[str, str]:
    """(source, weights) of an accuracy from the checkpoint evaluated at report time."""
    weights = (LAST_EPOCH_MODEL if evaluation.checkpoint.name == MODEL_NAME
               else "the model after the last completed epoch")
    return f"recomputed now from {evaluation.checkpoint.name}", weights


def final_accuracy(inputs: ReportInputs) -> tuple[Accuracy | None, Accuracy | None]:
    """(accuracy, TTA accuracy) of the run's final model, each None when unknown: from
    summary.json, else the checkpoint evaluated now, else metrics.csv's last tested epoch."""
    summary, evaluation = inputs.run.summary or {}, inputs.evaluation
    plain = tta = None
    if summary.get("test_accuracy") is not None:
        plain = Accuracy(summary["test_accuracy"], "summary.json", LAST_EPOCH_MODEL)
    elif evaluation is not None:
        plain = Accuracy(evaluation.accuracy, *_recomputed(evaluation))
    else:
        tested = [r for r in inputs.run.metrics if r.get("test_acc") is not None]
        if tested:
            epoch = f"{tested[-1]['epoch']:.0f}"
            plain = Accuracy(tested[-1]["test_acc"], f"metrics.csv, epoch {epoch}",
                             f"the model after epoch {epoch}")
    if summary.get("test_accuracy_tta") is not None:
        tta = Accuracy(summary["test_accuracy_tta"], "summary.json", LAST_EPOCH_MODEL)
    elif evaluation is not None and evaluation.tta_accuracy is not None:
        tta = Accuracy(evaluation.tta_accuracy, *_recomputed(evaluation))
    return plain, tta


def _bar(value: float) -> str:
    gap = 100 * (value - ACCURACY_BAR)
    return f"{pct(value)}: {'above' if gap >= 0 else 'BELOW'} the 70% bar by {abs(gap):.2f} pts"


# ---- facts shown both in the headline and in the table: (value, source) ----------------------

def _epochs(run: RunData) -> tuple[str, str]:
    planned = (run.config or {}).get("epochs", (run.summary or {}).get("epochs"))
    if run.epochs_done is not None:
        done, source = run.epochs_done
        return f"{done} of {planned or '?'} completed", source
    if planned is not None:
        return f"{planned} planned, completed unknown", "config"
    return UNKNOWN


def _wall_clock(run: RunData) -> WallClock | None:
    summary = run.summary or {}
    if summary.get("wall_seconds") is not None:
        return WallClock(summary["wall_seconds"], summary.get("train_seconds", 0), "summary.json")
    if run.metrics:
        return WallClock(None, sum(r.get("epoch_seconds") or 0 for r in run.metrics),
                         "metrics.csv")
    return None


def _device(run: RunData) -> tuple[str, str]:
    summary, config = run.summary or {}, run.config or {}
    if summary.get("device"):
        threads, processes = summary.get("threads"), summary.get("world_size", 1)
        return (f"{summary['device']}, {processes} process{'es' * (processes != 1)} × "
                f"{threads} thread{'s' * (threads != 1)}", "summary.json")
    if "device" in config:
        threads = config.get("threads")
        requested = f"{threads} thread{'s' * (threads != 1)}" if threads else "default threads"
        return f"{config['device']}, {requested} requested", "config"
    return UNKNOWN


def _engine(run: RunData) -> tuple[str, str]:
    if not run.config:
        return UNKNOWN
    if run.config.get("engine", "torch") == "pynet":
        return f"PyNet, {run.config.get('backend', '?')} backend", run.config_source or ""
    return "PyTorch", run.config_source or ""


def _preset(run: RunData) -> tuple[str, str]:
    if (run.config or {}).get("preset"):
        return str(run.config["preset"]), run.config_source or ""
    if (run.summary or {}).get("preset"):
        return str(run.summary["preset"]), "summary.json"
    return UNKNOWN


# ---- the three parts of page 1 --------------------------------------------------------------

def headline(inputs: ReportInputs) -> Headline:
    """The final test accuracy against the 70% bar; its TTA accuracy and the run's facts."""
    plain, tta = final_accuracy(inputs)
    result = f"Test accuracy {_bar(plain.value) if plain else 'unknown'}."
    if plain:
        both = ", without and with test-time augmentation (TTA)" if tta else ""
        sources = plain.source + (f"; with TTA: {tta.source}" if tta and
                                  tta.source != plain.source else "")
        note = (f"Accuracy of {plain.model} on the test set{both}; the 70% bar applies to the "
                f"accuracy without TTA. Source: {sources}.")
    else:
        note = ("Neither summary.json, a test-set evaluation of the checkpoint nor a tested "
                "epoch in metrics.csv gives the test accuracy.")
    seconds = _wall_clock(inputs.run)
    if seconds is None:
        wall = UNKNOWN[0]
    elif seconds.total is None:
        wall = f"{duration(seconds.training)} in training epochs"
    else:
        wall = duration(seconds.total)
    facts = [("With TTA", pct(tta.value) if tta else UNKNOWN[0]),
             ("Epochs", _epochs(inputs.run)[0]), ("Wall-clock", wall),
             ("Preset", _preset(inputs.run)[0]), ("Engine", _engine(inputs.run)[0]),
             ("Device, processes × threads", _device(inputs.run)[0])]
    return Headline(result, facts, note, plain.value >= ACCURACY_BAR if plain else None)


def summary_table(inputs: ReportInputs) -> Table:
    """Every headline value and more, each with the file or computation it comes from."""
    run, arch = inputs.run, inputs.architecture
    config, summary = run.config or {}, run.summary or {}
    plain, tta = final_accuracy(inputs)
    level = summary.get("tta_level", config.get("tta_level"))
    rows = [["Test accuracy, no TTA", *((_bar(plain.value), plain.source) if plain else UNKNOWN)],
            ["Test accuracy, TTA" + (f" level {level}" if level is not None else ""),
             *((_bar(tta.value), tta.source) if tta else UNKNOWN)]]
    if level is not None:
        rows[1][2] = (rows[1][2] + "; " if rows[1][2] else "") + TTA_VIEWS.get(level, "")
    rows.append(["Epochs", *_epochs(run)])
    seconds = _wall_clock(run)
    if seconds is None:
        rows.append(["Wall-clock", *UNKNOWN])
    elif seconds.total is None:
        rows.append(["Wall-clock", f"{duration(seconds.training)} in training epochs (total "
                     f"unknown)", seconds.source])
    else:
        rows.append(["Wall-clock", f"{duration(seconds.total)} total, "
                     f"{duration(seconds.training)} in training epochs", seconds.source])
    rows += [["Device, processes × threads", *_device(run)], ["Preset", *_preset(run)],
             ["Engine", *_engine(run)]]
    if arch is not None:
        rows.append(["Parameters", f"{arch.params:,} ({arch.trainable:,} trainable)",
                     "counted from the model"])
        rows.append(["FLOPs per image", format_flops(arch.flops), "forward; see section 2"])
    else:
        rows.append(["Parameters", f"{summary['params']:,}" if summary.get("params") else
                     "unknown", "summary.json" if summary.get("params") else ""])
    if summary.get("n_test"):
        rows.append(["Images", f"{summary.get('n_train', 0):,} train, {summary['n_test']:,} "
                     f"test", "summary.json"])
    return Table(["Item", "Value", "Source"], rows, [35, 50, 31], "LLL", 9)


def first_page(inputs: ReportInputs) -> list[Block]:
    """Section 1 below its heading: the headline, what is missing from the run, the table and
    the learning curves, which fit on the first page."""
    blocks: list[Block] = [headline(inputs)]
    if inputs.missing:
        blocks.append(Notice("Missing from this run, and what the report leaves out:",
                             inputs.missing))
    blocks.append(summary_table(inputs))
    if "curves" in inputs.figures:
        blocks.append(Figure(inputs.figures["curves"]))
    else:
        blocks.append(Paragraph("No learning curves: metrics.csv is missing or empty, so there "
                                "are no per-epoch loss and accuracy curves."))
    return blocks
