"""Sequential: a chain of layers, as ``torch.nn.Sequential``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from spec.module import Module


class Sequential(Module):
    """Runs its layers in order; ``backward`` runs them in reverse.

    Takes the layers as arguments, numbered ``"0"``, ``"1"``, ..., or one ``OrderedDict`` of
    named layers, as torch does. State-dict keys and gradient names are dotted as in torch:
    ``"0.weight"``, ``"1.running_mean"``, or ``"stem.weight"`` for a named child.

    Example:
        >>> nn = backends.get("numpy")
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten())
        >>> named = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 8, 3), act=nn.ReLU()))
    """

    def __init__(self, *layers: Module | OrderedDict[str, Module]) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], OrderedDict):
            named = list(layers[0].items())
        else:
            named = [(str(index), layer) for index, layer in enumerate(layers)]
        for name, layer in named:
            self.add_module(name, layer)

    @property
    def child_names(self) -> list[str] | None:
        """The children's names, or None where they are numbered 0, 1, ... (the default)."""
        names = list(self._modules)
        return None if names == [str(i) for i in range(len(names))] else names

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

    def _parameter_backward(self, dy: np.ndarray) -> None:
        """Stop at the first layer with parameters, which skips its own input gradient."""
        layers = list(self)
        first = next((i for i, layer in enumerate(layers) if layer.parameters()), len(layers))
        for index in reversed(range(first, len(layers))):
            dy = layers[index].backward(dy, input_grad=index > first)

    def describe(self) -> str:
        return f"Sequential({len(self)} layers)"
