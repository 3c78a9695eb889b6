"""End to end on the real CIFAR-10 in ../shared/cifar10 (or $CIFAR10_DIR): a short run."""

from __future__ import annotations

from pathlib import Path

import pytest
from cifar_fixtures import real_cifar_dir

from cifar.presets import resolve_config
from cifar.train import train

REAL_DIR = real_cifar_dir()


@pytest.mark.skipif(REAL_DIR is None, reason="real CIFAR-10 not found")
def test_short_fast_run_on_real_data_beats_chance_by_a_wide_margin(tmp_path: Path) -> None:
    config = resolve_config("fast", data_dir=str(REAL_DIR), device="cpu", threads=2, epochs=2,
                            batch_size=128, train_subset=5000, test_subset=1000, eval_every=0,
                            tta_level=0)
    summary = train(config, out=tmp_path / "run", quiet=True)
    assert summary["n_train"] == 5000 and summary["n_test"] == 1000
    assert summary["test_accuracy"] > 0.35, summary  # chance is 0.10
