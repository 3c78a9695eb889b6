"""Reading CIFAR-10 files, errors on bad data, and the batched augmentation pipeline."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixtures import cifar_root_fixture  # noqa: F401  (pytest fixture)

from cifar.data import batches_dir, load_batch, load_classes, load_split
from cifar.errors import DataError
from cifar.pipeline import (
    flip_mask,
    flip_where,
    jitter_color,
    normalize,
    random_crop,
    train_batches,
)


def test_load_split_returns_uint8_images_and_int64_labels(cifar_root: Path) -> None:
    train = load_split(cifar_root, train=True)
    test = load_split(cifar_root, train=False)
    assert train.images.shape == (200, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (60, 3, 32, 32) and test.labels.dtype == torch.int64
    assert load_classes(batches_dir(cifar_root))[3] == "cat"


def test_data_dir_may_name_the_batches_folder_itself(cifar_root: Path) -> None:
    inner = cifar_root / "cifar-10-batches-py"
    assert batches_dir(inner) == batches_dir(cifar_root) == inner
    assert torch.equal(load_split(inner, train=False).labels,
                       load_split(cifar_root, train=False).labels)


def test_test_split_needs_only_test_batch_and_meta(cifar_root: Path) -> None:
    folder = cifar_root / "cifar-10-batches-py"
    for i in range(1, 6):
        (folder / f"data_batch_{i}").unlink()
    assert len(load_split(cifar_root, train=False).labels) == 60
    with pytest.raises(DataError, match="data_batch_1"):
        load_split(cifar_root, train=True, allow_download=False)


def test_missing_data_offline_says_where_to_put_the_files(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(DataError) as info:
        load_split(tmp_path / "nowhere", train=False)
    message = str(info.value)
    assert "nowhere" in message and "CIFAR10_DIR" in message and "unreachable" in message


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape", "not_a_dict"])
def test_damaged_batch_file_error_names_the_file(cifar_root: Path, damage: str) -> None:
    path = cifar_root / "cifar-10-batches-py" / "test_batch"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"this is not a pickle")
    elif damage == "wrong_shape":
        with path.open("wb") as f:
            pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f)
    else:
        with path.open("wb") as f:
            pickle.dump([1, 2, 3], f)
    with pytest.raises(DataError, match="test_batch"):
        load_split(cifar_root, train=False)


def test_labels_out_of_range_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    with path.open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, f)
    with pytest.raises(DataError, match="labels in 0..9"):
        load_batch(path)


def test_random_crop_without_padding_is_identity_and_with_padding_shifts_pixels() -> None:
    images = torch.arange(2 * 3 * 32 * 32).reshape(2, 3, 32, 32).to(torch.uint8)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop(images, 0, generator), images)
    cropped = random_crop(images, 2, generator)
    assert cropped.shape == images.shape and cropped.dtype == torch.uint8
    # An interior pixel of each crop comes from the same image and channel.
    assert all(torch.isin(cropped[i, c, 10:20, 10:20], images[i, c]).all()
               for i in range(2) for c in range(3))


@pytest.mark.parametrize("pad", [0, 2])
def test_random_crop_of_a_smaller_size_takes_windows_of_the_padded_image(pad: int) -> None:
    images = torch.randint(0, 255, (16, 3, 32, 32), dtype=torch.uint8)
    cropped = random_crop(images, pad, torch.Generator().manual_seed(0), size=24)
    assert cropped.shape == (16, 3, 24, 24) and cropped.dtype == torch.uint8
    padded = torch.nn.functional.pad(images.float(), (pad,) * 4, mode="reflect") if pad \
        else images.float()
    windows = padded.unfold(2, 24, 1).unfold(3, 24, 1)  # N, C, rows, cols, 24, 24
    offsets = set()
    for i in range(16):
        match = (windows[i] == cropped[i].float()[:, None, None]).flatten(3).all(3).all(0)
        assert match.any(), f"crop {i} is not a window of its padded image"
        offsets.add(tuple(match.nonzero()[0].tolist()))
    assert len(offsets) > 1, "every crop came from the same offset"


def test_random_crop_larger_than_the_padded_image_is_refused() -> None:
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="crop size: expected 1 to 36 .* got 37"):
        random_crop(images, 2, torch.Generator(), size=37)


def test_flip_where_mirrors_exactly_the_selected_images() -> None:
    images = torch.randint(0, 255, (64, 3, 32, 32), dtype=torch.uint8)
    mask = flip_mask(64, 0, 0, "random", torch.Generator().manual_seed(0))
    flipped = flip_where(images, mask)
    assert torch.equal(flipped[mask], images[mask].flip(3))
    assert torch.equal(flipped[~mask], images[~mask]) and mask.any() and (~mask).any()


def test_alternate_flip_inverts_each_images_choice_every_epoch() -> None:
    generator = torch.Generator()
    masks = [flip_mask(100, 3, epoch, "alternate", generator) for epoch in range(3)]
    assert torch.equal(masks[0], ~masks[1]) and torch.equal(masks[0], masks[2])
    assert flip_mask(100, 3, 0, "none", generator) is None


def test_train_batches_depend_only_on_seed_and_epoch(cifar_root: Path) -> None:
    split = load_split(cifar_root, train=True)

    def first_batch(seed: int, epoch: int) -> torch.Tensor:
        return next(train_batches(split, 32, seed, epoch, crop_pad=2, flip="random"))[0]

    assert torch.equal(first_batch(0, 1), first_batch(0, 1))
    assert not torch.equal(first_batch(0, 1), first_batch(0, 2))
    assert not torch.equal(first_batch(0, 1), first_batch(1, 1))
    batches = list(train_batches(split, 64, 0, 0, crop_pad=2, flip="alternate"))
    assert [len(y) for _, y in batches] == [64, 64, 64, 8]
    small = list(train_batches(split, 64, 0, 0, crop_pad=2, flip="alternate", crop_size=24))
    assert [x.shape[-2:] for x, _ in small] == [(24, 24)] * 4
    assert all(torch.equal(y, y_small) for (_, y), (_, y_small) in zip(batches, small, strict=True))


def test_color_jitter_shifts_and_scales_each_image_within_its_bounds() -> None:
    x = torch.randn(500, 3, 4, 4)
    jittered = jitter_color(x, 0.1, 0.2, 500, torch.Generator().manual_seed(0))
    # Each image is (x + shift) * scale: recover both from its mean's and pixels' offsets.
    scale = (jittered[:, :, 0, 0] - jittered[:, :, 1, 1]) / (x[:, :, 0, 0] - x[:, :, 1, 1])
    shift = jittered[:, 0, 0, 0] / scale[:, 0] - x[:, 0, 0, 0]
    assert torch.allclose(scale, scale[:, :1].expand(-1, 3), atol=1e-4)
    assert scale.min() >= 0.8 - 1e-4 and scale.max() <= 1.2 + 1e-4 and scale.std() > 0.05
    assert shift.abs().max() <= 0.1 + 1e-4 and shift.std() > 0.02
    assert torch.equal(jitter_color(x, 0.0, 0.0, 500, torch.Generator()), x)


def test_color_jitter_of_a_shard_equals_that_part_of_the_whole_batch() -> None:
    x = torch.randn(10, 3, 2, 2)
    whole = jitter_color(x, 0.3, 0.3, 10, torch.Generator().manual_seed(1))
    part = jitter_color(x[4:7], 0.3, 0.3, 10, torch.Generator().manual_seed(1), slice(4, 7))
    assert torch.equal(whole[4:7], part)


def test_train_batches_jitter_colors_only_when_asked(cifar_root: Path) -> None:
    split = load_split(cifar_root, train=True)
    plain = list(train_batches(split, 64, 0, 0, crop_pad=2, flip="alternate"))
    jittered = list(train_batches(split, 64, 0, 0, crop_pad=2, flip="alternate",
                                  color_jitter={"brightness": 0.1, "contrast": 0.1}))
    # The jitter draws after the crops: the crops, order and labels stay the same.
    assert all(torch.equal(y, y_j) for (_, y), (_, y_j) in zip(plain, jittered, strict=True))
    first, first_jittered = plain[0][0], jittered[0][0]
    assert not torch.equal(first, first_jittered)
    centred = first - first.mean((1, 2, 3), keepdim=True)
    centred_jittered = first_jittered - first_jittered.mean((1, 2, 3), keepdim=True)
    ratio = centred_jittered.flatten(1).norm(dim=1) / centred.flatten(1).norm(dim=1)
    assert ratio.min() >= 0.9 - 1e-4 and ratio.max() <= 1.1 + 1e-4


def test_normalize_standardises_channels() -> None:
    images = torch.full((1, 3, 2, 2), 125, dtype=torch.uint8)
    x = normalize(images)
    assert x.dtype == torch.float32 and x.abs().max() < 0.2

