"""Evaluation with optional test-time augmentation (flip and one-pixel translate views)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifar.data import Split
from cifar.pipeline import eval_batches

PRECISIONS = ("auto", "bf16", "fp32")


def has_bf16_kernels(device: torch.device) -> bool:
    """Whether `device` has fast bfloat16 kernels: a CUDA GPU that supports bf16, or a CPU
    with AVX-512, which oneDNN's bf16 kernels need. Elsewhere (an AVX2-only CPU) autocast
    falls back to reference kernels: a `fast` step ran 13x slower than in fp32 on a Zen 3."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to compute in: "auto" is "bf16" where `has_bf16_kernels(device)`, else
    "fp32"; "bf16" and "fp32" are kept as asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if has_bf16_kernels(device) else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context: bfloat16 autocast where `precision` resolves to "bf16"
    (`resolve_precision`), else a no-op."""
    enabled = resolve_precision(precision, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


TTA_LEVELS = (0, 1, 2)


def tta_levels(model: nn.Module, x: torch.Tensor, top: int) -> list[torch.Tensor]:
    """Logits at every test-time augmentation level up to `top`, each level reusing the
    views of the one below: 0 plain, 1 plus mirror, 2 plus mirrored 1-pixel shifts."""
    if top not in TTA_LEVELS:
        raise ValueError(f"tta_level: expected one of {TTA_LEVELS}, got {top!r}")
    plain = model(x)
    levels = [plain]
    if top >= 1:
        levels.append(0.5 * (plain + model(x.flip(3))))
    if top >= 2:
        padded = F.pad(x, (1,) * 4, mode="reflect")
        h, w = x.shape[2:]
        shifted = (padded[:, :, :h, :w], padded[:, :, 2:, 2:])
        mirrored = sum(0.5 * (model(s) + model(s.flip(3))) for s in shifted)
        levels.append(0.5 * levels[1] + 0.25 * mirrored)
    return levels


@dataclass
class EvalResult:
    """Mean loss, accuracy (fraction) and predicted class of every example."""

    loss: float
    accuracy: float
    predictions: torch.Tensor


@torch.no_grad()
def predict_levels(model: nn.Module, images: torch.Tensor, levels: Sequence[int],
                   batch_size: int, precision: str = "fp32", channels_last: bool = False
                   ) -> dict[int, torch.Tensor]:
    """Float32 logits for uint8 `images` at each TTA level in `levels`, evaluated in eval
    mode, batch by batch; the levels share their forward passes."""
    levels = tuple(dict.fromkeys(levels))
    was_training = model.training
    model.eval()
    anchor = next(model.parameters(), None)  # a PyNet model behind a torch facade has none
    device = anchor.device if anchor is not None else torch.device("cpu")
    outputs: dict[int, list[torch.Tensor]] = {level: [] for level in levels}
    for x in eval_batches(images.to(device), batch_size, channels_last):
        with autocast(device, precision):
            logits = tta_levels(model, x, max(levels))
        for level in levels:
            outputs[level].append(logits[level].float())
    model.train(was_training)
    return {level: torch.cat(parts) for level, parts in outputs.items()}


def predict_logits(model: nn.Module, images: torch.Tensor, tta_level: int, batch_size: int,
                   precision: str = "fp32", channels_last: bool = False) -> torch.Tensor:
    """Float32 logits for uint8 `images` at TTA level `tta_level` (`predict_levels`)."""
    return predict_levels(model, images, (tta_level,), batch_size, precision,
                          channels_last)[tta_level]


def evaluate_levels(model: nn.Module, split: Split, levels: Sequence[int],
                    batch_size: int = 1000, precision: str = "fp32",
                    channels_last: bool = False) -> dict[int, EvalResult]:
    """Loss and accuracy of `model` on `split` at each TTA level in `levels`, for the cost of
    the highest level alone."""
    logits = predict_levels(model, split.images, levels, batch_size, precision, channels_last)
    return {level: _result(values, split.labels) for level, values in logits.items()}


def evaluate(model: nn.Module, split: Split, tta_level: int = 0, batch_size: int = 1000,
             precision: str = "fp32", channels_last: bool = False) -> EvalResult:
    """Loss and accuracy of `model` on `split`."""
    return evaluate_levels(model, split, (tta_level,), batch_size, precision,
                           channels_last)[tta_level]


def _result(logits: torch.Tensor, labels: torch.Tensor) -> EvalResult:
    labels = labels.to(logits.device)
    predictions = logits.argmax(1)
    return EvalResult(loss=float(F.cross_entropy(logits, labels)),
                      accuracy=int((predictions == labels).sum()) / len(labels),
                      predictions=predictions.cpu())
