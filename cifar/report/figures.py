"""The report's matplotlib figures, drawn without pyplot (no GUI backend) and saved as PNG.

Figures are drawn at the size they take on an A4 page (at most 6.5 in wide), so their 8-9 pt
fonts stay readable when the PDF places them unscaled. Draw and save them inside
`matplotlib.rc_context(STYLE)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cifar.report.collect import TestEvaluation
from cifar.report.training import LrCurve

DPI = 200
WIDTH_IN = 6.5
ACCURACY_BAR = 0.70
STYLE = {"font.size": 8.5, "axes.titlesize": 9.5, "axes.labelsize": 8.5, "legend.fontsize": 8,
         "xtick.labelsize": 8, "ytick.labelsize": 8}


@dataclass
class FigureFile:
    """A saved PNG with its caption and its width on the page in inches."""

    name: str
    path: Path
    caption: str
    width_in: float


def _new(height_in: float, width_in: float = WIDTH_IN) -> Figure:
    return Figure(figsize=(width_in, height_in), layout="constrained")


def _column(metrics: list[dict[str, float | None]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(r["epoch"], r[key]) for r in metrics if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _epoch_axis(ax: Axes, epochs: list[float]) -> None:
    ax.set_xlabel("epoch")
    if len(epochs) <= 20:
        ax.set_xticks(sorted(set(int(e) for e in epochs)))
    ax.grid(alpha=0.3)


def _train_and_test_curves(ax: Axes, metrics: list[dict[str, float | None]], quantity: str,
                           scale: float = 1.0, last: str = "{:.3f}") -> None:
    """Plot train_<quantity> and test_<quantity> per epoch (test where evaluated) on `ax`;
    each legend entry gives the split's last value, formatted by `last`."""
    for split, style in (("train", "o-"), ("test", "s-")):
        x, y = _column(metrics, f"{split}_{quantity}")
        if x:
            ax.plot(x, [scale * v for v in y], style, ms=3,
                    label=f"{split} (epoch {x[-1]:.0f}: {last.format(scale * y[-1])})")
    _epoch_axis(ax, [r["epoch"] for r in metrics])


def curves_figure(metrics: list[dict[str, float | None]]) -> Figure:
    """The learning curves side by side: train and test accuracy per epoch in percent against
    the 70% bar, and train and test loss."""
    fig = _new(2.3)
    accuracy, loss = fig.subplots(1, 2)
    _train_and_test_curves(accuracy, metrics, "acc", scale=100, last="{:.2f}%")
    accuracy.axhline(100 * ACCURACY_BAR, color="tab:red", ls="--", lw=1, label="70% bar")
    accuracy.set_ylabel("accuracy (%)")
    accuracy.set_title("Accuracy per epoch")
    accuracy.legend(loc="best")
    _train_and_test_curves(loss, metrics, "loss")
    loss.set_ylabel("cross-entropy loss")
    loss.set_title("Loss per epoch")
    loss.legend(loc="upper right")
    return fig


def lr_figure(curve: LrCurve, metrics: list[dict[str, float | None]]) -> Figure:
    """LR per optimiser step, with metrics.csv's per-epoch values marked; or per epoch."""
    fig = _new(2.0)
    ax = fig.add_subplot()
    if curve.per_step:
        ax.plot(curve.steps, curve.lrs, lw=1.5, label="rebuilt per step")
        logged = [((r["epoch"] - 1) * curve.steps_per_epoch, r["lr"])
                  for r in metrics if r.get("lr") is not None]
        if logged:
            ax.plot(*zip(*logged, strict=True), "o", ms=3.5, mfc="none",
                    label="metrics.csv, start of each epoch")
        ax.set_xlabel(f"optimiser step ({curve.steps_per_epoch} per epoch)")
        ax.legend(loc="best")
    else:
        ax.plot(curve.steps, curve.lrs, "o-", ms=3.5)
        ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    ax.set_title("Learning rate of the main parameter group")
    return fig


def confusion_matrix(evaluation: TestEvaluation) -> np.ndarray:
    """10 × 10 counts: row = true class, column = predicted class."""
    n = len(evaluation.classes)
    predicted = evaluation.logits.argmax(1)
    flat = evaluation.labels * n + predicted
    return torch.bincount(flat, minlength=n * n).reshape(n, n).numpy()


def confusion_figure(evaluation: TestEvaluation) -> Figure:
    """Row-normalised confusion matrix in percent, with class names."""
    counts = confusion_matrix(evaluation)
    rates = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig = _new(5.2, 5.6)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=100)
    names = evaluation.classes
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), names)
    for (i, j), value in np.ndenumerate(rates):
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                color="white" if value > 55 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (% of each true class)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="% of true class")
    return fig


def per_class_figure(evaluation: TestEvaluation) -> Figure:
    """Accuracy per true class as bars, with the overall accuracy and the 70% bar."""
    counts = confusion_matrix(evaluation)
    accuracy = 100 * np.diag(counts) / np.maximum(counts.sum(1), 1)
    fig = _new(2.8)
    ax = fig.add_subplot()
    ax.bar(range(len(accuracy)), accuracy, color="tab:blue", zorder=2)
    for i, value in enumerate(accuracy):  # inside tall bars, so no label meets the lines
        inside = value > 20
        ax.text(i, value - 2 if inside else value + 2, f"{value:.1f}", ha="center",
                va="top" if inside else "bottom", fontsize=7, zorder=3,
                color="white" if inside else "black")
    ax.axhline(100 * evaluation.accuracy, color="black", lw=1, zorder=1,
               label=f"overall {100 * evaluation.accuracy:.1f}%")
    ax.axhline(100 * ACCURACY_BAR, color="tab:red", ls="--", lw=1, zorder=1, label="70% bar")
    ax.set_xticks(range(len(accuracy)), evaluation.classes, rotation=30, ha="right")
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Test accuracy per class")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def misclassified_figure(evaluation: TestEvaluation, count: int = 20,
                         columns: int = 5) -> Figure | None:
    """The `count` wrong predictions made with the highest softmax probability."""
    probabilities = evaluation.logits.float().softmax(1)
    confidence, predicted = probabilities.max(1)
    wrong = (predicted != evaluation.labels).nonzero().flatten()
    if len(wrong) == 0:
        return None
    order = wrong[confidence[wrong].argsort(descending=True)][:count]
    rows = -(-len(order) // columns)
    fig = _new(1.6 * rows + 0.3, 6.0)
    for k, index in enumerate(order.tolist()):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(evaluation.images[index].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_axis_off()
        true, guess = (evaluation.classes[int(evaluation.labels[index])],
                       evaluation.classes[int(predicted[index])])
        ax.set_title(f"true: {true}\npred: {guess} ({100 * confidence[index]:.0f}%)",
                     fontsize=7, linespacing=1.2)
    fig.suptitle("Most confidently misclassified test images", fontsize=9.5)
    return fig


def save(fig: Figure, folder: Path, name: str, caption: str) -> FigureFile:
    """Write `fig` as folder/name.png."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    return FigureFile(name, path, caption, fig.get_figwidth())
