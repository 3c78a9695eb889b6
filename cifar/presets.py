"""Training presets: complete, JSON-serialisable configurations that the trainer resolves.

A run's `config.json` is one of these dicts with the command-line overrides applied, so any
run can be rebuilt from it. `model` is the architecture config that `cifar.models.build_model`
takes; everything else drives the optimiser, schedule, augmentation and evaluation.
"""

from __future__ import annotations

import copy
from typing import Any

AIRBENCH_KILOSTEP = 1024


def airbench_sgd(lr: float, weight_decay: float, momentum: float, batch_size: int) -> dict:
    """Convert airbench-style hyperparameters (for a summed loss) into torch SGD settings.

    airbench decays weights by `weight_decay * batch_size / scale` per step, whatever the
    learning rate; torch SGD multiplies its `weight_decay` by the learning rate, hence the ratio.
    """
    scale = AIRBENCH_KILOSTEP * (1 + 1 / (1 - momentum))
    return {"lr": lr / scale, "weight_decay": weight_decay * batch_size / lr,
            "momentum": momentum}


def _airbench_preset(widths: list[int], batch_size: int) -> dict[str, Any]:
    return {
        "model": {"arch": "airnet", "widths": widths, "whiten_kernel": 2, "bn_momentum": 0.4,
                  "output_scale": 1 / 9, "activation": "gelu"},
        "epochs": 10,
        "batch_size": batch_size,
        "optimizer": "sgd",
        **airbench_sgd(lr=11.5, weight_decay=0.0153, momentum=0.85, batch_size=batch_size),
        "nesterov": True,
        "muon": None,
        "bias_lr_scale": 64.0,
        "loss_reduction": "sum",
        "label_smoothing": 0.2,
        "schedule": {"kind": "warmup_linear", "warmup": 0.23, "start": 0.2, "end": 0.07},
        "lookahead": {"every": 5, "decay": 0.95},
        "whiten_bias_epochs": 3,
        "crop_pad": 2,
        "flip": "alternate",
        "tta_level": 2,
        "precision": "bf16",
        "channels_last": True,
        "compile": False,
        "eval_every": 1,
    }


PRESETS: dict[str, dict[str, Any]] = {
    "fast": _airbench_preset([48, 128, 128], batch_size=512),
    "best": _airbench_preset([64, 256, 256], batch_size=1024),
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
        "whiten_bias_epochs": 0,
        "crop_pad": 4,
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


def resolve_config(preset: str, **overrides: Any) -> dict[str, Any]:
    """The preset's configuration with the run defaults and the non-None `overrides` applied."""
    if preset not in PRESETS:
        raise KeyError(f"--preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    config = {"preset": preset, **copy.deepcopy(PRESETS[preset]), **RUN_DEFAULTS}
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise KeyError(f"config: unknown keys {unknown}")
    config.update({k: v for k, v in overrides.items() if v is not None})
    if config["engine"] == "pynet":
        for key, value in PYNET_SETTINGS.items():
            if overrides.get(key) not in (None, value, RUN_DEFAULTS.get(key)):
                raise ValueError(f"--engine pynet: expected {key} {value!r} (PyNet computes in "
                                 f"float32 on NCHW arrays), got {overrides[key]!r}")
            config[key] = value
    return config
