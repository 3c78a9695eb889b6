"""Gather what a report needs from a run directory, the test set and the saved JSON files.

Nothing here stops at a missing piece: each reader records what it could not find in
`missing` (one plain sentence per item) and the report says so. Only a file the user named
explicitly (`--check-json`, `--bench-json`) that turns out unreadable raises `ReportError`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cifar.checkpoint import LAST_NAME, MODEL_NAME, load_model
from cifar.data import META_FILE, TEST_FILE, batches_dir, load_classes, load_split
from cifar.errors import CifarError
from cifar.evaluate import predict_levels


class ReportError(CifarError):
    """An input that the user named explicitly cannot be used."""


@dataclass
class RunData:
    """The files of one run directory, each None or empty when absent or unreadable."""

    path: Path
    config: dict[str, Any] | None = None
    config_source: str | None = None
    summary: dict[str, Any] | None = None
    metrics: list[dict[str, float | None]] = field(default_factory=list)
    checkpoint: Path | None = None
    last_epoch: int | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def epochs_done(self) -> tuple[int, str] | None:
        """Completed epochs and where that comes from: metrics.csv, else last.pt."""
        if self.metrics:
            return len(self.metrics), "metrics.csv"
        if self.last_epoch is not None:
            return self.last_epoch, LAST_NAME
        return None


def _read_json(path: Path, run: RunData, consequence: str) -> dict[str, Any] | None:
    if not path.is_file():
        run.missing.append(f"{path.name} is missing: {consequence}.")
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        run.missing.append(f"{path.name} is unreadable ({exc}): {consequence}.")
        return None
    if not isinstance(value, dict):
        run.missing.append(f"{path.name} holds a {type(value).__name__}, expected an object: "
                           f"{consequence}.")
        return None
    return value


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is None or math.isfinite(value) else None


def _read_metrics(path: Path, run: RunData) -> list[dict[str, float | None]]:
    if not path.is_file():
        run.missing.append("metrics.csv is missing (the run may have been cut short): no "
                           "per-epoch loss and accuracy curves, and no per-epoch timings.")
        return []
    try:
        with path.open(newline="") as f:
            rows = [{k: _number(v) for k, v in row.items() if k} for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        run.missing.append(f"metrics.csv is unreadable ({exc}): no per-epoch curves.")
        return []
    rows = [row for row in rows if row.get("epoch") is not None]
    if not rows:
        run.missing.append("metrics.csv has no epoch rows yet: no per-epoch curves.")
    return rows


def _checkpoint_state(path: Path) -> dict[str, Any]:
    """The checkpoint dict, or {} when it is absent or unreadable (reported elsewhere)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # absent and corrupt checkpoints raise many types
        return {}
    return state if isinstance(state, dict) else {}


def read_run(path: str | os.PathLike) -> RunData:
    """Read config.json, summary.json, metrics.csv and locate model.pt (or last.pt)."""
    run = RunData(Path(path))
    for name in (MODEL_NAME, LAST_NAME):
        if (run.path / name).is_file():
            run.checkpoint = run.path / name
            break
    if run.checkpoint is None:
        run.missing.append(f"Neither {MODEL_NAME} nor {LAST_NAME} exists: no test-set "
                           f"evaluation, confusion matrix or misclassified images.")
    elif run.checkpoint.name == LAST_NAME:
        run.missing.append(f"{MODEL_NAME} is missing (the run did not finish): the test-set "
                           f"figures use the last completed epoch's weights from {LAST_NAME}.")
    run.config = _read_json(run.path / "config.json", run, "the settings come from the "
                            "checkpoint if it has them")
    run.config_source = "config.json" if run.config else None
    if run.config is None and run.checkpoint is not None:
        config = _checkpoint_state(run.checkpoint).get("config")
        run.config = config if isinstance(config, dict) else None
        run.config_source = run.checkpoint.name if run.config else None
    if run.config is None:
        run.missing.append("No run configuration was found: no architecture, training setup "
                           "or learning-rate schedule.")
    run.summary = _read_json(run.path / "summary.json", run, "final accuracy, wall-clock, "
                             "device and threads come from other files or are unknown")
    run.metrics = _read_metrics(run.path / "metrics.csv", run)
    if not run.metrics and (run.path / LAST_NAME).is_file():
        epoch = _checkpoint_state(run.path / LAST_NAME).get("epoch")
        run.last_epoch = epoch if isinstance(epoch, int) else None
    return run


# ---- the test set ---------------------------------------------------------------------------

def _has_test_set(folder: Path) -> bool:
    return (folder / TEST_FILE).is_file() and (folder / META_FILE).is_file()


