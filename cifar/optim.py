"""Muon for convolution filters, the torch version (airbench94_muon's variant).

`torch.optim.Muon` takes 2-D parameters only. This one takes convolution filters (or any
tensor, flattened to out_features x rest), renormalises each filter bank before its step, and
otherwise keeps torch's conventions: momentum buffer, Nesterov, the quintic Newton-Schulz
orthogonalisation (`spec.optim.orthogonalize`, shared with the PyNet version
`spec.optim.Muon`, which the tests check against this one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from spec.optim import orthogonalize


class Muon(torch.optim.Optimizer):
    """Momentum orthogonalised by Newton-Schulz, for convolution filters (airbench94_muon)::

        buf = momentum * buf + grad
        g = grad + momentum * buf (nesterov) or buf
        p *= sqrt(out_channels) / ||p||          (renormalize: the filters' scale is
                                                   irrelevant before a BatchNorm)
        p -= lr * orthogonalize(g as out_channels x (in_channels * kh * kw))

    Args:
        params: the filters (tensors of 2 or more dimensions) or parameter groups.
        lr: step size; an orthogonalised step has unit singular values.
        momentum: momentum factor.
        nesterov: use Nesterov momentum.
        ns_steps: Newton-Schulz iterations (3 in airbench94_muon, 5 in torch.optim.Muon).
        renormalize: rescale each parameter to Frobenius norm sqrt(out_channels) before
            its step.
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.24, momentum: float = 0.6,
                 nesterov: bool = True, ns_steps: int = 3, renormalize: bool = True) -> None:
        if lr < 0:
            raise ValueError(f"Muon: invalid learning rate {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"Muon: momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum <= 0:
            raise ValueError("Muon: Nesterov momentum requires a momentum")
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "ns_steps": ns_steps, "renormalize": renormalize})
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() < 2:
                    raise ValueError(f"Muon: expected filters of 2 or more dimensions, got a "
                                     f"parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad)
                g = p.grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                if group["renormalize"]:
                    p.mul_(len(p) ** 0.5 / p.norm())
                update = orthogonalize(g.reshape(len(g), -1), group["ns_steps"])
                p.add_(update.view_as(p), alpha=-group["lr"])
