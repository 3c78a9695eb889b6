"""The PyNet training engine: the recipe of `cifar.recipe`, computed by PyNet.

The trainer drives it exactly like the PyTorch engine (data pipeline, augmentation, metrics,
checkpoints and run directory are the trainer's). The network is built by PyNet from the
model config (`cifar.models.build_layers` with a backend namespace), with PyNet's own seeded
initialisation, and trained in NumPy/numba: forward, cross-entropy, backward, SGD or Adam
(and Muon for the filters) with the recipe's parameter groups, trainability, LR schedule and
weight averages. torch is used only to write `model.pt`, from the PyNet weights, at save time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import backends
from backends.memory import reuse_freed_memory
from cifar.checkpoint import load_optimizer_states, model_checkpoint, optimizer_states
from cifar.data import Split
from cifar.distributed import World
from cifar.errors import CifarError
from cifar.evaluate import EvalResult, evaluate_levels
from cifar.models import build_layers, build_model, named_parameter_layers, output_scale
from cifar.presets import PYNET_SETTINGS
from cifar.pynet.convert import fold_output_scale, load_torch_state, to_torch_state
from cifar.pynet.facade import TorchFacade
from cifar.recipe import (
    WEIGHT_AVERAGES,
    Lookahead,
    global_step_stats,
    lr_factor,
    muon_filters,
    param_groups,
    trainable,
    weight_averages,
    whitening_init,
)
from cifar.rundir import RunDir
from spec import init
from spec.module import Module
from spec.optim import SGD, Adam, LambdaLR, Muon, Optimizer

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
    """Trains the network of `config["model"]` with PyNet layers of backend
    `config["backend"]`.

    The gradients live in one flat float32 array (`Module.bind_grads`), followed by room for
    the BatchNorm running statistics. In a `World` of several processes that array is
    all-reduced once per step through `torch.from_numpy` (no copies): the gradients are
    summed (each rank's loss is its part of the global batch's), and the running statistics,
    copied in after the forward pass, are averaged, so every rank holds the same model.
    """

    precision = "fp32"  # PYNET_SETTINGS: PyNet computes in float32

    def __init__(self, config: dict[str, Any], steps_per_epoch: int, device: torch.device,
                 world: World | None = None) -> None:
        if device.type != "cpu":
            raise ValueError(f"--engine pynet: expected --device cpu or auto (PyNet runs on "
                             f"the CPU), got {device.type}")
        if config.get("sync_bn"):
            raise CifarError("--sync-bn: PyNet's BatchNorm keeps per-process statistics (like "
                             "torch's on the CPU); drop --sync-bn")
        self.world = world or World()
        expected = {k: v for k, v in PYNET_SETTINGS.items() if k != "device"}
        got = {k: config[k] for k, v in expected.items() if config[k] != v}
        if got:
            raise ValueError(f"--engine pynet: expected {expected}, got {got}")
        self.config, self.device = config, device
        self.total_steps = steps_per_epoch * config["epochs"]
        self.step = 0
        # torch's count by default (torchrun sets 1 per process), and the BLAS pinned to one
        backends.set_num_threads(config["threads"] or torch.get_num_threads())
        reuse_freed_memory()  # every step allocates the same arrays again
        backends.set_conv_algorithm(config.get("conv_algorithm", "auto"))  # older runs: auto
        self.nn = backends.get(config["backend"])
        init.manual_seed(config["seed"])
        self.model: Module = build_layers(config["model"], self.nn)
        self.output_scale = np.float32(output_scale(config["model"]))
        self.params = named_parameter_layers(self.model)
        self.criterion = self.nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"],
                                                  reduction="none")
        self.optimizer = self._make_optimizer()
        muon = self._make_muon()
        self.optimizers = [self.optimizer, muon] if muon is not None else [self.optimizer]
        self.group_params = [list(g["params"]) for opt in self.optimizers
                             for g in opt.param_groups]
        self.schedulers = [LambdaLR(opt, lambda s: lr_factor(config["schedule"], s,
                                                             self.total_steps))
                           for opt in self.optimizers]
        self.averages = self._make_averages()
        n_grads = sum(p.size for p in self.model.parameters())
        n_stats = sum(b.size for _, b in self._running_stats())
        self.flat = np.zeros(n_grads + n_stats, np.float32)
        self.model.bind_grads(self.flat[:n_grads])

    def _running_stats(self) -> list[tuple[str, np.ndarray]]:
        return [(k, v) for k, v in self.model.named_buffers() if v.dtype.kind == "f"]

    def _make_optimizer(self) -> Optimizer:
        cfg = self.config
        groups = param_groups(self.params, cfg)
        if cfg["optimizer"] == "adam":
            return Adam(self.model, param_groups=groups)
        return SGD(self.model, momentum=cfg["momentum"], nesterov=cfg["nesterov"],
                   lr=cfg["lr"], param_groups=groups)

    def _make_muon(self) -> Muon | None:
        """Muon for the convolution filters (`cifar.recipe.muon_filters`), if the config
        asks for it."""
        names = muon_filters(self.params, self.config)
        if not names:
            return None
        return Muon(self.model, **self.config["muon"], param_groups=[{"params": names}])

    def _float_state(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.model.state_dict().items() if v.dtype.kind == "f"}

    def _make_averages(self) -> dict[str, Lookahead]:
        return weight_averages(self.config, self._float_state())

    def prepare(self, train_inputs: torch.Tensor) -> None:
        """Data-dependent initialisation of a fresh model (`cifar.recipe.whitening_init`);
        then every rank takes rank 0's weights, and the weight averages start from them."""
        whitening_init(self.model.state_dict(), train_inputs.numpy(), self.config["model"])
        for value in self.model.state_dict().values():
            self.world.broadcast(torch.from_numpy(value))
        self.averages = self._make_averages()

    def start_epoch(self, epoch: int) -> None:
        """Train the parameters the recipe trains this epoch (`cifar.recipe.trainable`)."""
        layers = dict(self.params)
        groups = [group for opt in self.optimizers for group in opt.param_groups]
        for group, names in zip(groups, self.group_params, strict=True):
            group["params"] = [name for name in names
                               if trainable(name, layers[name], epoch, self.config)]
        self.model.train()

    def train_step(self, inputs: torch.Tensor,
                   labels: torch.Tensor) -> tuple[float, int, int]:
        """One optimiser step on this rank's part of a global batch; returns the global
        batch's summed loss, number of correct predictions and size."""
        x = np.ascontiguousarray(inputs.numpy(), dtype=np.float32)
        y = labels.numpy()
        logits = self.model(x) * self.output_scale
        losses = self.criterion(logits, y)
        loss_sum, correct, count = global_step_stats(
            self.world, float(losses.sum()), int((logits.argmax(1) == y).sum()), len(y),
            self.step + 1)
        self.model.zero_grad(set_to_none=False)
        weight = 1.0 if self.config["loss_reduction"] == "sum" else 1.0 / count
        dlogits = self.criterion.backward(np.full(len(y), weight, np.float32))
        self.model.backward(dlogits * self.output_scale, input_grad=False)
        self._all_reduce()
        for optimizer, scheduler in zip(self.optimizers, self.schedulers, strict=True):
            optimizer.step()
            scheduler.step()
        self.step += 1
        for average in self.averages.values():
            average.update(self._float_state, self.step, self.total_steps)
        return loss_sum, correct, count

    def _all_reduce(self) -> None:
        """Sum the gradients and average the running statistics over the ranks: one
        all-reduce of the flat array, shared with torch through `torch.from_numpy`."""
        if not self.world.distributed:
            return
        stats = [value for _, value in self._running_stats()]
        ends = np.cumsum([value.size for value in stats], dtype=int)
        tail = self.flat.size - (ends[-1] if stats else 0)
        slots = [self.flat[tail + end - value.size:tail + end]
                 for end, value in zip(ends, stats, strict=True)]
        for slot, value in zip(slots, stats, strict=True):
            slot[:] = value.reshape(-1)
        self.world.all_reduce(torch.from_numpy(self.flat))
        for slot, value in zip(slots, stats, strict=True):
            value.reshape(-1)[:] = slot / self.world.size

    @property
    def lr(self) -> float:
        """Learning rate of the main parameter group for the next step."""
        return self.optimizer.param_groups[-1]["lr"]

    def evaluate(self, split: Split, tta_levels: Sequence[int]) -> dict[int, EvalResult]:
        """Loss and accuracy on `split` at each TTA level, through the same evaluation code
        as the torch engine."""
        facade = TorchFacade(self.model, float(self.output_scale))
        return evaluate_levels(facade, split, tta_levels, self.config["eval_batch_size"])

    def num_parameters(self) -> int:
        """Number of parameters, trainable or frozen."""
        return sum(p.size for p in self.model.parameters())

    def save_model(self, run: RunDir, classes: list[str]) -> None:
        """Write `model.pt` (the PyNet weights in the torch network, for `test`, `predict` and
        the report) and `model.npz` (the PyNet model file, logit scale folded into the head)."""
        model = build_model(self.config["model"])
        model.load_state_dict(to_torch_state(self.model))
        run.save_model(model_checkpoint(model, self.config, classes))
        deployed = build_layers(self.config["model"], self.nn)
        deployed.load_state_dict(self.model.state_dict())
        fold_output_scale(deployed.eval(), float(self.output_scale)).save(
            run.path / PYNET_MODEL_NAME)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as tensors; the model under torch's names."""
        return {"model": to_torch_state(self.model),
                **optimizer_states(self.optimizers, self.schedulers, _tensors),
                "step": self.step,
                **{key: _tensors(self.averages[key].slow) if key in self.averages else None
                   for key in WEIGHT_AVERAGES}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by `state_dict`."""
        load_torch_state(self.model, state["model"])
        load_optimizer_states(state, self.optimizers, self.schedulers, _arrays)
        self.step = state["step"]
        for key, average in self.averages.items():
            average.slow = _arrays(state[key])
