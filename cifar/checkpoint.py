"""Atomic checkpoint writing and safe loading (`weights_only=True`, one-line errors)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifar.errors import CheckpointError
from cifar.models import build_model
from spec.files import atomic_write

LAST_NAME = "last.pt"
MODEL_NAME = "model.pt"


def atomic_save(obj: Any, path: Path) -> None:
    """Write `obj` with `torch.save`; a crash midway leaves any old file at `path` intact."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def resolve_checkpoint(path: str | os.PathLike, name: str = MODEL_NAME) -> Path:
    """`path` itself, or `path/name` when `path` is a run directory."""
    path = Path(path)
    return path / name if path.is_dir() else path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint dict with `weights_only=True`; raise CheckpointError if unreadable."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise many types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise CheckpointError(f"{path}: expected a cifar checkpoint dict with 'config' and "
                              f"'model', got {type(state).__name__}")
    return state


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load `weights` into `model`; raise CheckpointError if they belong to another network."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        message = f"{path}: weights do not fit the architecture ({detail:.300})"
        raise CheckpointError(message) from None


@dataclass
class LoadedModel:
    """A network rebuilt from a checkpoint, with its run config and class names."""

    model: nn.Module
    config: dict[str, Any]
    classes: list[str]


def load_model(path: str | os.PathLike, device: torch.device) -> LoadedModel:
    """Rebuild the network stored in `model.pt`, `last.pt` or a run directory's `model.pt`."""
    path = resolve_checkpoint(path)
    state = read_checkpoint(path)
    config = state["config"]
    try:
        model = build_model(config["model"])
    except (TypeError, KeyError) as exc:
        message = f"{path}: invalid model config {config.get('model')!r} ({exc})"
        raise CheckpointError(message) from None
    load_weights(model, state["model"], path)
    return LoadedModel(model.to(device).eval(), config, list(state.get("classes", [])))


def model_checkpoint(model: nn.Module, config: dict[str, Any], classes: list[str]) -> dict:
    """The inference checkpoint `model.pt`: weights, run config (with the architecture) and
    class names."""
    return {"format": "cifar-model-v1", "config": config, "classes": classes,
            "model": model.state_dict()}


def optimizer_states(optimizers: list[Any], schedulers: list[Any],
                     to_saved: Callable[[Any], Any] = lambda state: state) -> dict[str, Any]:
    """The optimisers' part of `last.pt`, for either engine: the main optimiser and its
    scheduler under "optimizer" and "scheduler", Muon's (if any) under "muon". `to_saved`
    converts an optimiser's state (the PyNet engine's arrays to tensors)."""
    (main, *muon), (main_schedule, *muon_schedule) = optimizers, schedulers
    return {"optimizer": to_saved(main.state_dict()), "scheduler": main_schedule.state_dict(),
            "muon": {"optimizer": to_saved(muon[0].state_dict()),
                     "scheduler": muon_schedule[0].state_dict()} if muon else None}


def load_optimizer_states(state: dict[str, Any], optimizers: list[Any], schedulers: list[Any],
                          from_saved: Callable[[Any], Any] = lambda state: state) -> None:
    """Restore what `optimizer_states` saved into the same `optimizers` and `schedulers`."""
    saved = [(state["optimizer"], state["scheduler"])]
    if len(optimizers) > 1:
        saved.append((state["muon"]["optimizer"], state["muon"]["scheduler"]))
    for optimizer, scheduler, (optimizer_state, scheduler_state) in zip(
            optimizers, schedulers, saved, strict=True):
        optimizer.load_state_dict(from_saved(optimizer_state))
        scheduler.load_state_dict(scheduler_state)
