"""The PyTorch training engine: model, optimiser, LR schedule and weight averages.

The engine knows nothing about metrics or data loading; the trainer feeds it batches, asks for
its state and evaluations, and has it write its model files into the run directory. The recipe
(groups, trainability, schedule, weight averages, whitening) is `cifar.recipe`, shared with
the PyNet engine (`cifar.pynet.engine`), which offers the same methods.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from backends.memory import reuse_freed_memory
from cifar.checkpoint import load_optimizer_states, model_checkpoint, optimizer_states
from cifar.data import Split
from cifar.distributed import World
from cifar.errors import CifarError
from cifar.evaluate import (
    EvalResult,
    autocast,
    evaluate_levels,
    has_bf16_kernels,
    resolve_precision,
)
from cifar.models import build_model, count_parameters, named_parameter_layers
from cifar.optim import Muon
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


class Engine:
    """Trains the network of `config["model"]` batch by batch according to a run config.

    In a `World` of several processes the model is wrapped in `DistributedDataParallel`
    (BatchNorm statistics per process, or synchronised with `sync_bn` on CUDA); the loss is
    scaled so that DDP's gradient average equals the gradient of the global batch, and the
    BatchNorm running statistics are averaged over the processes after every step, so every
    rank holds the same model.
    """

    def __init__(self, config: dict[str, Any], steps_per_epoch: int, device: torch.device,
                 world: World | None = None) -> None:
        self.world = world or World()
        reuse_freed_memory()  # every step allocates the same activations again
        model = build_model(config["model"])
        if config.get("sync_bn"):
            if device.type != "cuda":
                raise CifarError(f"--sync-bn: torch's SyncBatchNorm runs on CUDA only, got "
                                 f"device {device.type}; drop --sync-bn to keep per-process "
                                 f"BatchNorm statistics")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(device)
        if config["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config, self.device = config, device
        self.precision = self._agreed_precision()
        self.total_steps = steps_per_epoch * config["epochs"]
        self.step = 0
        self.params = named_parameter_layers(self.model)
        self.optimizer = self._make_optimizer()
        muon = self._make_muon()
        self.optimizers = [self.optimizer, muon] if muon is not None else [self.optimizer]
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(config["schedule"], s, self.total_steps))
            for opt in self.optimizers]
        self.averages = self._make_averages()
        self.forward = self._wrap()

    def _agreed_precision(self) -> str:
        """`config["precision"]` resolved on this device ("auto": bf16 where there are bf16
        kernels); bf16 only if every process resolves it so, so that the ranks agree."""
        asked = self.config["precision"]
        if asked == "bf16" and not has_bf16_kernels(self.device):
            warnings.warn(f"precision bf16: {self.device} has no bf16 kernels, so autocast "
                          f"takes reference kernels, about 13x slower than fp32 on an AVX2 CPU; "
                          f"--precision auto picks fp32 there", stacklevel=2)
        local = resolve_precision(asked, self.device)
        everywhere = self.world.sum([float(local == "bf16")])[0] == self.world.size
        return "bf16" if everywhere else "fp32"

    def _wrap(self) -> torch.nn.Module:
        """The callable model: DDP around it in a world of several processes (built for the
        parameters that train now), compiled if the config says so."""
        model = self.model
        self._wrapped_for = self._trained_now()
        if self.world.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=device_ids, forward_sync_buffers=False)
        return torch.compile(model) if self.config["compile"] else model

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups = [{**group, "params": [self.model.get_parameter(n) for n in group["params"]]}
                  for group in param_groups(self.params, cfg)]
        if cfg["optimizer"] == "adam":
            return torch.optim.Adam(groups)
        return torch.optim.SGD(groups, momentum=cfg["momentum"], nesterov=cfg["nesterov"])

    def _make_muon(self) -> Muon | None:
        """Muon for the convolution filters (`cifar.recipe.muon_filters`), if the config
        asks for it."""
        names = muon_filters(self.params, self.config)
        if not names:
            return None
        return Muon([self.model.get_parameter(name) for name in names], **self.config["muon"])

    def _float_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.model.state_dict().items() if v.is_floating_point()}

    def _make_averages(self) -> dict[str, Lookahead]:
        return weight_averages(self.config, self._float_state())

    @torch.no_grad()
    def prepare(self, train_inputs: torch.Tensor) -> None:
        """Data-dependent initialisation of a fresh model (`cifar.recipe.whitening_init`);
        then every rank takes rank 0's weights, and the weight averages start from them."""
        whitening_init(self.model.state_dict(), train_inputs.cpu().numpy(), self.config["model"])
        for value in self.model.state_dict().values():
            self.world.broadcast(value)
        self.averages = self._make_averages()

    def start_epoch(self, epoch: int) -> None:
        """Set per-epoch trainability (`cifar.recipe.trainable`) and training mode; DDP is
        rebuilt when the set of trained parameters changes."""
        for name, layer in self.params:
            self.model.get_parameter(name).requires_grad = trainable(name, layer, epoch,
                                                                     self.config)
        if self.world.distributed and self._trained_now() != self._wrapped_for:
            self.forward = self._wrap()
        self.model.train()

    def _trained_now(self) -> list[str]:
        return [name for name, p in self.model.named_parameters() if p.requires_grad]

    def train_step(self, inputs: torch.Tensor,
                   labels: torch.Tensor) -> tuple[float, int, int]:
        """One optimiser step on this rank's part of a global batch; returns the global
        batch's summed loss, number of correct predictions and size."""
        with autocast(self.device, self.precision):
            logits = self.forward(inputs)
        losses = F.cross_entropy(logits.float(), labels, reduction="none",
                                 label_smoothing=self.config["label_smoothing"])
        correct = int((logits.argmax(1) == labels).sum())
        loss_sum, correct, count = global_step_stats(
            self.world, float(losses.detach().sum()), correct, len(labels), self.step + 1)
        scale = 1.0 if self.config["loss_reduction"] == "sum" else 1.0 / count
        self.model.zero_grad(set_to_none=True)
        (losses.sum() * (scale * self.world.size)).backward()  # DDP averages over the ranks
        for optimizer, scheduler in zip(self.optimizers, self.schedulers, strict=True):
            optimizer.step()
            scheduler.step()
        self.step += 1
        self._average_running_stats()
        for average in self.averages.values():
            average.update(self._float_state, self.step, self.total_steps)
        return loss_sum, correct, count

    @torch.no_grad()
    def _average_running_stats(self) -> None:
        """BatchNorm running statistics: the mean over the ranks (one all-reduce)."""
        if not self.world.distributed:
            return
        buffers = [b for b in self.model.buffers() if b.is_floating_point()]
        if buffers:
            flat = torch.cat([b.reshape(-1) for b in buffers])
            self.world.all_reduce(flat)
            flat /= self.world.size
            for buffer, value in zip(buffers, flat.split([b.numel() for b in buffers]),
                                     strict=True):
                buffer.copy_(value.view_as(buffer))

    @property
    def lr(self) -> float:
        """Learning rate of the main parameter group for the next step."""
        return self.optimizer.param_groups[-1]["lr"]

    def evaluate(self, split: Split, tta_levels: Sequence[int]) -> dict[int, EvalResult]:
        """Loss and accuracy of the current model on `split` at each TTA level."""
        cfg = self.config
        return evaluate_levels(self.model, split, tta_levels, cfg["eval_batch_size"],
                               self.precision, cfg["channels_last"])

    def num_parameters(self) -> int:
        """Number of parameters, trainable or frozen."""
        return count_parameters(self.model)

    def save_model(self, run: RunDir, classes: list[str]) -> None:
        """Write the inference checkpoint `model.pt` of the current weights into `run`."""
        run.save_model(model_checkpoint(self.model, self.config, classes))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimisers, schedulers, weight averages and step."""
        return {"model": self.model.state_dict(),
                **optimizer_states(self.optimizers, self.schedulers), "step": self.step,
                **{key: self.averages[key].slow if key in self.averages else None
                   for key in WEIGHT_AVERAGES}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by `state_dict`."""
        self.model.load_state_dict(state["model"])
        load_optimizer_states(state, self.optimizers, self.schedulers)
        self.step = state["step"]
        for key, average in self.averages.items():
            for name, value in state[key].items():
                average.slow[name].copy_(value)


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
