"""Optimizers with ``torch.optim``'s update rules: SGD (momentum, Nesterov, weight decay),
Adam and AdamW; and Muon for convolution filters, as ``cifar.optim.Muon`` (airbench94_muon).
They update a module's parameter arrays in place from ``module.grads``.

    opt = SGD(net, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    opt.zero_grad(); crit(net(x), y); net.backward(crit.backward()); opt.step()

Unlike torch, an optimizer takes the module rather than ``module.parameters()``, because
PyNet's gradients live in ``module.grads`` by parameter name, not on the arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from spec.module import Module


class Optimizer:
    """Base class, shaped like ``torch.optim.Optimizer``.

    ``param_groups`` is a list of dicts, each with ``"params"`` (parameter *names*, as in
    ``module.named_parameters()``) and its hyper-parameters; a scheduler changes their
    ``"lr"``. By default one group holds every parameter. Parameters in no group are frozen,
    like torch parameters never handed to the optimizer. ``state`` is per parameter name.

    Args:
        module: the PyNet module whose parameters (and ``grads``) are optimised.
        param_groups: optional groups, e.g. ``[{"params": ["0.bias"], "lr": 0.1}, ...]``;
            keys a group omits take the constructor's values.
    """

    def __init__(self, module: Module, param_groups: list[dict[str, Any]] | None = None,
                 **defaults: Any) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: expected a PyNet module, "
                            f"got {type(module).__name__}")
        self.module = module
        self.defaults = defaults
        names = dict(module.named_parameters())
        groups = param_groups if param_groups is not None else [{"params": list(names)}]
        self.param_groups = [{**defaults, **group, "params": list(group["params"])}
                             for group in groups]
        for group in self.param_groups:
            unknown = [name for name in group["params"] if name not in names]
            if unknown:
                raise ValueError(f"{type(self).__name__}: param_groups name parameters "
                                 f"{unknown} that {module.describe()} does not have")
            if group["lr"] < 0:
                raise ValueError(f"{type(self).__name__}: invalid learning rate {group['lr']}")
        self.state: dict[str, dict[str, Any]] = {}

    def zero_grad(self) -> None:
        self.module.zero_grad()

    def step(self) -> None:
        grads = self.module.grads
        params = dict(self.module.named_parameters())
        for group in self.param_groups:
            for name in group["params"]:
                grad = grads.get(name)
                if grad is not None:
                    param = params[name]
                    self._update(param, grad.astype(param.dtype, copy=False),
                                 self.state.setdefault(name, {}), group)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"param_groups": [dict(group) for group in self.param_groups],
                "state": {name: dict(s) for name, s in self.state.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.param_groups = [dict(group) for group in state_dict["param_groups"]]
        self.state = {name: dict(s) for name, s in state_dict["state"].items()}


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``::

        g = grad + weight_decay * p
        buf = g (first step) or momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) or buf
        p -= lr * g
    """

    def __init__(self, module: Module, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, *,
                 param_groups: list[dict[str, Any]] | None = None) -> None:
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(module, param_groups, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
                d: dict[str, Any]) -> None:
        if d["weight_decay"]:
            grad = grad + d["weight_decay"] * param
        if d["momentum"]:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = grad.copy()
            else:
                buf = d["momentum"] * buf + (1 - d["dampening"]) * grad
            state["momentum_buffer"] = buf
            grad = grad + d["momentum"] * buf if d["nesterov"] else buf
        param -= d["lr"] * grad


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (``weight_decay`` is an L2 term added to the gradient)::

        m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    decoupled_weight_decay = False

    def __init__(self, module: Module, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *,
                 param_groups: list[dict[str, Any]] | None = None) -> None:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        super().__init__(module, param_groups, lr=lr, betas=tuple(betas), eps=eps,
                         weight_decay=weight_decay)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
                d: dict[str, Any]) -> None:
        beta1, beta2 = d["betas"]
        if d["weight_decay"]:
            if self.decoupled_weight_decay:
                param *= 1 - d["lr"] * d["weight_decay"]
            else:
                grad = grad + d["weight_decay"] * param
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
        state["step"] += 1
        step = state["step"]
        state["exp_avg"] = state["exp_avg"] + (1 - beta1) * (grad - state["exp_avg"])
        state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad * grad
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        step_size = d["lr"] / (1 - beta1**step)
        denom = np.sqrt(state["exp_avg_sq"]) / bias_correction2_sqrt + d["eps"]
        param -= step_size * state["exp_avg"] / denom


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay,
    ``p *= 1 - lr * weight_decay`` before the Adam step. Default ``weight_decay=1e-2``."""

    decoupled_weight_decay = True

    def __init__(self, module: Module, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, *,
                 param_groups: list[dict[str, Any]] | None = None) -> None:
        super().__init__(module, lr, betas, eps, weight_decay, param_groups=param_groups)


#: Quintic Newton-Schulz coefficients of Keller Jordan's Muon (also torch.optim.Muon's).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(update: Any, steps: int, eps: float = 1e-7) -> Any:
    """Approximately U V^T of the SVD U S V^T of the 2-D `update` (a NumPy array or a torch
    tensor), by `steps` quintic Newton-Schulz iterations X <- aX + (bA + cA^2)X, A = XX^T,
    on the short side, after scaling X to unit Frobenius norm (Jordan et al., "Muon", 2024)."""
    a, b, c = NS_COEFFICIENTS
    tall = update.shape[0] > update.shape[1]
    x = update.T if tall else update
    x = x / ((x * x).sum() ** 0.5 + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(Optimizer):
    """Momentum orthogonalised by Newton-Schulz, for convolution filters, as
    ``cifar.optim.Muon`` (torch)::

        buf = momentum * buf + grad
        g = grad + momentum * buf (nesterov) or buf
        p *= sqrt(out_channels) / ||p||          (renormalize)
        p -= lr * orthogonalize(g as out_channels x (in_channels * kh * kw))

    Every parameter in its groups must have 2 or more dimensions.
    """

    def __init__(self, module: Module, lr: float = 0.24, momentum: float = 0.6,
                 nesterov: bool = True, ns_steps: int = 3, renormalize: bool = True, *,
                 param_groups: list[dict[str, Any]] | None = None) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"Muon: momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum <= 0:
            raise ValueError("Muon: Nesterov momentum requires a momentum")
        super().__init__(module, param_groups, lr=lr, momentum=momentum, nesterov=nesterov,
                         ns_steps=ns_steps, renormalize=renormalize)
        params = dict(module.named_parameters())
        flat = [name for group in self.param_groups for name in group["params"]
                if params[name].ndim < 2]
        if flat:
            raise ValueError(f"Muon: expected filters of 2 or more dimensions, got {flat}")

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
                d: dict[str, Any]) -> None:
        buf = state.get("momentum_buffer")
        buf = grad.copy() if buf is None else d["momentum"] * buf + grad
        state["momentum_buffer"] = buf
        g = grad + d["momentum"] * buf if d["nesterov"] else buf
        if d["renormalize"]:
            param *= param.dtype.type(np.sqrt(len(param)) / np.linalg.norm(param))
        update = orthogonalize(g.reshape(len(g), -1), d["ns_steps"])
        param -= d["lr"] * update.reshape(param.shape)


class LRScheduler:
    """Base class, as ``torch.optim.lr_scheduler.LRScheduler``: sets every group's ``lr`` from
    its base learning rate and the number of :meth:`step` calls so far (``last_epoch``)."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr_at(self, base_lr: float, step: int) -> float:
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self.lr_at(base_lr, self.last_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_lrs = list(state_dict["base_lrs"])
        self.last_epoch = state_dict["last_epoch"]


class LambdaLR(LRScheduler):
    """``torch.optim.lr_scheduler.LambdaLR``: ``lr = base_lr * lr_lambda(step)``."""

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float]) -> None:
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, step: int) -> float:
        return base_lr * self.lr_lambda(step)


class CosineAnnealingLR(LRScheduler):
    """``torch.optim.lr_scheduler.CosineAnnealingLR`` in closed form: after ``t`` calls of
    :meth:`step`, ``lr = eta_min + (base_lr - eta_min) (1 + cos(pi t / T_max)) / 2``."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, step: int) -> float:
        cosine = (1 + math.cos(math.pi * step / self.T_max)) / 2
        return self.eta_min + (base_lr - self.eta_min) * cosine
