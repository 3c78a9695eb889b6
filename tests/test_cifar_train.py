"""Training, checkpoints, resume, reproducibility and divergence on tiny synthetic data."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from cifar_fixtures import (  # noqa: F401  (pytest fixtures)
    cifar_root_fixture,
    shared_cifar_root_fixture,
    tiny_config,
    trained_run_fixture,
)

from cifar.checkpoint import atomic_save, load_model, read_checkpoint
from cifar.data import load_split
from cifar.engine import Engine, lr_factor
from cifar.errors import CheckpointError, CifarError, DivergenceError
from cifar.evaluate import evaluate
from cifar.presets import resolve_config
from cifar.pynet.engine import PynetEngine
from cifar.rundir import METRIC_FIELDS, RunDir
from cifar.train import train


def _metrics_without_time(run: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "epoch_seconds"}
            for row in RunDir(run).read_metrics()]


def test_one_epoch_run_writes_every_run_file(trained_run: Path) -> None:
    assert {p.name for p in trained_run.iterdir()} == {
        "config.json", "metrics.csv", "last.pt", "model.pt", "summary.json"}
    assert json.loads((trained_run / "config.json").read_text())["preset"] == "fast"
    assert (trained_run / "metrics.csv").read_text().splitlines()[0] == ",".join(METRIC_FIELDS)
    summary = json.loads((trained_run / "summary.json").read_text())
    for key in ("test_accuracy", "test_accuracy_tta", "epochs", "train_seconds", "preset",
                "params", "seed"):
        assert key in summary
    assert 0 <= summary["test_accuracy"] <= 1 and summary["epochs"] == 1


def test_saved_and_reloaded_models_give_the_trained_accuracy(trained_run: Path,
                                                             shared_cifar_root: Path) -> None:
    summary = json.loads((trained_run / "summary.json").read_text())
    split = load_split(shared_cifar_root, train=False)
    for name in ("model.pt", "last.pt"):
        loaded = load_model(trained_run / name, torch.device("cpu"))
        result = evaluate(loaded.model, split, 0, 32, loaded.config["precision"],
                          loaded.config["channels_last"])
        assert result.accuracy == summary["test_accuracy"]
        assert loaded.classes[0] == "airplane"


@pytest.mark.parametrize("engine", ["torch", "pynet"])
@pytest.mark.parametrize(("preset", "extras"), [
    ("fast", {}),
    ("fast-sgd", {"ema": {"every": 3, "decay": 0.9},
                  "color_jitter": {"brightness": 0.1, "contrast": 0.1}})],
    ids=["fast", "fast-sgd-with-ema-and-jitter"])
def test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run(
        engine: str, preset: str, extras: dict, shared_cifar_root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config(shared_cifar_root, preset, epochs=3, engine=engine, **extras)
    engine_type = PynetEngine if engine == "pynet" else Engine
    train(config, out=tmp_path / "straight", quiet=True)

    real_step, calls = engine_type.train_step, {"n": 0}

    def killed_in_second_epoch(self, inputs: torch.Tensor, labels: torch.Tensor):
        calls["n"] += 1
        if calls["n"] == 6:  # 4 steps per epoch: step 6 is inside epoch 2
            raise KeyboardInterrupt
        return real_step(self, inputs, labels)

    monkeypatch.setattr(engine_type, "train_step", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config, out=tmp_path / "killed", quiet=True)
    assert read_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(engine_type, "train_step", real_step)
    summary = train(config, resume=tmp_path / "killed", quiet=True)

    assert summary["resumed"]
    assert _metrics_without_time(tmp_path / "killed") == _metrics_without_time(
        tmp_path / "straight")
    straight = read_checkpoint(tmp_path / "straight" / "model.pt")["model"]
    resumed = read_checkpoint(tmp_path / "killed" / "model.pt")["model"]
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.parametrize("engine", ["torch", "pynet"])
def test_early_crops_train_on_small_crops_first_then_full_size_images(
        engine: str, shared_cifar_root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config(shared_cifar_root, epochs=2, engine=engine)
    config["early_crops"] = {"size": 24, "epochs": 1}
    engine_type = PynetEngine if engine == "pynet" else Engine
    real_step, sizes = engine_type.train_step, []

    def recording_step(self, inputs: torch.Tensor, labels: torch.Tensor):
        sizes.append(tuple(inputs.shape[-2:]))
        return real_step(self, inputs, labels)

    monkeypatch.setattr(engine_type, "train_step", recording_step)
    summary = train(config, out=tmp_path / "run", quiet=True)
    assert sizes == [(24, 24)] * 4 + [(32, 32)] * 4
    assert 0 <= summary["test_accuracy"] <= 1


@pytest.mark.parametrize("early_crops", [{"size": 37, "epochs": 1}, {"size": 24},
                                         {"size": 24, "epochs": -1}, [24, 1]])
def test_bad_early_crops_are_refused_naming_the_setting(
        early_crops: object, shared_cifar_root: Path, tmp_path: Path) -> None:
    config = tiny_config(shared_cifar_root, early_crops=early_crops)
    with pytest.raises(CifarError, match=r"early_crops: expected null or \{\"size\": 1 to 36"):
        train(config, out=tmp_path / "run", quiet=True)


@pytest.mark.parametrize("color_jitter", [{"brightness": 0.1}, {"brightness": 0.1, "contrast": 1.5},
                                          {"brightness": -0.1, "contrast": 0.1}, [0.1, 0.1]])
def test_bad_color_jitter_is_refused_naming_the_setting(
        color_jitter: object, shared_cifar_root: Path, tmp_path: Path) -> None:
    config = tiny_config(shared_cifar_root, color_jitter=color_jitter)
    with pytest.raises(CifarError, match=r"color_jitter: expected null or \{\"brightness\""):
        train(config, out=tmp_path / "run", quiet=True)


def test_same_seed_gives_same_metrics_and_other_seed_differs(
        trained_run: Path, shared_cifar_root: Path, tmp_path: Path) -> None:
    for name, seed in (("same", 0), ("other", 1)):
        train(tiny_config(shared_cifar_root, seed=seed), out=tmp_path / name, quiet=True)
    assert _metrics_without_time(tmp_path / "same") == _metrics_without_time(trained_run)
    assert _metrics_without_time(tmp_path / "other") != _metrics_without_time(trained_run)


@pytest.mark.parametrize("engine", ["torch", "pynet"])
def test_evaluating_every_epoch_changes_no_training_number_and_no_final_accuracy(
        engine: str, shared_cifar_root: Path, tmp_path: Path) -> None:
    runs = {every: tmp_path / f"every-{every}" for every in (0, 1)}
    summaries = {every: train(tiny_config(shared_cifar_root, epochs=3, engine=engine,
                                          eval_every=every), out=out, quiet=True)
                 for every, out in runs.items()}
    never, each = (_metrics_without_time(runs[every]) for every in (0, 1))
    assert [row["test_acc"] for row in never] == ["", "", never[-1]["test_acc"]]
    assert all(row["test_acc"] for row in each)
    train_only = ("epoch", "lr", "train_loss", "train_acc")
    assert [{k: r[k] for k in train_only} for r in never] == [
        {k: r[k] for k in train_only} for r in each]
    assert never[-1] == each[-1]
    for key in ("test_accuracy", "test_accuracy_tta", "test_loss"):
        assert summaries[0][key] == summaries[1][key]


def test_existing_run_directory_is_not_overwritten_without_resume(
        trained_run: Path, shared_cifar_root: Path) -> None:
    with pytest.raises(CifarError, match="--resume"):
        train(tiny_config(shared_cifar_root), out=trained_run, quiet=True)


def test_nan_loss_stops_training_with_a_clear_message(shared_cifar_root: Path,
                                                      tmp_path: Path) -> None:
    config = tiny_config(shared_cifar_root)
    config["model"]["output_scale"] = math.nan
    with pytest.raises(DivergenceError, match="diverged: loss is nan at step 1"):
        train(config, out=tmp_path / "run", quiet=True)


def test_course_preset_trains_the_baseline_network(shared_cifar_root: Path,
                                                   tmp_path: Path) -> None:
    course = resolve_config("course", data_dir=str(shared_cifar_root), device="cpu", epochs=1)
    summary = train(course, out=tmp_path / "run", quiet=True)
    assert summary["preset"] == "course" and summary["params"] > 500_000


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncate"])
def test_corrupt_checkpoint_raises_a_one_line_error(trained_run: Path, tmp_path: Path,
                                                    damage: str) -> None:
    data = (trained_run / "model.pt").read_bytes()
    path = tmp_path / "model.pt"
    path.write_bytes({"empty": b"", "garbage": b"garbage bytes",
                      "truncate": data[: len(data) // 2]}[damage])
    with pytest.raises(CheckpointError) as info:
        load_model(path, torch.device("cpu"))
    assert "model.pt" in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_of_another_architecture_raises_a_one_line_error(trained_run: Path,
                                                                    tmp_path: Path) -> None:
    state = read_checkpoint(trained_run / "model.pt")
    state["config"]["model"]["widths"] = [16, 32, 32]
    atomic_save(state, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="do not fit the architecture") as info:
        load_model(tmp_path / "model.pt", torch.device("cpu"))
    assert "\n" not in str(info.value)


def test_resume_of_a_finished_run_keeps_its_metrics(trained_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(trained_run, tmp_path / "run")
    before = (run / "metrics.csv").read_text()
    summary = train({"device": None, "threads": None, "data_dir": None}, resume=run, quiet=True)
    assert summary["resumed"] and (run / "metrics.csv").read_text() == before


def test_resume_from_an_inference_checkpoint_is_refused(trained_run: Path) -> None:
    with pytest.raises(CheckpointError, match="resumable last.pt"):
        train({"device": None, "threads": None, "data_dir": None},
              resume=trained_run / "model.pt", quiet=True)


def test_warmup_linear_schedule_rises_then_falls_to_its_end_value() -> None:
    schedule = {"kind": "warmup_linear", "warmup": 0.25, "start": 0.2, "end": 0.1}
    factors = [lr_factor(schedule, s, 100) for s in range(101)]
    assert factors[0] == pytest.approx(0.2) and max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) == 25 and factors[-1] == pytest.approx(0.1)
