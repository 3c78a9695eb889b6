"""Section 7: what was done and which extra features the run used, written from the run's own
config, summary, metrics and model rather than from boilerplate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cifar.report.architecture import Architecture, format_flops
from cifar.report.training import TTA_VIEWS, describe_flip, describe_schedule

if TYPE_CHECKING:
    from cifar.report.summary import Accuracy


def duration(seconds: float) -> str:
    """Seconds in words: 0.53 s, 42.1 s, 15.1 min (904 s) or 2.05 h."""
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min ({seconds:.0f} s)"
    return f"{seconds / 3600:.2f} h"


def _model_sentence(config: dict[str, Any], arch: Architecture | None) -> str:
    model = config.get("model", {})
    if model.get("arch") == "airnet":
        text = (f"an airbench-style network (`airnet`) with a {model.get('whiten_kernel', 2)}×"
                f"{model.get('whiten_kernel', 2)} whitening convolution, three "
                f"conv-pool-BN-{model.get('activation', 'gelu').upper()} groups of widths "
                f"{', '.join(map(str, model.get('widths', [])))}, a global max-pool and a linear "
                f"head scaled by {model.get('output_scale', 1):.3g}")
    elif model.get("arch") == "course":
        text = (f"the course baseline network (`course`) with three conv-BN-ReLU-max-pool "
                f"layers of widths {', '.join(map(str, model.get('widths', [])))} and a "
                f"{model.get('hidden')}-unit hidden layer")
    else:
        text = f"a `{model.get('arch', 'unknown')}` network"
    if arch is not None:
        text += (f" ({arch.params:,} parameters, {format_flops(arch.flops)} per image "
                 f"forward)")
    return text


def what_was_done(config: dict[str, Any], summary: dict[str, Any] | None,
                  metrics: list[dict[str, float | None]], arch: Architecture | None,
                  accuracy: Accuracy | None, last_epoch: int | None = None) -> str:
    """One paragraph: model, data, optimiser, duration, hardware and result."""
    done = len(metrics) if metrics else (summary or {}).get("epochs", last_epoch)
    planned = config.get("epochs")
    n_train = (summary or {}).get("n_train") or config.get("train_subset") or 50_000
    optimizer = config.get("optimizer", "?").upper() if config.get("optimizer") == "sgd" \
        else str(config.get("optimizer", "?")).capitalize()
    if config.get("optimizer") == "sgd":
        optimizer += (f" ({'Nesterov ' if config.get('nesterov') else ''}momentum "
                      f"{config.get('momentum')})")
    parts = [f"The run used the `{config.get('preset', '?')}` preset: "
             f"{_model_sentence(config, arch)}."]
    epochs = f"{done} of {planned} epochs" if done is not None and done != planned \
        else f"{planned} epochs"
    parts.append(f"It ran {epochs} over {n_train:,} training images with {optimizer}, batch "
                 f"size {config.get('batch_size')} and seed {config.get('seed')}")
    if summary:
        threads, processes = summary.get("threads"), summary.get("world_size", 1)
        spread = f"{processes} processes (torchrun) x " if processes > 1 else ""
        parts[-1] += (f", on {summary.get('device')} with {spread}{threads} thread"
                      f"{'' if threads == 1 else 's'} in {duration(summary.get('wall_seconds', 0))}"
                      f" wall-clock")
    parts[-1] += "."
    if done is not None and planned and done < planned:
        left = planned - done
        parts.append(f"The run stopped early: {left} planned epoch{'s' * (left != 1)} did "
                     f"not run.")
    if accuracy is not None:
        side = "above" if accuracy.value >= 0.70 else "below"
        parts.append(f"The test accuracy of {accuracy.model} is {100 * accuracy.value:.2f}% "
                     f"({accuracy.source}), {abs(100 * accuracy.value - 70):.2f} points {side} "
                     f"the 70% bar.")
    return " ".join(parts)


def extra_features(config: dict[str, Any], summary: dict[str, Any] | None,
                   metrics: list[dict[str, float | None]], arch: Architecture | None
                   ) -> tuple[list[str], list[str]]:
    """(features used beyond a plain Adam/constant-LR baseline, features left off)."""
    used, off = [], []
    model = config.get("model", {})
    if model.get("arch") == "airnet":
        used.append(f"Whitening stem: the first {model.get('whiten_kernel', 2)}×"
                    f"{model.get('whiten_kernel', 2)} convolution is frozen and set from the "
                    f"eigenvectors of the training patches' covariance (and their negatives); "
                    + (f"its bias trained for the first {config['whiten_bias_epochs']} epochs."
                       if config.get("whiten_bias_epochs") else "its bias stayed frozen."))
        used.append("Identity (Dirac) initialisation of the first filters of each 3×3 "
                    "convolution, and batch norm with a fixed unit scale.")
    if arch is not None and arch.params > arch.trainable:
        used.append(f"{arch.params - arch.trainable:,} of {arch.params:,} parameters frozen "
                    f"(counted from the model).")
    schedule = config.get("schedule") or {}
    if schedule.get("kind", "constant") != "constant":
        lrs = [r["lr"] for r in metrics if r.get("lr") is not None]
        seen = (f"; metrics.csv's lr rises to {max(lrs):.3g} at epoch "
                f"{1 + lrs.index(max(lrs))} and ends at {lrs[-1]:.3g}") if len(lrs) > 1 else ""
        used.append(f"Learning-rate schedule: {describe_schedule(schedule)}{seen}.")
    else:
        off.append("learning-rate schedule (constant LR)")
    muon = config.get("muon")
    if muon:
        used.append(f"Muon for the 3×3 convolution filters: Nesterov momentum "
                    f"{muon['momentum']:g} orthogonalised by {muon.get('ns_steps', 3)} "
                    f"Newton-Schulz steps, learning rate {muon['lr']:g}, each filter bank "
                    f"renormalised before its step; biases and the head train with SGD.")
    if config.get("optimizer") == "sgd" and config.get("bias_lr_scale", 1) != 1:
        which = "Biases" if muon else "Batch-norm biases"
        used.append(f"{which} learn at {config['bias_lr_scale']:.3g}× the learning rate, with "
                    f"weight decay divided by the same factor.")
    if config.get("loss_reduction") == "sum":
        used.append("Loss summed over the batch (airbench's hyperparameters converted to "
                    "torch SGD's form).")
    if config.get("label_smoothing"):
        used.append(f"Label smoothing {config['label_smoothing']:g}.")
    else:
        off.append("label smoothing")
    look = config.get("lookahead")
    if look:
        used.append(f"Lookahead: every {look['every']} steps the slow weights move toward the "
                    f"fast ones (decay {look['decay']}); the final model is the slow average.")
    else:
        off.append("Lookahead")
    ema = config.get("ema")
    if ema:
        used.append(f"An exponential moving average of the weights, updated every "
                    f"{ema['every']} steps (decay {ema['decay']}) without resetting the model; "
                    f"the final model is the average.")
    augment = []
    if config.get("crop_pad"):
        augment.append(f"random crops after {config['crop_pad']}-pixel reflect padding")
    early = config.get("early_crops")
    if early:
        augment.append(f"{early['size']}×{early['size']} crops in the first {early['epochs']} "
                       f"epochs (cheaper steps), full-size ones after")
    if config.get("flip") not in (None, False, "none"):
        augment.append(f"left-right flips ({describe_flip(config['flip'])})")
    jitter = config.get("color_jitter")
    if jitter:
        augment.append(f"colour jitter (brightness ±{jitter['brightness']:g} standard "
                       f"deviations, contrast ±{jitter['contrast'] * 100:g} %)")
    if augment:
        used.append("Augmentation on the training device: " + ", ".join(augment[:-1])
                    + (" and " if len(augment) > 1 else "") + augment[-1] + ".")
    else:
        off.append("augmentation")
    level = config.get("tta_level", 0)
    if level:
        tta = (summary or {}).get("test_accuracy_tta")
        gain = (f", worth {100 * (tta - summary['test_accuracy']):+.2f} points"
                if tta is not None and summary.get("test_accuracy") is not None else "")
        used.append(f"Test-time augmentation level {level}: {TTA_VIEWS.get(level, '?')}{gain}.")
    else:
        off.append("test-time augmentation")
    settings = {**config, "precision": (summary or {}).get("precision", config.get("precision"))}
    for key, value, text, name in (
            ("precision", "bf16", "Mixed precision: bfloat16 autocast for the forward pass.",
             "bfloat16 autocast"),
            ("channels_last", True, "Channels-last memory layout for images and weights.",
             "channels-last layout"),
            ("compile", True, "torch.compile of the model.", "torch.compile")):
        if settings.get(key) == value:
            used.append(text)
        else:
            off.append(name)
    if config.get("engine") == "pynet":
        used.append(f"Trained with PyNet (`--engine pynet`, the {config.get('backend')} "
                    f"backend): every forward and backward pass in NumPy/numba, float32; "
                    f"model.npz is the PyNet model file.")
    if summary and summary.get("resumed"):
        used.append("The run was resumed from last.pt after an interruption.")
    if config.get("train_subset"):
        used.append(f"Training used only the first {config['train_subset']} images.")
    return used, off
