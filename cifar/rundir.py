"""The run directory: config.json, metrics.csv, last.pt, model.pt and summary.json."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from cifar.checkpoint import LAST_NAME, MODEL_NAME, atomic_save
from spec.files import atomic_write

METRIC_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                 "epoch_seconds")


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


class RunDir:
    """Reads and writes the files of one training run."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def last(self) -> Path:
        """Path of the resumable checkpoint."""
        return self.path / LAST_NAME

    def create(self, config: dict[str, Any]) -> None:
        """Start a fresh run: write config.json and an empty metrics.csv."""
        self.path.mkdir(parents=True, exist_ok=True)
        _write_text(self.path / "config.json", json.dumps(config, indent=2) + "\n")
        self.write_metrics([])

    def read_metrics(self) -> list[dict[str, str]]:
        """All rows of metrics.csv (empty if the file does not exist)."""
        path = self.path / "metrics.csv"
        if not path.exists():
            return []
        with path.open(newline="") as f:
            return list(csv.DictReader(f))

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite metrics.csv with `rows` (used to drop rows beyond a resumed epoch)."""
        text = ",".join(METRIC_FIELDS) + "\n"
        text += "".join(",".join(str(row[k]) for k in METRIC_FIELDS) + "\n" for row in rows)
        _write_text(self.path / "metrics.csv", text)

    def save_last(self, state: dict[str, Any]) -> None:
        """Atomically write the resumable checkpoint last.pt."""
        atomic_save(state, self.last)

    def save_model(self, state: dict[str, Any]) -> None:
        """Atomically write the inference checkpoint model.pt."""
        atomic_save(state, self.path / MODEL_NAME)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write summary.json."""
        _write_text(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")
