"""A faster 2x2 max-pool for the torch engine's bfloat16 channels_last step.

torch's CPU max-pool on bfloat16 channels_last maps runs at about 0.5 G input elements per
second, and its backward zero-fills the input gradient before scattering into it; in the
`fast` network's step at batch 2000 its three pools took ~0.5 s of ~3 s (one thread). This one
reads each 2x2 window once, keeps which of its four inputs won (one byte per output), and
writes every input gradient exactly once. It gives the same outputs and gradients as
`torch.nn.functional.max_pool2d`, bit for bit: the first maximum of a window in row-major
order wins a tie, -0 and +0 tie, a NaN wins (the last one, as in torch), and an odd last row
or column is dropped (floor mode). (Only a NaN's payload bits may differ: torch's own
kernels pass them through on some shapes and canonicalise them on others.)

The kernels compare the raw bfloat16 bits (`_order_key`), since NumPy and numba have no
bfloat16 type. They are serial and release the GIL, and run over pieces of their rows on
PyNet's thread pool (`backends.threads`), in as many pieces as torch has threads. (numba's
own parallel pool starts one thread per core in every process and keeps them busy: under
torchrun with 2 processes x 1 thread the run trained 2.6x slower with it.)

`MaxPool2d` is `torch.nn.MaxPool2d` with this path for the shapes it covers and torch's for
everything else; `build_model` puts it in every network.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch.nn.modules.utils import _pair

from backends.threads import parallel_range

# A NaN's key is this plus its place in the window: above +inf's (0x7F80), so that a NaN beats
# every number and a later NaN an earlier one, as in torch.
_NAN_KEYS = 32764


@numba.njit(inline="always")
def _order_key(bits: np.int16, place: int) -> np.int16:
    """An int16 that orders as the bfloat16 with these bits does: negative floats are
    sign-magnitude, so their magnitude bits are flipped; -0 maps to +0's key."""
    if (bits & 0x7FFF) > 0x7F80:
        return _NAN_KEYS + place
    return bits if bits >= 0 else (bits ^ 0x7FFF) + 1


@numba.njit(inline="always")
def _challenge(best: np.int16, best_key: np.int16, place: int, value: np.int16, k: int
               ) -> tuple[np.int16, np.int16, int]:
    """The window's maximum so far after `value`, its k-th element, has challenged it."""
    key = _order_key(value, k)
    if key > best_key:
        return value, key, k
    return best, best_key, place


@numba.njit(cache=True, nogil=True)
def _forward(x: np.ndarray, y: np.ndarray, winner: np.ndarray, start: int, stop: int) -> None:
    """y[n, i, j, c] = max of x[n, 2i:2i+2, 2j:2j+2, c] (NHWC bits); winner = 0-3, its place;
    for the output rows (n, i) numbered start to stop."""
    rows, cols = y.shape[1], y.shape[2]
    for task in range(start, stop):
        n, i = task // rows, task % rows
        for j in range(cols):
            top_left, top_right = x[n, 2 * i, 2 * j], x[n, 2 * i, 2 * j + 1]
            bottom_left, bottom_right = x[n, 2 * i + 1, 2 * j], x[n, 2 * i + 1, 2 * j + 1]
            out, won = y[n, i, j], winner[n, i, j]
            for c in range(out.shape[0]):  # unrolled over the window: it vectorizes
                best, best_key, place = top_left[c], _order_key(top_left[c], 0), 0
                best, best_key, place = _challenge(best, best_key, place, top_right[c], 1)
                best, best_key, place = _challenge(best, best_key, place, bottom_left[c], 2)
                best, best_key, place = _challenge(best, best_key, place, bottom_right[c], 3)
                out[c], won[c] = best, place


@numba.njit(cache=True, nogil=True)
def _backward(dy: np.ndarray, winner: np.ndarray, dx: np.ndarray, start: int, stop: int
              ) -> None:
    """dx[n, h, w, c] = dy of the window that (h, w) won, 0 elsewhere (NHWC bits); for the
    input rows (n, h) numbered start to stop."""
    height, width = dx.shape[1], dx.shape[2]
    rows, cols = dy.shape[1], dy.shape[2]
    for task in range(start, stop):
        n, h = task // height, task % height
        i = h // 2
        for w in range(width):
            out, j = dx[n, h, w], w // 2
            if i >= rows or j >= cols:  # the odd last row or column that floor mode drops
                out[:] = 0
                continue
            place = 2 * (h - 2 * i) + (w - 2 * j)
            grad, won = dy[n, i, j], winner[n, i, j]
            for c in range(out.shape[0]):
                out[c] = grad[c] if won[c] == place else 0


def _bits(nhwc: torch.Tensor) -> np.ndarray:
    return nhwc.view(torch.int16).numpy()


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.empty((n, h // 2, w // 2, c), dtype=x.dtype)
        winner = torch.empty((n, h // 2, w // 2, c), dtype=torch.uint8)
        args = _bits(x.permute(0, 2, 3, 1)), _bits(y), winner.numpy()
        parallel_range(lambda start, stop: _forward(*args, start, stop), n * (h // 2),
                       threads=torch.get_num_threads())
        ctx.save_for_backward(winner)
        ctx.input_shape = (n, h, w, c)
        return y.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, dy: torch.Tensor) -> torch.Tensor:
        (winner,) = ctx.saved_tensors
        dy = dy.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        dx = torch.empty(ctx.input_shape, dtype=dy.dtype)
        args = _bits(dy), winner.numpy(), _bits(dx)
        parallel_range(lambda start, stop: _backward(*args, start, stop), len(dx) * dx.shape[1],
                       threads=torch.get_num_threads())
        return dx.permute(0, 3, 1, 2)


class MaxPool2d(torch.nn.MaxPool2d):
    """`torch.nn.MaxPool2d`, with a faster CPU path for 2x2 windows of stride 2 (no padding,
    dilation or ceil mode, no indices returned) on bfloat16 channels_last maps; same results.

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, C, H // 2, W // 2) on the fast path; torch's otherwise.
    """

    def _fast_path(self, x: torch.Tensor) -> bool:
        return (_pair(self.kernel_size) == (2, 2) and _pair(self.stride) == (2, 2)
                and _pair(self.padding) == (0, 0) and _pair(self.dilation) == (1, 1)
                and not self.ceil_mode and not self.return_indices
                and x.device.type == "cpu" and x.dtype == torch.bfloat16 and x.dim() == 4
                and min(x.shape[2:]) >= 2
                and x.is_contiguous(memory_format=torch.channels_last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _MaxPool2x2.apply(x) if self._fast_path(x) else super().forward(x)


def with_fast_max_pool(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every `torch.nn.MaxPool2d` replaced by this module's `MaxPool2d` (same
    arguments; pools have no parameters or buffers, so the state dict is unchanged)."""
    for name, layer in list(model.named_children()):
        if type(layer) is torch.nn.MaxPool2d:
            fast = MaxPool2d(layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                             layer.return_indices, layer.ceil_mode)
            setattr(model, name, fast)
        else:
            with_fast_max_pool(layer)
    return model
