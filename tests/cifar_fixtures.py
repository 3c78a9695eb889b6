"""Tiny synthetic CIFAR-10 in the official python-version layout, for the cifar tests."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cifar.presets import resolve_config

CLASSES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
           b"ship", b"truck"]
REPO_ROOT = Path(__file__).resolve().parents[1]


def write_batch(path: Path, n: int, rng: np.random.Generator) -> None:
    """Write a batch whose images carry a class-dependent colour, so they are learnable."""
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 96, (n, 3, 32, 32))
    images[np.arange(n), labels % 3] += 40 + 15 * labels[:, None, None]
    data = images.astype(np.uint8).reshape(n, 3072)
    with path.open("wb") as f:
        pickle.dump({b"batch_label": b"synthetic", b"labels": labels.tolist(), b"data": data,
                     b"filenames": [b"x.png"] * n}, f, protocol=2)


def write_cifar(root: Path, train_per_batch: int = 40, n_test: int = 60) -> Path:
    """Write data_batch_1..5, test_batch and batches.meta under root/cifar-10-batches-py."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        write_batch(folder / f"data_batch_{i}", train_per_batch, rng)
    write_batch(folder / "test_batch", n_test, rng)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": CLASSES, b"num_cases_per_batch": train_per_batch,
                     b"num_vis": 3072}, f, protocol=2)
    return root


@pytest.fixture(name="cifar_root")
def cifar_root_fixture(tmp_path: Path) -> Path:
    """A fresh folder holding synthetic `cifar-10-batches-py/`, which a test may damage."""
    return write_cifar(tmp_path / "data")


@pytest.fixture(name="shared_cifar_root", scope="session")
def shared_cifar_root_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic `cifar-10-batches-py/` shared by all tests; never modify it."""
    return write_cifar(tmp_path_factory.mktemp("shared") / "data")


@pytest.fixture(name="trained_run", scope="session")
def trained_run_fixture(shared_cifar_root: Path, tmp_path_factory: pytest.TempPathFactory
                        ) -> Path:
    """A one-epoch run directory trained on `shared_cifar_root`; copy it before changing it."""
    from cifar.train import train

    out = tmp_path_factory.mktemp("trained") / "run"
    train(tiny_config(shared_cifar_root), out=out, quiet=True)
    return out


def tiny_config(data_dir: Path, preset: str = "fast", **overrides: Any) -> dict[str, Any]:
    """The `preset` shrunk to a seconds-long CPU run on the synthetic data."""
    settings = {"data_dir": str(data_dir), "device": "cpu", "threads": 2, "epochs": 1,
                "batch_size": 64, "eval_batch_size": 32}
    return resolve_config(preset, **{**settings, **overrides})


def real_cifar_dir() -> Path | None:
    """The real dataset: $CIFAR10_DIR or ../shared/cifar10 beside the repo, if present."""
    candidates = [os.environ.get("CIFAR10_DIR"), REPO_ROOT.parent / "shared" / "cifar10"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "cifar-10-batches-py" / "test_batch").is_file():
            return Path(candidate)
    return None
