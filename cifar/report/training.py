"""The training setup in words: the settings table and the per-step learning-rate curve."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from cifar.engine import lr_factor

CIFAR_TRAIN_SIZE = 50_000

TTA_VIEWS = {0: "none (1 view)", 1: "mirror (2 views)", 2: "mirror and 1-pixel shifts (6 views)"}


def describe_schedule(schedule: dict[str, Any] | None) -> str:
    """The LR schedule in words."""
    if not isinstance(schedule, dict):
        return "unknown"
    if schedule.get("kind") == "constant":
        return "constant"
    if schedule.get("kind") == "warmup_linear" and not schedule.get("warmup"):
        return f"linear decay from 1× to {schedule['end']:g}× at the last step"
    if schedule.get("kind") == "warmup_linear":
        return (f"linear warm-up from {schedule['start']:g}× to 1× over the first "
                f"{100 * schedule['warmup']:.0f}% of steps, then linear decay to "
                f"{schedule['end']:g}× at the last step")
    return json.dumps(schedule)


def describe_flip(flip: Any) -> str:
    """The flip augmentation in words (older configs store a bool)."""
    words = {"alternate": "mirror half the images, the other half in alternate epochs",
             "random": "random left-right mirror, p = 0.5", "none": "off", True: "on",
             False: "off"}
    return words.get(flip, str(flip)) if isinstance(flip, str | bool) else str(flip)


def _setting(key: str, value: Any, config: dict[str, Any]) -> tuple[str, str]:
    """(value, meaning) of one config entry."""
    summed = config.get("loss_reduction") == "sum"
    if key == "lr":
        meaning = "for the loss summed over the batch" if summed else "for the mean loss"
        return f"{value:.4g}", meaning + "; scaled per step by the schedule"
    if key == "schedule":
        return str((value or {}).get("kind", value)), describe_schedule(value)
    if key == "lookahead":
        if not value:
            return "off", ""
        return (f"every {value['every']} steps, decay {value['decay']}",
                "slow weights, decay ramped as decay^every·(t/T)³; final model = slow weights")
    if key == "ema":
        if not value:
            return "off", ""
        return (f"every {value['every']} steps, decay {value['decay']}",
                "average of the weights on Lookahead's schedule; final model = the average")
    if key == "crop_pad":
        return str(value), (f"reflect-pad {value} px, random 32×32 crop" if value else "off")
    if key == "early_crops":
        if not value:
            return "off", ""
        return (f"{value['size']}×{value['size']} for {value['epochs']} epochs",
                "smaller random crops first, then full size")
    if key == "color_jitter":
        if not value:
            return "off", ""
        return (f"brightness ±{value['brightness']:g}, contrast ±{value['contrast']:g}",
                "per image, on the normalised pixels")
    if key == "flip":
        return str(value), describe_flip(value)
    if key == "tta_level":
        return str(value), TTA_VIEWS.get(value, "")
    if key == "bias_lr_scale":
        return f"{value:.4g}", ("learning-rate multiplier for every bias" if config.get("muon")
                                else "learning-rate multiplier for batch-norm biases")
    if key == "muon":
        if not value:
            return "off", ""
        return (f"lr {value['lr']:g}, momentum {value['momentum']:g}",
                f"3×3 filters; {value.get('ns_steps', 3)} Newton-Schulz steps, "
                f"{'Nesterov, ' if value.get('nesterov', True) else ''}renormalised")
    if key == "weight_decay":
        return f"{value:.4g}", ("torch SGD form (multiplied by the LR)"
                                if config.get("optimizer") == "sgd" else "")
    if key == "whiten_bias_epochs":
        return str(value), ("epochs during which the whitening bias trains" if value
                            else "the whitening bias stays frozen")
    if key == "label_smoothing":
        return f"{value:g}", "" if value else "off"
    if key == "precision" and value == "auto":
        return value, "bf16 autocast where the device has bf16 kernels, else fp32"
    if key == "threads":
        return ("torch default", "") if value is None else (str(value), "")
    if key in ("train_subset", "test_subset"):
        return ("all", "") if value is None else (f"first {value}", "")
    if key == "eval_every":
        if not value:
            return "0", "test set after the last epoch only"
        return str(value), ("test set after every epoch" if value == 1
                            else f"test set after every {value} epochs")
    if isinstance(value, bool | int | float | str) or value is None:
        return str(value), ""
    return json.dumps(value), ""


LABELS = {
    "epochs": "Epochs", "batch_size": "Batch size", "optimizer": "Optimizer",
    "lr": "Learning rate", "momentum": "Momentum", "nesterov": "Nesterov",
    "weight_decay": "Weight decay", "muon": "Muon (filters)", "bias_lr_scale": "Bias LR scale",
    "loss_reduction": "Loss reduction", "label_smoothing": "Label smoothing",
    "schedule": "LR schedule", "lookahead": "Lookahead",
    "ema": "EMA of the weights",
    "whiten_bias_epochs": "Whitening-bias epochs", "crop_pad": "Random crop",
    "early_crops": "Early crops", "color_jitter": "Colour jitter",
    "flip": "Flip", "tta_level": "TTA level", "precision": "Precision",
    "channels_last": "channels_last", "compile": "torch.compile", "eval_every": "Evaluate every",
    "seed": "Seed", "device": "Device", "threads": "Threads", "data_dir": "Data directory",
    "train_subset": "Training images", "test_subset": "Test images",
    "eval_batch_size": "Eval batch size", "sync_bn": "SyncBatchNorm",
    "dist_timeout": "Distributed timeout (s)",
}


def settings_rows(config: dict[str, Any]) -> list[list[str]]:
    """[setting, value, meaning] for every config entry except the model (its own section);
    the features that are off share one last row."""
    rows, unused = [], []
    for key, value in config.items():
        if key in ("model", "preset"):
            continue
        shown, meaning = _setting(key, value, config)
        if shown == "off":
            unused.append(LABELS.get(key, key))
        else:
            rows.append([LABELS.get(key, key), shown, meaning])
    if unused:
        rows.append(["Not used", ", ".join(unused), ""])
    return rows


@dataclass
class LrCurve:
    """Learning rate of the main parameter group per optimiser step (or per epoch)."""

    steps: list[float]
    lrs: list[float]
    per_step: bool
    steps_per_epoch: int | None
    source: str


def _n_train(config: dict[str, Any], summary: dict[str, Any] | None) -> tuple[int, str]:
    if summary and summary.get("n_train"):
        return int(summary["n_train"]), "summary.json's n_train"
    if config.get("train_subset"):
        return int(config["train_subset"]), "the config's train_subset"
    return CIFAR_TRAIN_SIZE, "the full 50,000-image training set (assumed)"


def lr_curve(config: dict[str, Any] | None, summary: dict[str, Any] | None,
             metrics: list[dict[str, float | None]]) -> LrCurve | None:
    """Rebuild the per-step LR from the config with cifar.engine.lr_factor, checked against
    metrics.csv's per-epoch lr; fall back to that column when the config cannot rebuild it."""
    reason = "no run configuration"
    if config:
        try:
            n_train, n_source = _n_train(config, summary)
            per_epoch = math.ceil(n_train / config["batch_size"])
            total = per_epoch * config["epochs"]
            lrs = [config["lr"] * lr_factor(config["schedule"], s, total) for s in range(total)]
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            reason = f"the config lacks a usable {exc}"
        else:
            source = (f"rebuilt from the config: base LR {config['lr']:.4g} × "
                      f"cifar.engine.lr_factor over {total} steps ({per_epoch} per epoch, "
                      f"from {n_source})")
            logged = [(int(r["epoch"]), r["lr"]) for r in metrics if r.get("lr") is not None]
            checked = [(e, lr) for e, lr in logged if 0 < e <= config["epochs"]]
            if checked:
                agree = all(math.isclose(lrs[(e - 1) * per_epoch], lr, rel_tol=1e-6)
                            for e, lr in checked)
                source += ("; it agrees with metrics.csv's per-epoch lr" if agree else
                           "; it does NOT agree with metrics.csv's per-epoch lr (the run "
                           "may have used other settings than its config shows)")
            return LrCurve(list(range(total)), lrs, True, per_epoch, source)
    logged = [(r["epoch"], r["lr"]) for r in metrics if r.get("lr") is not None]
    if not logged:
        return None
    return LrCurve([e for e, _ in logged], [lr for _, lr in logged], False, None,
                   f"per-epoch lr from metrics.csv (not rebuilt per step: {reason})")
