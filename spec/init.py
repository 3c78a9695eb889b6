"""Default initialisation, drawn the way ``torch.nn.init`` draws it.

Conv2d and Linear use ``kaiming_uniform_(weight, a=sqrt(5))``, which reduces to
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias
(``torch.nn.Linear.reset_parameters``). The generator is NumPy's, so the draws follow
torch's distributions, not its exact random stream.
"""

from __future__ import annotations

import math

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator behind every default initialisation."""
    global _generator
    _generator = np.random.default_rng(seed)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain ``torch.nn.init.calculate_gain`` gives for 'linear', 'relu' and 'leaky_relu'."""
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def uniform(shape: tuple[int, ...], bound: float, dtype: np.dtype) -> np.ndarray:
    return _generator.uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, dtype: np.dtype,
                    a: float = math.sqrt(5)) -> np.ndarray:
    """``torch.nn.init.kaiming_uniform_`` with mode='fan_in', nonlinearity='leaky_relu'."""
    bound = calculate_gain("leaky_relu", a) * math.sqrt(3.0 / fan_in)
    return uniform(shape, bound, dtype)


def fan_in_bias(shape: tuple[int, ...], fan_in: int, dtype: np.dtype) -> np.ndarray:
    """The bias draw of torch's Conv2d and Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform(shape, 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0, dtype)
