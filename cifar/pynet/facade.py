"""A PyNet model behind a torch `nn.Module` call, so the evaluation and prediction code
(`cifar.evaluate`) runs PyNet models unchanged: tensors in, NumPy through PyNet, tensors out."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spec.module import Module


class TorchFacade(nn.Module):
    """Calls PyNet `model` on float32 CPU copies of its inputs; logits times `output_scale`.

    It holds no torch parameters: `train()`/`eval()` switch the PyNet model's mode.
    """

    def __init__(self, model: Module, output_scale: float = 1.0) -> None:
        super().__init__()
        self.pynet = model
        self.output_scale = output_scale
        self.training = model.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        logits = self.pynet(inputs)
        if self.output_scale != 1.0:
            logits = logits * logits.dtype.type(self.output_scale)
        return torch.from_numpy(logits)

    def train(self, mode: bool = True) -> TorchFacade:
        super().train(mode)
        self.pynet.train(mode)
        return self
