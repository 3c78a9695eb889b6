"""Batched tensor pipeline: normalisation, random crop/flip augmentation and epoch batching.

Augmentation works on whole uint8 batches on the training device, so no DataLoader workers are
needed. Each epoch's randomness comes from a generator seeded by (seed, epoch), which makes an
epoch reproducible on its own and lets a resumed run replay it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from cifar.data import Split

CIFAR_MEAN = (125.31, 122.95, 113.87)
CIFAR_STD = (62.99, 62.09, 66.70)


def normalize(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Map uint8 N x 3 x H x W images to float32, standardised per channel."""
    mean = torch.tensor(CIFAR_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=images.device).view(1, 3, 1, 1)
    x = (images.float() - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def random_crop(images: torch.Tensor, pad: int, generator: torch.Generator,
                part: slice = slice(None), size: int | None = None) -> torch.Tensor:
    """Crop a `size` x `size` window (default: the image's own size) from each image at a
    random offset after reflect-padding by `pad` pixels. The offsets are drawn for all of
    `images`; only those in `part` are cropped and returned."""
    h, w = images.shape[2:]
    out_h, out_w = (h, w) if size is None else (size, size)
    if pad == 0 and (out_h, out_w) == (h, w):
        return images[part]
    if not 0 < out_h <= h + 2 * pad or not 0 < out_w <= w + 2 * pad:
        raise ValueError(f"crop size: expected 1 to {min(h, w) + 2 * pad} pixels for "
                         f"{h}x{w} images padded by {pad}, got {size}")
    n = len(images)
    dy = torch.randint(0, h + 2 * pad - out_h + 1, (n,), generator=generator)[part]
    dx = torch.randint(0, w + 2 * pad - out_w + 1, (n,), generator=generator)[part]
    images = images[part]
    device = images.device
    padded = F.pad(images.float(), (pad,) * 4, mode="reflect").to(images.dtype) if pad \
        else images
    rows = (dy.to(device)[:, None] + torch.arange(out_h, device=device))[:, None, :, None]
    cols = (dx.to(device)[:, None] + torch.arange(out_w, device=device))[:, None, None, :]
    index = torch.arange(len(images), device=device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[index, channels, rows, cols]


def jitter_color(x: torch.Tensor, brightness: float, contrast: float, n: int,
                 generator: torch.Generator, part: slice = slice(None)) -> torch.Tensor:
    """Shift each normalised image by U(-brightness, brightness) and scale it by
    1 + U(-contrast, contrast), in units of the channels' standard deviation (the colour
    jitter of hiverge's CIFAR-10 speedrun). The factors are drawn for a batch of `n` images,
    of which `x` holds those in `part`."""
    shift = (2 * torch.rand(n, generator=generator) - 1)[part] * brightness
    scale = 1 + (2 * torch.rand(n, generator=generator) - 1)[part] * contrast
    return (x + shift.to(x.device)[:, None, None, None]) * scale.to(x.device)[:, None, None, None]


def flip_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose entry in the boolean vector `flip` is set."""
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(3), images)


def flip_mask(n: int, seed: int, epoch: int, mode: str, generator: torch.Generator
              ) -> torch.Tensor | None:
    """Which of `n` images to mirror this epoch: "random" draws each time (p=1/2);
    "alternate" draws once per seed and inverts the choice every other epoch, so every image
    is seen both ways in any two consecutive epochs; "none" mirrors nothing (None)."""
    if mode == "random":
        return torch.rand(n, generator=generator) < 0.5
    if mode == "alternate":
        first = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5
        return first ^ bool(epoch % 2)
    if mode != "none":
        raise ValueError(f"flip: expected 'random', 'alternate' or 'none', got {mode!r}")
    return None


EPOCH_SEED_STRIDE = 100_003
#: The largest |seed| whose epochs' generator seeds (below) fit in torch's int64.
MAX_SEED = 2**63 // EPOCH_SEED_STRIDE - 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that drives the shuffling and augmentation of one epoch."""
    return torch.Generator().manual_seed(seed * EPOCH_SEED_STRIDE + epoch)


def train_batches(
    split: Split, batch_size: int, seed: int, epoch: int, crop_pad: int, flip: str,
    channels_last: bool = False, shard: Callable[[int], slice] | None = None,
    crop_size: int | None = None, color_jitter: dict[str, float] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield shuffled, augmented, normalised (inputs, labels) batches; the last partial one too.
    The crops are `crop_size` pixels square (default: the images' size); `color_jitter`
    ({"brightness": b, "contrast": c}, `jitter_color`) perturbs the normalised images.

    With `shard` (`World.shard`), yield only this process's part of each global batch: the
    order and augmentation are drawn for the whole batch, as in a single process."""
    generator = epoch_generator(seed, epoch)
    n = len(split.labels)
    order = torch.randperm(n, generator=generator)
    flips = flip_mask(n, seed, epoch, flip, generator)
    for start in range(0, n, batch_size):
        batch = order[start:start + batch_size]
        part = shard(len(batch)) if shard else slice(None)
        images = random_crop(split.images[batch.to(split.images.device)], crop_pad, generator,
                             part, crop_size)
        idx = batch[part]
        if flips is not None:
            images = flip_where(images, flips[idx])
        inputs = normalize(images, channels_last)
        if color_jitter:
            inputs = jitter_color(inputs, color_jitter["brightness"], color_jitter["contrast"],
                                  len(batch), generator, part)
        yield inputs, split.labels[idx.to(split.labels.device)]


def eval_batches(
    images: torch.Tensor, batch_size: int, channels_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield normalised batches of `images` in order, without augmentation."""
    for start in range(0, len(images), batch_size):
        yield normalize(images[start:start + batch_size], channels_last)
