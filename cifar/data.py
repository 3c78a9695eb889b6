"""CIFAR-10 in the official "python version" layout, held in memory as uint8 tensors.

The folder `cifar-10-batches-py/` holds `data_batch_1..5`, `test_batch` and `batches.meta`,
each a pickled dict with byte-string keys (`b"data"`: uint8 N x 3072, `b"labels"`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cifar.batch_pickle import read_batch_pickle
from cifar.errors import DataError

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
DEFAULT_DATA_DIR = "./data"
IMAGE_SHAPE = (3, 32, 32)


@dataclass
class Split:
    """Images (N x 3 x 32 x 32 uint8) and labels (N int64) of one split."""

    images: torch.Tensor
    labels: torch.Tensor

    def subset(self, n: int | None) -> Split:
        """Return the first `n` examples (all of them when `n` is None)."""
        if n is None or n >= len(self.labels):
            return self
        return Split(self.images[:n], self.labels[:n])

    def to(self, device: torch.device) -> Split:
        """Return the split with both tensors on `device`."""
        return Split(self.images.to(device), self.labels.to(device))


def default_data_dir() -> str:
    """The data folder used when `--data-dir` is not given: `$CIFAR10_DIR`, else `./data`."""
    return os.environ.get("CIFAR10_DIR", DEFAULT_DATA_DIR)


def batches_dir(data_dir: str | os.PathLike) -> Path:
    """Resolve `data_dir`, which names `cifar-10-batches-py/` or the folder that holds it."""
    root = Path(data_dir).expanduser()
    if (root / BATCHES_DIR).is_dir():
        return root / BATCHES_DIR
    if root.name == BATCHES_DIR or (root / TEST_FILE).exists() or (root / META_FILE).exists():
        return root
    return root / BATCHES_DIR


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        obj = read_batch_pickle(path)
    except DataError:
        raise
    except Exception as exc:  # pickle raises many types on corrupt input
        message = f"{path}: not a readable CIFAR-10 pickle ({type(exc).__name__}: {exc})"
        raise DataError(message) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def load_batch(path: Path) -> Split:
    """Read one batch file and check that it holds uint8 N x 3072 data and N labels 0..9."""
    obj = _unpickle(path)
    data, labels = obj.get(b"data"), obj.get(b"labels", obj.get(b"fine_labels"))
    if data is None or labels is None:
        raise DataError(f"{path}: expected keys b'data' and b'labels', got {sorted(obj)}")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected b'data' as uint8 N x 3072, got {data.dtype} "
                        f"{'x'.join(map(str, data.shape))}")
    if not isinstance(labels, list) or any(type(label) is not int for label in labels):
        raise DataError(f"{path}: expected b'labels' as a list of ints, got {labels!r:.80}")
    if len(labels) != data.shape[0]:
        raise DataError(f"{path}: expected {data.shape[0]} labels, got {len(labels)}")
    if labels and not 0 <= min(labels) <= max(labels) <= 9:
        raise DataError(f"{path}: expected labels in 0..9, got {min(labels)}..{max(labels)}")
    images = torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE).copy())
    return Split(images, torch.tensor(labels, dtype=torch.int64))


def load_classes(folder: Path) -> list[str]:
    """Read the class names from `batches.meta`."""
    path = folder / META_FILE
    names = _unpickle(path).get(b"label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{path}: expected b'label_names' with 10 names, got {names!r:.80}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _missing_message(folder: Path, names: tuple[str, ...]) -> str:
    return (f"CIFAR-10 not found: {folder} lacks {', '.join(names)}. Put the official "
            f"'python version' files ({BATCHES_DIR}/) there, or point --data-dir or "
            f"CIFAR10_DIR at the folder that holds them")


def download(data_dir: str | os.PathLike) -> None:
    """Download the official archive into `data_dir`, verify its MD5 and extract it."""
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(data_dir).expanduser()
    try:
        download_and_extract_archive(ARCHIVE_URL, str(root), md5=ARCHIVE_MD5)
    except Exception as exc:  # network errors come in many types
        raise DataError(f"{_missing_message(root / BATCHES_DIR, (BATCHES_DIR,))}. "
                        f"Download from {ARCHIVE_URL} failed: {exc}") from None


def load_split(data_dir: str | os.PathLike, train: bool, allow_download: bool = True) -> Split:
    """Load the training (5 batches) or test split, downloading the archive if it is missing."""
    folder = batches_dir(data_dir)
    names = TRAIN_FILES if train else (TEST_FILE,)
    missing = tuple(n for n in (*names, META_FILE) if not (folder / n).is_file())
    if missing and allow_download and not folder.exists():
        download(data_dir)
        folder = batches_dir(data_dir)
        missing = tuple(n for n in (*names, META_FILE) if not (folder / n).is_file())
    if missing:
        raise DataError(_missing_message(folder, missing))
    parts = [load_batch(folder / n) for n in names]
    return Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
