"""PyNet on the CIFAR side: torch -> PyNet conversion, the PyNet engine, export and test."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixtures import (  # noqa: F401  (pytest fixtures)
    shared_cifar_root_fixture,
    tiny_config,
    trained_run_fixture,
)
from click.testing import CliRunner

import backends
from cifar.cli import main
from cifar.engine import Engine
from cifar.models import build_model
from cifar.presets import resolve_config
from cifar.pynet.convert import fold_output_scale, to_pynet, to_torch_state
from cifar.pynet.engine import PynetEngine
from cifar.train import train

SMALL_AIRNET = {"arch": "airnet", "widths": [8, 16, 16], "whiten_kernel": 2,
                "bn_momentum": 0.4, "output_scale": 1 / 9, "activation": "gelu"}
SMALL_COURSE = {"arch": "course", "widths": [8, 16, 16], "hidden": 32}


def _trained_torch_model(model_config: dict) -> torch.nn.Module:
    """A model with non-trivial weights and BN statistics, in eval mode."""
    torch.manual_seed(0)
    model = build_model(model_config)
    images = torch.randn(64, 3, 32, 32)
    if hasattr(model, "init_whitening"):
        model.init_whitening(images)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        model.train()
        model(images)  # running statistics from a batch
    return model.eval()


@pytest.mark.parametrize("model_config", [SMALL_AIRNET, {**SMALL_AIRNET, "convs_per_group": 3},
                                          SMALL_COURSE], ids=["airnet", "airnet-3-convs", "course"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_converted_model_gives_the_torch_logits_to_1e5_in_float32(model_config, backend):
    model = _trained_torch_model(model_config)
    images = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        expected = model(images).numpy()
    folded = fold_output_scale(to_pynet(model, backends.get(backend)), model.output_scale)
    got = folded(images.numpy())
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_conversion_round_trips_the_torch_state_dict():
    model = _trained_torch_model(SMALL_AIRNET)
    state = to_torch_state(to_pynet(model, backends.get("numpy")))
    assert state.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0)


def test_conversion_names_the_layer_pynet_lacks():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh())
    with pytest.raises(ValueError, match="Tanh: no PyNet equivalent"):
        to_pynet(model, backends.get("numpy"))


def _fp32_config(data_dir: Path, **overrides) -> dict:
    return tiny_config(data_dir, precision="fp32", channels_last=False, model=SMALL_AIRNET,
                       **overrides)


@pytest.mark.parametrize("preset", ["fast", "fast-sgd", "course"])
def test_pynet_engine_takes_the_torch_engines_steps(preset: str, shared_cifar_root: Path):
    """Same init, batches and recipe (Muon for the filters and SGD for the rest in `fast`,
    SGD groups in `fast-sgd`, both with the schedule, Lookahead and an EMA; Adam and a mean
    loss for `course`): the same losses, and the same weights after 6 steps."""
    if preset.startswith("fast"):
        config = _fp32_config(shared_cifar_root, preset=preset, batch_size=16)
        config["lookahead"] = {"every": 2, "decay": 0.9}
        config["ema"] = {"every": 3, "decay": 0.8}
    else:
        config = resolve_config("course", data_dir=str(shared_cifar_root), device="cpu",
                                threads=2, batch_size=16)
        config["model"] = SMALL_COURSE
    config["epochs"] = 2  # two epochs of 3 steps: the schedule and the averages end at step 6
    torch.manual_seed(0)
    images = torch.randn(6 * 16, 3, 32, 32)
    labels = torch.randint(0, 10, (6 * 16,))
    ours = PynetEngine(copy.deepcopy(config), 3, torch.device("cpu"))
    theirs = Engine(config, 3, torch.device("cpu"))
    ours.model.load_state_dict(theirs.model.state_dict())  # the same initial weights
    for engine in (ours, theirs):
        engine.prepare(images[:64])
    for epoch in range(2):  # the whitening bias trains in epoch 0 only (whiten_bias_epochs 1)
        for engine in (ours, theirs):
            engine.config["whiten_bias_epochs"] = 1
            engine.start_epoch(epoch)
        for step in range(3):
            batch = slice((3 * epoch + step) * 16, (3 * epoch + step + 1) * 16)
            loss, correct, _ = ours.train_step(images[batch], labels[batch])
            ref_loss, ref_correct, _ = theirs.train_step(images[batch], labels[batch])
            assert loss == pytest.approx(ref_loss, rel=1e-4)
        assert ours.lr == pytest.approx(theirs.lr, rel=1e-12)
    # a conv bias right before BatchNorm has a true gradient of 0, so Adam moves it by
    # normalised round-off; the BatchNorm's running mean carries that bias along
    layers = list(theirs.model.children())
    before_norm = [i for i, (m, after) in enumerate(zip(layers, layers[1:], strict=False))
                   if isinstance(m, torch.nn.Conv2d) and isinstance(after, torch.nn.BatchNorm2d)]
    noise_only = {f"{i}.bias" for i in before_norm} | {f"{i + 1}.running_mean"
                                                       for i in before_norm}
    state = to_torch_state(ours.model)
    for name, value in theirs.model.state_dict().items():
        if name not in noise_only:
            torch.testing.assert_close(state[name], value, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_pynet_training_on_synthetic_data_lowers_the_loss_and_gives_a_report(
        backend: str, shared_cifar_root: Path, tmp_path: Path):
    config = _fp32_config(shared_cifar_root, engine="pynet", backend=backend, epochs=3,
                          batch_size=32)
    summary = train(config, out=tmp_path / "run", quiet=True)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    losses = [float(row.split(",")[2]) for row in rows]
    assert losses[-1] < losses[0]
    assert summary["test_accuracy"] > 0.1
    assert {"model.pt", "model.npz", "last.pt"} <= {p.name for p in (tmp_path / "run").iterdir()}
    written = CliRunner().invoke(main, ["report", str(tmp_path / "run"), "--no-run-check",
                                        "--data-dir", str(shared_cifar_root)])
    assert written.exit_code == 0, written.output
    assert "Trained with PyNet (`--engine pynet`" in (tmp_path / "run" / "report.md").read_text()


def test_pynet_settings_override_the_preset_and_conflicts_are_refused():
    config = resolve_config("fast", engine="pynet")
    assert (config["precision"], config["channels_last"], config["device"]) == ("fp32", False,
                                                                                 "cpu")
    with pytest.raises(ValueError, match="--engine pynet: expected precision 'fp32'"):
        resolve_config("fast", engine="pynet", precision="bf16")


def test_export_pynet_then_test_with_the_pynet_engine_reproduces_torch(trained_run: Path,
                                                                        shared_cifar_root: Path,
                                                                        tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "model.npz"
    exported = runner.invoke(main, ["export-pynet", str(trained_run), str(out)])
    assert exported.exit_code == 0, exported.output
    results = {}
    for engine in ("torch", "pynet"):
        predictions = tmp_path / f"{engine}.npy"
        checkpoint = str(out if engine == "pynet" else trained_run)
        result = runner.invoke(main, ["test", checkpoint, "--engine", engine, "--json",
                                      "--precision", "fp32", "--data-dir",
                                      str(shared_cifar_root), "--save-predictions",
                                      str(predictions)])
        assert result.exit_code == 0, result.output
        results[engine] = json.loads(result.output.splitlines()[-1]), np.load(predictions)
    (ours, our_predictions), (theirs, their_predictions) = results["pynet"], results["torch"]
    np.testing.assert_array_equal(our_predictions, their_predictions)
    assert ours["test_accuracy"] == theirs["test_accuracy"]
    assert ours["test_loss"] == pytest.approx(theirs["test_loss"], rel=1e-4)


def test_pynet_model_file_without_engine_pynet_is_refused(tmp_path: Path,
                                                          shared_cifar_root: Path):
    nn = backends.get("numpy")
    nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)).save(tmp_path / "m.npz")
    result = CliRunner().invoke(main, ["test", str(tmp_path / "m.npz"), "--data-dir",
                                       str(shared_cifar_root)])
    assert result.exit_code != 0
    assert "a PyNet model file; pass --engine pynet" in result.output


def test_pynet_engine_names_the_settings_it_cannot_run(shared_cifar_root: Path):
    config = {**_fp32_config(shared_cifar_root), "precision": "bf16"}
    with pytest.raises(ValueError, match=r"--engine pynet: expected .*got \{'precision': 'bf16'\}"):
        PynetEngine(config, 1, torch.device("cpu"))
