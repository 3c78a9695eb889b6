"""The `python -m cifar` command line, driven through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cifar_fixtures import (  # noqa: F401  (pytest fixtures)
    shared_cifar_root_fixture,
    trained_run_fixture,
)
from click.testing import CliRunner
from PIL import Image

from cifar.cli import main

TINY = ["--epochs", "1", "--batch-size", "64", "--device", "cpu", "--threads", "2", "--quiet"]


def test_help_lists_train_test_and_predict() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in ("train", "test", "predict"))


def test_test_json_matches_the_training_summary_and_saves_predictions(
        trained_run: Path, shared_cifar_root: Path, tmp_path: Path) -> None:
    preds = tmp_path / "preds.npy"
    result = CliRunner().invoke(main, ["test", str(trained_run / "model.pt"), "--data-dir",
                                       str(shared_cifar_root), "--json", "--save-predictions",
                                       str(preds)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    summary = json.loads((trained_run / "summary.json").read_text())
    assert report["test_accuracy"] == summary["test_accuracy"] and report["n"] == 60
    predictions = np.load(preds)
    assert predictions.shape == (60,) and np.issubdtype(predictions.dtype, np.integer)


def test_test_with_tta_reproduces_the_summary_tta_accuracy(trained_run: Path,
                                                           shared_cifar_root: Path) -> None:
    result = CliRunner().invoke(main, ["test", str(trained_run), "--data-dir",
                                       str(shared_cifar_root), "--tta", "--json"])
    report = json.loads(result.output.splitlines()[-1])
    summary = json.loads((trained_run / "summary.json").read_text())
    assert report["test_accuracy"] == summary["test_accuracy_tta"]


def test_data_dir_comes_from_cifar10_dir_env(trained_run: Path, shared_cifar_root: Path) -> None:
    result = CliRunner(env={"CIFAR10_DIR": str(shared_cifar_root)}).invoke(
        main, ["test", str(trained_run), "--json"])
    assert result.exit_code == 0, result.output


def test_corrupt_checkpoint_gives_a_one_line_error(tmp_path: Path, shared_cifar_root: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, ["test", str(bad), "--data-dir", str(shared_cifar_root)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "model.pt" in result.output and "Traceback" not in result.output


def test_missing_data_gives_a_one_line_error(trained_run: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("offline")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    result = CliRunner().invoke(main, ["test", str(trained_run), "--data-dir",
                                       str(tmp_path / "empty")])
    assert result.exit_code == 1 and "CIFAR-10 not found" in result.output
    assert result.output.count("\n") == 1


def test_train_command_writes_a_run_and_prints_a_summary_line(shared_cifar_root: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data-dir", str(shared_cifar_root), "--out",
                                       str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1 and "test_accuracy" in result.output
    assert (out / "summary.json").is_file() and (out / "model.pt").is_file()


def test_train_with_an_unknown_preset_is_rejected() -> None:
    result = CliRunner().invoke(main, ["train", "--preset", "huge"])
    assert result.exit_code == 2 and "huge" in result.output


def test_predict_prints_top3_classes_for_images_of_any_size(trained_run: Path,
                                                            tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    png, jpeg = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(png)
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(jpeg)
    result = CliRunner().invoke(main, ["predict", str(trained_run), str(png), str(jpeg)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(png))
    probabilities = [float(part.split()[-1]) for part in lines[0].split(": ")[1].split(", ")]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)


def test_predict_on_a_non_image_names_the_file(trained_run: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("hello")
    result = CliRunner().invoke(main, ["predict", str(trained_run), str(text)])
    assert result.exit_code == 1 and "notes.png" in result.output
