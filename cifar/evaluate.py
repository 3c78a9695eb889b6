"""Evaluation with optional test-time augmentation (flip and one-pixel translate views)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifar.data import Split
from cifar.pipeline import eval_batches


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for `precision` "bf16"; a no-op for "fp32"."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _mirror_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (model(x) + model(x.flip(3)))


def tta_logits(model: nn.Module, x: torch.Tensor, level: int) -> torch.Tensor:
    """Logits averaged over views: 0 plain, 1 plus mirror, 2 plus mirrored 1-pixel shifts."""
    if level == 0:
        return model(x)
    logits = _mirror_logits(model, x)
    if level == 1:
        return logits
    padded = F.pad(x, (1,) * 4, mode="reflect")
    h, w = x.shape[2:]
    shifted = [padded[:, :, :h, :w], padded[:, :, 2:, 2:]]
    return 0.5 * logits + 0.25 * sum(_mirror_logits(model, s) for s in shifted)


@dataclass
class EvalResult:
    """Mean loss, accuracy (fraction) and predicted class of every example."""

    loss: float
    accuracy: float
    predictions: torch.Tensor


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, tta_level: int, batch_size: int,
                   precision: str = "fp32", channels_last: bool = False) -> torch.Tensor:
    """Float32 logits for uint8 `images`, evaluated in eval mode, batch by batch."""
    was_training = model.training
    model.eval()
    anchor = next(model.parameters(), None)  # a PyNet model behind a torch facade has none
    device = anchor.device if anchor is not None else torch.device("cpu")
    outputs = []
    for x in eval_batches(images.to(device), batch_size, channels_last):
        with autocast(device, precision):
            outputs.append(tta_logits(model, x, tta_level).float())
    model.train(was_training)
    return torch.cat(outputs)


def evaluate(model: nn.Module, split: Split, tta_level: int = 0, batch_size: int = 1000,
             precision: str = "fp32", channels_last: bool = False) -> EvalResult:
    """Loss and accuracy of `model` on `split`."""
    logits = predict_logits(model, split.images, tta_level, batch_size, precision, channels_last)
    labels = split.labels.to(logits.device)
    predictions = logits.argmax(1)
    return EvalResult(loss=float(F.cross_entropy(logits, labels)),
                      accuracy=int((predictions == labels).sum()) / len(labels),
                      predictions=predictions.cpu())
