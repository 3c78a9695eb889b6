"""Sequential: a chain of layers, as ``torch.nn.Sequential``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from spec.module import Module


class Sequential(Module):
    """Runs its layers in order; ``backward`` runs them in reverse.

    State-dict keys and gradient names are dotted as in torch: ``"0.weight"``,
    ``"1.running_mean"``, and so on.

    Example:
        >>> nn = backends.get("numpy")
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten())
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for index, layer in enumerate(layers):
            self.add_module(str(index), layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        for layer in self:
            input_shape = layer.output_shape(input_shape)
        return tuple(input_shape)

    def _check_input(self, x: object) -> None:
        """Each layer checks its own input, naming itself."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self:
            x = layer(x)
        return x

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        for layer in reversed(list(self)):
            dy = layer.backward(dy)
        return dy

    def describe(self) -> str:
        return f"Sequential({len(self)} layers)"
