"""Argument normalisation and output-size arithmetic shared by the layer specs."""

from __future__ import annotations

import numpy as np


def pair(value: int | tuple[int, int], layer: str, name: str, minimum: int = 0) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(3, 2)`` stays; anything else is a clear error."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value!r}")
    return out


def positive_int(value: int, layer: str, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return int(value)


def float_dtype(dtype: object, layer: str) -> np.dtype:
    """The parameter dtype: float32 unless float64 is asked for, as in torch."""
    resolved = np.dtype(np.float32 if dtype is None else dtype)
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{layer}: dtype must be float32 or float64, got {resolved}")
    return resolved


def window_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                       ceil_mode: bool = False) -> int:
    """Output length of a sliding window, as in torch's Conv2d and MaxPool2d docs."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    # torch: with ceil_mode the last window must start inside the input or the left padding
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out
