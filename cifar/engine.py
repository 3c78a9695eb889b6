"""The PyTorch training engine: model, optimiser, LR schedule and Lookahead weights.

The engine knows nothing about metrics or data loading; the trainer feeds it batches, asks for
its state and evaluations, and has it write its model files into the run directory. The recipe
(groups, trainability, schedule, Lookahead, whitening) is `cifar.recipe`, shared with the PyNet
engine (`cifar.pynet.engine`), which offers the same methods.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cifar.checkpoint import model_checkpoint
from cifar.data import Split
from cifar.errors import DivergenceError
from cifar.evaluate import EvalResult, autocast, evaluate
from cifar.models import build_model, count_parameters, named_parameter_layers
from cifar.recipe import Lookahead, lr_factor, param_groups, trainable, whitening_init
from cifar.rundir import RunDir


class Engine:
    """Trains the network of `config["model"]` batch by batch according to a run config."""

    def __init__(self, config: dict[str, Any], steps_per_epoch: int,
                 device: torch.device) -> None:
        self.model = build_model(config["model"]).to(device)
        if config["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config, self.device = config, device
        self.total_steps = steps_per_epoch * config["epochs"]
        self.step = 0
        self.params = named_parameter_layers(self.model)
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(config["schedule"], s, self.total_steps))
        self.lookahead = self._make_lookahead()
        self.forward = torch.compile(self.model) if config["compile"] else self.model

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups = [{**group, "params": [self.model.get_parameter(n) for n in group["params"]]}
                  for group in param_groups(self.params, cfg)]
        if cfg["optimizer"] == "adam":
            return torch.optim.Adam(groups)
        return torch.optim.SGD(groups, momentum=cfg["momentum"], nesterov=cfg["nesterov"])

    def _float_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.model.state_dict().items() if v.is_floating_point()}

    def _make_lookahead(self) -> Lookahead | None:
        look = self.config["lookahead"]
        return Lookahead(self._float_state(), look["every"], look["decay"]) if look else None

    @torch.no_grad()
    def prepare(self, train_inputs: torch.Tensor) -> None:
        """Data-dependent initialisation of a fresh model (`cifar.recipe.whitening_init`)."""
        if whitening_init(self.model.state_dict(), train_inputs.cpu().numpy(),
                          self.config["model"]):
            self.lookahead = self._make_lookahead()  # slow weights start from the initialised

    def start_epoch(self, epoch: int) -> None:
        """Set per-epoch trainability (`cifar.recipe.trainable`) and training mode."""
        for name, layer in self.params:
            self.model.get_parameter(name).requires_grad = trainable(name, layer, epoch,
                                                                     self.config)
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
            self.lookahead.update(self._float_state(), self.step, self.total_steps)
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
