"""The PyTorch training engine: model, optimiser, LR schedule and Lookahead weights.

The engine knows nothing about metrics or data loading; the trainer feeds it batches, asks for
its state and evaluations, and has it write its model files into the run directory. Another
engine (`cifar.pynet.engine`) only has to offer the same methods.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifar.checkpoint import model_checkpoint
from cifar.data import Split
from cifar.errors import DivergenceError
from cifar.evaluate import EvalResult, autocast, evaluate
from cifar.models import count_parameters
from cifar.rundir import RunDir


def lr_factor(schedule: dict[str, Any], step: int, total_steps: int) -> float:
    """LR multiplier at `step`: "constant", or "warmup_linear" (linear up, then linear down)."""
    if schedule["kind"] == "constant":
        return 1.0
    if schedule["kind"] != "warmup_linear":
        raise ValueError(f"schedule.kind: expected 'constant' or 'warmup_linear', "
                         f"got {schedule['kind']!r}")
    warmup_steps = int(total_steps * schedule["warmup"])
    if step < warmup_steps:
        frac = step / warmup_steps
        return schedule["start"] * (1 - frac) + frac
    frac = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return (1 - frac) + schedule["end"] * frac


def lookahead_decay(every: int, decay: float, step: int, total_steps: int) -> float | None:
    """The slow weights' decay after optimiser step `step` (1-based), or None if no update is
    due: decay**every * (step/total)**3, and 1 (take the slow weights) at the last step."""
    if step % every and step != total_steps:
        return None
    return 1.0 if step == total_steps else decay**every * (step / total_steps)**3


def param_group_names(model: nn.Module, config: dict[str, Any]) -> list[dict[str, Any]]:
    """SGD parameter groups by parameter name: BatchNorm biases take `bias_lr_scale` times the
    learning rate and 1/`bias_lr_scale` of the weight decay (airbench); the rest the config's."""
    norm_biases = [f"{name}.bias" for name, m in model.named_modules()
                   if isinstance(m, nn.BatchNorm2d) and m.bias is not None]
    others = [name for name, _ in model.named_parameters() if name not in norm_biases]
    scale = config["bias_lr_scale"]
    return [{"params": norm_biases, "lr": config["lr"] * scale,
             "weight_decay": config["weight_decay"] / scale},
            {"params": others, "lr": config["lr"], "weight_decay": config["weight_decay"]}]


def set_trainable(model: nn.Module, epoch: int, config: dict[str, Any]) -> None:
    """Per-epoch trainability: the whitening bias trains for `whiten_bias_epochs` epochs."""
    whiten = getattr(model, "whiten", None)
    if whiten is not None:
        whiten.bias.requires_grad = epoch < config["whiten_bias_epochs"]


class Lookahead:
    """airbench's Lookahead: every `every` steps, slow <- lerp(slow, fast) and fast <- slow.

    The slow weights' decay ramps up as decay**every * (step/total)**3, and the last step copies
    the slow weights into the model, so the final model is the averaged one.
    """

    def __init__(self, model: nn.Module, every: int, decay: float) -> None:
        self.every, self.decay = every, decay
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items()
                     if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Apply the update after optimiser step `step` (1-based) when it is due."""
        decay = lookahead_decay(self.every, self.decay, step, total_steps)
        if decay is None:
            return
        state = model.state_dict()
        for name, slow in self.slow.items():
            slow.lerp_(state[name], 1 - decay)
            state[name].copy_(slow)


class Engine:
    """Trains `model` batch by batch according to a resolved run config."""

    def __init__(self, model: nn.Module, config: dict[str, Any], steps_per_epoch: int,
                 device: torch.device) -> None:
        self.model = model.to(device)
        if config["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config, self.device = config, device
        self.total_steps = steps_per_epoch * config["epochs"]
        self.step = 0
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(config["schedule"], s, self.total_steps))
        look = config["lookahead"]
        self.lookahead = Lookahead(self.model, look["every"], look["decay"]) if look else None
        self.forward = torch.compile(self.model) if config["compile"] else self.model

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg["optimizer"] == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=cfg["lr"],
                                    weight_decay=cfg["weight_decay"])
        if cfg["optimizer"] != "sgd":
            raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {cfg['optimizer']!r}")
        params = dict(self.model.named_parameters())
        groups = [{**group, "params": [params[name] for name in group["params"]]}
                  for group in param_group_names(self.model, cfg)]
        return torch.optim.SGD(groups, momentum=cfg["momentum"], nesterov=cfg["nesterov"])

    def prepare(self, train_inputs: torch.Tensor) -> None:
        """Data-dependent initialisation of a fresh model (the whitening stem, if any)."""
        if hasattr(self.model, "init_whitening"):
            self.model.init_whitening(train_inputs.to(self.device))
            if self.lookahead is not None:  # the slow weights start from the initialised model
                look = self.config["lookahead"]
                self.lookahead = Lookahead(self.model, look["every"], look["decay"])

    def start_epoch(self, epoch: int) -> None:
        """Set per-epoch trainability (`set_trainable`) and training mode."""
        set_trainable(self.model, epoch, self.config)
        self.model.train()

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
        """One optimiser step; returns the summed loss and the number of correct predictions."""
        with autocast(self.device, self.config["precision"]):
            logits = self.forward(inputs)
        losses = F.cross_entropy(logits.float(), labels, reduction="none",
                                 label_smoothing=self.config["label_smoothing"])
        loss = losses.sum() if self.config["loss_reduction"] == "sum" else losses.mean()
        if not torch.isfinite(loss):
            raise DivergenceError(f"training diverged: loss is {loss.item()} at step "
                                  f"{self.step + 1}; lower --lr or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.lookahead is not None:
            self.lookahead.update(self.model, self.step, self.total_steps)
        correct = int((logits.argmax(1) == labels).sum())
        return float(losses.detach().sum()), correct

    @property
    def lr(self) -> float:
        """Learning rate of the main parameter group for the next step."""
        return self.optimizer.param_groups[-1]["lr"]

    def evaluate(self, split: Split, tta_level: int) -> EvalResult:
        """Loss and accuracy of the current model on `split`."""
        cfg = self.config
        return evaluate(self.model, split, tta_level, cfg["eval_batch_size"], cfg["precision"],
                        cfg["channels_last"])

    def num_parameters(self) -> int:
        """Number of parameters, trainable or frozen."""
        return count_parameters(self.model)

    def save_model(self, run: RunDir, classes: list[str]) -> None:
        """Write the inference checkpoint `model.pt` of the current weights into `run`."""
        run.save_model(model_checkpoint(self.model, self.config, classes))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimiser, scheduler, Lookahead and step."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step,
                "lookahead": self.lookahead.slow if self.lookahead else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by `state_dict`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        if self.lookahead is not None:
            for name, value in state["lookahead"].items():
                self.lookahead.slow[name].copy_(value)



def resolve_device(name: str) -> torch.device:
    """Map --device auto|cpu|cuda to a torch device; `auto` picks CUDA when present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: expected a device that is present, got 'cuda' but CUDA is "
                         "not available")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected auto, cpu or cuda, got {name!r}")
    return torch.device(name)