def find_data_dir(explicit: str | None, config: dict[str, Any] | None) -> tuple[Path | None,
                                                                               list[str]]:
    """The first folder holding the test set: `--data-dir` alone when given, else the
    config's data_dir, $CIFAR10_DIR and ../shared/cifar10 (from the working directory).
    Returns the folder (or None) and the places tried."""
    if explicit:
        candidates = [explicit]
    else:
        candidates = [(config or {}).get("data_dir"), os.environ.get("CIFAR10_DIR"),
                      str(Path.cwd().parent / "shared" / "cifar10")]
    tried = [str(c) for c in dict.fromkeys(c for c in candidates if c)]
    for candidate in tried:
        if _has_test_set(batches_dir(candidate)):
            return batches_dir(candidate), tried
    return None, tried


@dataclass
class TestEvaluation:
    """Plain (no-TTA) logits of the checkpoint on the test set, with what they came from."""

    logits: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor
    classes: list[str]
    checkpoint: Path
    data_dir: Path
    tta_level: int = 0
    tta_accuracy: float | None = None

    @property
    def accuracy(self) -> float:
        """Fraction of test images whose top logit is the true class."""
        return float((self.logits.argmax(1) == self.labels).float().mean())


def evaluate_checkpoint(run: RunData, data_dir: str | None, missing: list[str],
                        with_tta: bool = False) -> TestEvaluation | None:
    """Evaluate the run's checkpoint on its test split (the config's test_subset, if any)
    without TTA, and with the run's TTA level when `with_tta`; None, noted, when impossible."""
    if run.checkpoint is None:
        return None
    folder, tried = find_data_dir(data_dir, run.config)
    if folder is None:
        missing.append(f"The CIFAR-10 test set ({TEST_FILE} and {META_FILE}) was not found in "
                       f"{', '.join(tried) or 'any known place'}: no confusion matrix, per-class "
                       f"accuracy or misclassified images. Pass --data-dir.")
        return None
    try:
        loaded = load_model(run.checkpoint, torch.device("cpu"))
        cfg = loaded.config
        split = load_split(folder, train=False, allow_download=False)
        split = split.subset(cfg.get("test_subset"))
        classes = loaded.classes or load_classes(folder)
        args = (cfg.get("eval_batch_size", 1000), cfg.get("precision", "fp32"),
                bool(cfg.get("channels_last", False)))
        level = int(cfg.get("tta_level", 0)) if with_tta else 0
        logits = predict_levels(loaded.model, split.images, (0, level), *args)
        result = TestEvaluation(logits[0], split.labels, split.images, classes,
                                run.checkpoint, folder)
        if level:
            tta = logits[level]
            result.tta_level = level
            result.tta_accuracy = float((tta.argmax(1) == split.labels).float().mean())
    except (CifarError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        missing.append(f"The test-set evaluation failed ({exc}): no confusion matrix, "
                       f"per-class accuracy or misclassified images.")
        return None
    return result


# ---- pynet-check and benchmark JSON ---------------------------------------------------------

CHECK_ROW_KEYS = ("layer", "backend", "dtype", "errors", "passed")
BENCH_ROW_KEYS = ("workload", "engine", "shape")


@dataclass
class CheckResults:
    """Rows of `pynet-check` and where they came from."""

    rows: list[dict[str, Any]]
    date: str
    source: str
    tolerance: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class BenchResults:
    """Rows of `bench/results.json` (see bench.table.summarize) and their date."""

    rows: list[dict[str, Any]]
    date: str
    source: str
    machine: dict[str, Any] = field(default_factory=dict)


def _load_rows(path: Path, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: expected {what} JSON, could not read it ({exc})") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, dict) and all(k in r for k in keys) for r in rows):
        raise ReportError(f"{path}: expected {what} JSON with a non-empty 'rows' list whose "
                          f"rows hold {', '.join(keys)}")
    return data


def load_check_json(path: str | os.PathLike) -> CheckResults:
    """Read a `pynet-check --json` file; raise ReportError if it has another layout."""
    path = Path(path)
    data = _load_rows(path, CHECK_ROW_KEYS, "pynet-check")
    return CheckResults(data["rows"], str(data.get("date", "undated")), str(path),
                        data.get("tolerance") or {}, data.get("versions") or {})


def run_check_now() -> CheckResults:
    """Run the PyNet checker in-process on every backend, float64 and float32 (~20 s)."""
    import platform

    import numpy as np

    from backends import BACKENDS
    from backends.check import DTYPES, run_checks
    from backends.conformance import FD_TOLERANCE, TOLERANCE

    rows = run_checks(tuple(BACKENDS), DTYPES)
    return CheckResults(rows, time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run at report time",
                        {**TOLERANCE, "fd": FD_TOLERANCE},
                        {"python": platform.python_version(), "numpy": np.__version__,
                         "torch": torch.__version__})


def load_bench_json(path: str | os.PathLike) -> BenchResults:
    """Read bench/results.json as `python -m bench.report` writes it."""
    path = Path(path)
    data = _load_rows(path, BENCH_ROW_KEYS, "benchmark results")
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    return BenchResults(data["rows"], str(data.get("date") or "undated"), str(path), machine)
