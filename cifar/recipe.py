"""The training recipe, written once for both engines in terms of parameter names and layer
kinds: parameter groups, per-epoch trainability, the LR schedule, the weight averages
(Lookahead, EMA) and the data-dependent initialisation. `cifar.engine` applies it to a torch
model, `cifar.pynet.engine` to a PyNet model; their parameters share torch's names
("groups.0.2.bias").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cifar.distributed import World
from cifar.errors import DivergenceError
from cifar.models import is_frozen, whitening_weight
from cifar.settings import check_table, is_count, is_number


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


def muon_filters(params: list[tuple[str, str]], config: dict[str, Any]) -> list[str]:
    """Names of the parameters that Muon trains when `config["muon"]` is set: the
    convolution filters that train (airnet's 3x3 convolutions, not its frozen whitening)."""
    if not config.get("muon"):
        return []
    return [name for name, layer in params if layer == "Conv2d" and name.endswith(".weight")
            and not is_frozen(config["model"], name, layer)]


def param_groups(params: list[tuple[str, str]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """Optimiser groups of parameter names, from (name, layer class name) pairs, for the
    parameters that `muon_filters` leaves to the main optimiser. SGD: biases take
    `bias_lr_scale` times the learning rate and 1/`bias_lr_scale` of the weight decay, the
    rest the config's; the biases are the BatchNorm biases (airbench94), or every bias when
    Muon trains the filters (airbench94_muon). Adam: one group."""
    filters = set(muon_filters(params, config))
    params = [(name, layer) for name, layer in params if name not in filters]
    names = [name for name, _ in params]
    if config["optimizer"] == "adam":
        return [{"params": names, "lr": config["lr"], "weight_decay": config["weight_decay"]}]
    if config["optimizer"] != "sgd":
        raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {config['optimizer']!r}")
    biases = [name for name, layer in params
              if name.endswith(".bias") and (filters or layer == "BatchNorm2d")]
    others = [name for name in names if name not in biases]
    scale = config["bias_lr_scale"]
    return [{"params": biases, "lr": config["lr"] * scale,
             "weight_decay": config["weight_decay"] / scale},
            {"params": others, "lr": config["lr"], "weight_decay": config["weight_decay"]}]


def trainable(name: str, layer: str, epoch: int, config: dict[str, Any]) -> bool:
    """Whether parameter `name` (of a `layer`) trains in `epoch`: never if the architecture
    freezes it; the whitening bias for the first `whiten_bias_epochs` epochs only."""
    if is_frozen(config["model"], name, layer):
        return False
    return name != "whiten.bias" or epoch < config["whiten_bias_epochs"]


def whitening_init(state: Mapping[str, Any], images: np.ndarray,
                   model_config: dict[str, Any]) -> bool:
    """Set the whitening stem (`whiten.weight`, `whiten.bias` in `state`, tensors or arrays
    written in place) from the normalised training `images`; False if there is no stem."""
    if "whiten.weight" not in state:
        return False
    weight = whitening_weight(images, model_config.get("whiten_kernel", 2))
    state["whiten.weight"][...] = _like(weight, state["whiten.weight"])
    state["whiten.bias"][...] = 0
    return True


def global_step_stats(world: World, loss_sum: float, correct: int, count: int,
                      step: int) -> tuple[float, int, int]:
    """This rank's summed loss, correct predictions and batch size summed over all ranks
    (the global batch); a NaN or infinite loss on any rank stops every rank alike."""
    loss_sum, correct, count = world.sum([loss_sum, correct, count])
    if not np.isfinite(loss_sum):
        raise DivergenceError(f"training diverged: loss is {loss_sum} at step {step}; lower "
                              f"--lr or check the data")
    return loss_sum, int(correct), int(count)


def lookahead_decay(every: int, decay: float, step: int, total_steps: int) -> float | None:
    """The slow weights' decay after optimiser step `step` (1-based), or None if no update is
    due: decay**every * (step/total)**3, and 1 (take the slow weights) at the last step."""
    if step % every and step != total_steps:
        return None
    return 1.0 if step == total_steps else decay**every * (step / total_steps)**3


class Lookahead:
    """airbench's Lookahead over a float state dict (torch tensors or NumPy arrays, updated
    in place): every `every` steps, slow <- lerp(slow, fast) and fast <- slow.

    The slow weights' decay ramps up as decay**every * (step/total)**3, and the last step copies
    the slow weights into the model, so the final model is the averaged one.
    """

    pulls_fast = True  # the model restarts from the slow weights at every update

    def __init__(self, state: Mapping[str, Any], every: int, decay: float) -> None:
        self.every, self.decay = every, decay
        self.slow = {name: _copy(value) for name, value in state.items()}

    def update(self, state: Callable[[], Mapping[str, Any]], step: int,
               total_steps: int) -> None:
        """Apply the update after optimiser step `step` (1-based) when it is due; `state`
        gives the model's float state dict, built only then."""
        decay = lookahead_decay(self.every, self.decay, step, total_steps)
        if decay is None:
            return
        state = state()
        copy_back = self.pulls_fast or step == total_steps
        for name, slow in self.slow.items():
            fast = state[name]
            slow += (fast - slow) * (1 - decay)
            if copy_back:
                fast[...] = slow


class WeightEMA(Lookahead):
    """An exponential moving average of the weights on Lookahead's schedule that leaves the
    model's own weights alone until the last step, which copies the average into it. Beside
    a Lookahead it averages the Lookahead's model."""

    pulls_fast = False


#: The weight averages a config can ask for, in the order they update after a step.
WEIGHT_AVERAGES: dict[str, type[Lookahead]] = {"lookahead": Lookahead, "ema": WeightEMA}
#: What each weight average's table holds (`cifar.settings.check_table`).
AVERAGE_FIELDS = {"every": (lambda every: is_count(every, 1), "a count of steps >= 1"),
                  "decay": (lambda decay: is_number(decay) and 0 <= decay <= 1,
                            "a number from 0 to 1")}


def weight_averages(config: dict[str, Any], state: Mapping[str, Any]
                    ) -> dict[str, Lookahead]:
    """The weight averages `config` asks for ("lookahead", "ema": null or {"every": steps,
    "decay": a number in [0, 1]}) by config key, each starting from `state`."""
    averages = {}
    for key, kind in WEIGHT_AVERAGES.items():
        spec = config.get(key)
        if spec is None:
            continue
        check_table(key, spec, AVERAGE_FIELDS)
        averages[key] = kind(state, spec["every"], spec["decay"])
    return averages


def _copy(value: Any) -> Any:
    return value.detach().clone() if hasattr(value, "detach") else value.copy()


def _like(array: np.ndarray, target: Any) -> Any:
    """`array` as the type of `target`: a torch tensor on its device, or a NumPy array."""
    if hasattr(target, "detach"):
        import torch

        return torch.from_numpy(array).to(target.device, target.dtype)
    return array.astype(target.dtype)
