"""Training presets: complete, JSON-serialisable configurations that the trainer resolves.

A run's `config.json` is one of these dicts with the command-line overrides applied, so any
run can be rebuilt from it. `model` is the architecture config that `cifar.models.build_model`
takes; everything else drives the optimiser, schedule, augmentation and evaluation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from cifar.settings import apply_settings, parse_setting

AIRBENCH_KILOSTEP = 1024


def airbench_sgd(lr: float, weight_decay: float, momentum: float, batch_size: int) -> dict:
    """Convert airbench-style hyperparameters (for a summed loss) into torch SGD settings.

    airbench decays weights by `weight_decay * batch_size / scale` per step, whatever the
    learning rate; torch SGD multiplies its `weight_decay` by the learning rate, hence the ratio.
    """
    scale = AIRBENCH_KILOSTEP * (1 + 1 / (1 - momentum))
    return {"lr": lr / scale, "weight_decay": weight_decay * batch_size / lr,
            "momentum": momentum}


def airbench_muon(batch_size: int, width: int, output_scale: float = 1 / 9) -> dict:
    """airbench94_muon's optimiser settings in this trainer's terms.

    airbench94_muon trains the filters with Muon (lr 0.24, momentum 0.6, Nesterov, 3
    Newton-Schulz steps), every bias at lr 0.053 and the head at 0.67 with SGD (Nesterov
    momentum 0.85, summed loss), decays the weights by 2e-6 * batch_size per step, and
    decays every learning rate linearly to 0 without warm-up. Its head divides the logits by
    the width and starts at unit standard deviation; ours multiplies them by `output_scale`
    with torch's initialisation, so the same step in logit space takes the head learning
    rate divided by (width * output_scale)^2.
    """
    head_lr = 0.67 / (width * output_scale) ** 2
    decay = 2e-6 * batch_size  # torch SGD decays by lr * weight_decay per step
    return {"optimizer": "sgd", "lr": head_lr, "bias_lr_scale": 0.053 / head_lr,
            "weight_decay": decay / head_lr, "momentum": 0.85, "nesterov": True,
            "muon": {"lr": 0.24, "momentum": 0.6, "nesterov": True, "ns_steps": 3},
            "schedule": {"kind": "warmup_linear", "warmup": 0.0, "start": 1.0, "end": 0.0}}


def _airbench_preset(widths: list[int], batch_size: int, optimizer: str,
                     convs_per_group: int = 2) -> dict[str, Any]:
    """The airnet recipe at `widths` with `convs_per_group` 3x3 convolutions per group,
    optimised as airbench94 ("sgd": Nesterov SGD with warm-up) or airbench94_muon ("muon":
    Muon for the filters)."""
    output_scale = 1 / 9
    if optimizer == "muon":
        optimiser = airbench_muon(batch_size, widths[-1], output_scale)
    else:
        optimiser = {
            "optimizer": "sgd", "nesterov": True, "muon": None, "bias_lr_scale": 64.0,
            **airbench_sgd(lr=11.5, weight_decay=0.0153, momentum=0.85, batch_size=batch_size),
            "schedule": {"kind": "warmup_linear", "warmup": 0.23, "start": 0.2, "end": 0.07}}
    return {
        "model": {"arch": "airnet", "widths": widths, "whiten_kernel": 2, "bn_momentum": 0.4,
                  "output_scale": output_scale, "activation": "gelu",
                  "convs_per_group": convs_per_group},
        "epochs": 10,
        "batch_size": batch_size,
        **optimiser,
        "loss_reduction": "sum",
        "label_smoothing": 0.2,
        "lookahead": {"every": 5, "decay": 0.95},
        "ema": None,
        "whiten_bias_epochs": 3,
        "crop_pad": 2,
        "early_crops": None,
        "color_jitter": None,
        "flip": "alternate",
        "tta_level": 2,
        "precision": "auto",
        "channels_last": True,
        "compile": False,
        "eval_every": 1,
    }


PRESETS: dict[str, dict[str, Any]] = {
    # Evaluated after the last epoch only: a test pass per epoch costs ~45 s of the 600 s.
    # Batch 1500 (34 steps an epoch), with the whitening bias frozen to pay for the extra
    # steps' time: +0.15 points (+0.20 with TTA) over batch 2000, mean of 3 seeds.
    "fast": {**_airbench_preset([64, 160, 160], batch_size=1500, optimizer="muon"),
             "whiten_bias_epochs": 0, "eval_every": 0},
    "fast-small": _airbench_preset([48, 128, 128], batch_size=2000, optimizer="muon"),
    # 3-pixel crops: the wide net nearly memorises the training set in ten epochs. A third
    # convolution per group: +0.00 points (+0.14 with TTA), mean of 3 seeds (sessions 18-20).
    "best": {**_airbench_preset([128, 384, 384], batch_size=2000, optimizer="muon",
                                convs_per_group=3),
             "crop_pad": 3},
    "fast-sgd": _airbench_preset([48, 128, 128], batch_size=512, optimizer="sgd"),
    "best-sgd": _airbench_preset([64, 256, 256], batch_size=1024, optimizer="sgd"),
    "course": {
        "model": {"arch": "course", "widths": [32, 64, 128], "hidden": 256},
        "epochs": 10,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "muon": None,
        "loss_reduction": "mean",
        "label_smoothing": 0.0,
        "schedule": {"kind": "constant"},
        "lookahead": None,
        "ema": None,
        "whiten_bias_epochs": 0,
        "crop_pad": 4,
        "early_crops": None,
        "color_jitter": None,
        "flip": "random",
        "tta_level": 1,
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
        "eval_every": 1,
    },
}

RUN_DEFAULTS: dict[str, Any] = {
    "engine": "torch",
    "backend": "numba",
    "conv_algorithm": "auto",
    "seed": 0,
    "device": "auto",
    "threads": None,
    "data_dir": None,
    "train_subset": None,
    "test_subset": None,
    "eval_batch_size": 1000,
    "sync_bn": False,
    "dist_timeout": 300.0,
}


#: What the PyNet engine needs, whatever the preset says.
PYNET_SETTINGS: dict[str, Any] = {"precision": "fp32", "channels_last": False, "compile": False,
                                  "device": "cpu"}


def resolve_config(preset: str, settings: Sequence[str] = (), **overrides: Any
                   ) -> dict[str, Any]:
    """The preset's configuration with the run defaults, the non-None `overrides` and then
    the `settings` ("KEY=VALUE", `cifar.settings.apply_settings`) applied."""
    if preset not in PRESETS:
        raise KeyError(f"--preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    config = {"preset": preset, **copy.deepcopy(PRESETS[preset]), **RUN_DEFAULTS}
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise KeyError(f"config: unknown keys {unknown}")
    config.update({k: v for k, v in overrides.items() if v is not None})
    parsed = [parse_setting(text) for text in settings]
    apply_settings(config, parsed)
    if config["engine"] == "pynet":
        explicit = {**overrides, **{path[0]: value for path, value in parsed if len(path) == 1}}
        for key, value in PYNET_SETTINGS.items():
            if explicit.get(key) not in (None, value, RUN_DEFAULTS.get(key)):
                raise ValueError(f"--engine pynet: expected {key} {value!r} (PyNet computes in "
                                 f"float32 on NCHW arrays), got {explicit[key]!r}")
            config[key] = value
    return config
