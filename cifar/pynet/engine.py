"""The PyNet training engine: the same recipe as `cifar.engine.Engine`, computed by PyNet.

The trainer drives it exactly like the PyTorch engine (data pipeline, augmentation, metrics,
checkpoints and run directory are the trainer's). The network is built and initialised by
torch (`cifar.models`, including the data-dependent whitening stem), converted layer by layer
(`cifar.pynet.convert`), and from then on trained in NumPy/numba: forward, cross-entropy,
backward, SGD or Adam with the torch engine's parameter groups, its LR schedule and Lookahead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

import backends
from cifar.checkpoint import model_checkpoint
from cifar.data import Split
from cifar.engine import lookahead_decay, lr_factor, param_group_names, set_trainable
from cifar.errors import DivergenceError
from cifar.evaluate import EvalResult, evaluate
from cifar.presets import PYNET_SETTINGS
from cifar.pynet.convert import inference_model, load_torch_state, to_pynet, to_torch_state
from cifar.pynet.facade import TorchFacade
from cifar.rundir import RunDir
from spec.optim import SGD, Adam, LambdaLR, Optimizer

PYNET_MODEL_NAME = "model.npz"


def _tensors(obj: Any) -> Any:
    """NumPy arrays -> torch tensors, recursively (checkpoints load with weights_only=True)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, dict):
        return {k: _tensors(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_tensors(v) for v in obj]
    return obj


def _arrays(obj: Any) -> Any:
    """The inverse of `_tensors`."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy().copy()
    if isinstance(obj, dict):
        return {k: _arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_arrays(v) for v in obj]
    return obj


class PynetEngine:
    """Trains the torch-built `model` with PyNet layers of backend `config["backend"]`."""

    def __init__(self, model: nn.Module, config: dict[str, Any], steps_per_epoch: int,
                 device: torch.device) -> None:
        if device.type != "cpu":
            raise ValueError(f"--engine pynet: expected --device cpu or auto (PyNet runs on "
                             f"the CPU), got {device.type}")
        expected = {k: v for k, v in PYNET_SETTINGS.items() if k != "device"}
        got = {k: config[k] for k, v in expected.items() if config[k] != v}
        if got:
            raise ValueError(f"--engine pynet: expected {expected}, got {got}")
        self.torch_model, self.config, self.device = model, config, device
        self.total_steps = steps_per_epoch * config["epochs"]
        self.step = 0
        if config["threads"]:
            backends.set_num_threads(config["threads"])
        self.nn = backends.get(config["backend"])
        self.converted = to_pynet(model, self.nn)
        self.model = self.converted.model
        self.criterion = self.nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"],
                                                  reduction="none")
        self.optimizer = self._make_optimizer()
        self.group_params = [list(g["params"]) for g in self.optimizer.param_groups]
        self.scheduler = LambdaLR(self.optimizer,
                                  lambda s: lr_factor(config["schedule"], s, self.total_steps))
        look = config["lookahead"]
        self.slow = ({k: v.copy() for k, v in self._float_state().items()} if look else None)

    def _make_optimizer(self) -> Optimizer:
        cfg = self.config
        pynet_name = {t: p for p, t in self.converted.torch_names.items()}
        if cfg["optimizer"] == "adam":
            return Adam(self.model, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        if cfg["optimizer"] != "sgd":
            raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {cfg['optimizer']!r}")
        groups = [{**g, "params": [pynet_name[n] for n in g["params"]]}
                  for g in param_group_names(self.torch_model, cfg)]
        return SGD(self.model, momentum=cfg["momentum"], nesterov=cfg["nesterov"],
                   lr=cfg["lr"], param_groups=groups)

    def _float_state(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.model.state_dict().items() if v.dtype.kind == "f"}

    def prepare(self, train_inputs: torch.Tensor) -> None:
        """Data-dependent initialisation (the whitening stem), done by torch, then copied."""
        if hasattr(self.torch_model, "init_whitening"):
            self.torch_model.init_whitening(train_inputs)
            load_torch_state(self.converted, self.torch_model.state_dict())
            if self.slow is not None:
                self.slow = {k: v.copy() for k, v in self._float_state().items()}

    def start_epoch(self, epoch: int) -> None:
        """Train the parameters torch would train this epoch (`set_trainable`), in train mode."""
        set_trainable(self.torch_model, epoch, self.config)
        torch_params = dict(self.torch_model.named_parameters())
        frozen = {p for p, t in self.converted.torch_names.items()
                  if t in torch_params and not torch_params[t].requires_grad}
        for group, names in zip(self.optimizer.param_groups, self.group_params, strict=True):
            group["params"] = [name for name in names if name not in frozen]
        self.model.train()

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
        """One optimiser step; returns the summed loss and the number of correct predictions."""
        x = np.ascontiguousarray(inputs.numpy(), dtype=np.float32)
        y = labels.numpy()
        scale = np.float32(self.converted.output_scale)
        logits = self.model(x) * scale
        losses = self.criterion(logits, y)
        loss = losses.sum() if self.config["loss_reduction"] == "sum" else losses.mean()
        if not np.isfinite(loss):
            raise DivergenceError(f"training diverged: loss is {loss} at step "
                                  f"{self.step + 1}; lower --lr or check the data")
        self.model.zero_grad()
        weight = 1.0 if self.config["loss_reduction"] == "sum" else 1.0 / len(y)
        dlogits = self.criterion.backward(np.full(len(y), weight, np.float32))
        self.model.backward(dlogits * scale)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self._lookahead()
        return float(losses.sum()), int((logits.argmax(1) == y).sum())

    def _lookahead(self) -> None:
        """`cifar.engine.Lookahead`'s update on the PyNet state (parameters and BN statistics)."""
        look = self.config["lookahead"]
        decay = look and lookahead_decay(look["every"], look["decay"], self.step,
                                         self.total_steps)
        if decay is None or self.slow is None:
            return
        for name, fast in self._float_state().items():
            slow = self.slow[name]
            slow += (1 - decay) * (fast - slow)
            fast[...] = slow

    @property
    def lr(self) -> float:
        """Learning rate of the main parameter group for the next step."""
        return self.optimizer.param_groups[-1]["lr"]

    def evaluate(self, split: Split, tta_level: int) -> EvalResult:
        """Loss and accuracy on `split`, through the same evaluation code as the torch engine."""
        facade = TorchFacade(self.model, self.converted.output_scale)
        return evaluate(facade, split, tta_level, self.config["eval_batch_size"])

    def num_parameters(self) -> int:
        """Number of parameters, trainable or frozen."""
        return sum(p.size for p in self.model.parameters())

    def _synced_torch_model(self) -> nn.Module:
        self.torch_model.load_state_dict(to_torch_state(self.converted))
        return self.torch_model

    def save_model(self, run: RunDir, classes: list[str]) -> None:
        """Write `model.pt` (the weights in the torch model, for `test`, `predict` and the
        report) and `model.npz` (the PyNet model file, logit scale folded into the head)."""
        model = self._synced_torch_model()
        run.save_model(model_checkpoint(model, self.config, classes))
        inference_model(model, self.nn).save(run.path / PYNET_MODEL_NAME)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as tensors; the model under the torch model's names."""
        return {"model": to_torch_state(self.converted),
                "optimizer": _tensors(self.optimizer.state_dict()),
                "scheduler": self.scheduler.state_dict(), "step": self.step,
                "lookahead": _tensors(self.slow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by `state_dict`."""
        load_torch_state(self.converted, state["model"])
        self.optimizer.load_state_dict(_arrays(state["optimizer"]))
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        if self.slow is not None:
            self.slow = _arrays(state["lookahead"])
