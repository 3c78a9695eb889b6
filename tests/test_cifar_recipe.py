"""The recipe is written once (cifar.recipe, cifar.models) and both engines follow it."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import backends
from cifar.engine import Engine
from cifar.errors import CifarError
from cifar.models import build_layers, build_model, named_parameter_layers, whitening_weight
from cifar.presets import resolve_config
from cifar.pynet.engine import PynetEngine
from cifar.recipe import (
    Lookahead,
    WeightEMA,
    muon_filters,
    param_groups,
    trainable,
    weight_averages,
)

SMALL_AIRNET = {"arch": "airnet", "widths": [8, 16, 16], "whiten_kernel": 2,
                "bn_momentum": 0.4, "output_scale": 1 / 9, "activation": "gelu"}


def _config(preset: str = "fast", **overrides) -> dict:
    config = resolve_config(preset, device="cpu", threads=1, **overrides)
    config["model"] = SMALL_AIRNET
    return config


def test_pynet_builds_the_torch_layer_tree_with_the_same_names_and_shapes():
    torch_state = build_model(SMALL_AIRNET).state_dict()
    pynet_state = build_layers(SMALL_AIRNET, backends.get("numpy")).state_dict()
    assert list(pynet_state) == list(torch_state)
    assert {k: v.shape for k, v in pynet_state.items()} == \
        {k: tuple(v.shape) for k, v in torch_state.items()}


@pytest.mark.parametrize("namespace", ["torch", "pynet"])
def test_conv3x3_filters_start_as_identities_in_both_engines(namespace: str):
    nn = torch.nn if namespace == "torch" else backends.get("numpy")
    weight = np.asarray(build_layers(SMALL_AIRNET, nn).state_dict()["groups.1.0.weight"])
    identity = np.zeros((8, 8, 3, 3))
    identity[np.arange(8), np.arange(8), 1, 1] = 1
    np.testing.assert_array_equal(weight[:8], identity)
    assert np.abs(weight[8:]).max() > 0  # the other filters keep their random draw


def test_frozen_and_per_epoch_trainable_parameters_follow_the_recipe():
    config = _config(whiten_bias_epochs=2)
    params = named_parameter_layers(build_model(SMALL_AIRNET))
    frozen = {name for name, layer in params if not trainable(name, layer, 0, config)}
    assert frozen == {"whiten.weight"} | {name for name, layer in params
                                          if layer == "BatchNorm2d" and name.endswith("weight")}
    assert trainable("whiten.bias", "Conv2d", 1, config)
    assert not trainable("whiten.bias", "Conv2d", 2, config)


def test_sgd_groups_give_batchnorm_biases_the_scaled_rate():
    config = _config("fast-sgd")
    params = named_parameter_layers(build_model(SMALL_AIRNET))
    biases, others = param_groups(params, config)
    assert biases["params"] == [n for n, layer in params
                                if layer == "BatchNorm2d" and n.endswith("bias")]
    assert biases["lr"] == pytest.approx(config["lr"] * config["bias_lr_scale"])
    assert len(biases["params"]) + len(others["params"]) == len(params)


def test_muon_takes_the_trained_filters_and_sgd_every_bias_and_the_head():
    config = _config("fast")
    params = named_parameter_layers(build_model(SMALL_AIRNET))
    filters = muon_filters(params, config)
    assert filters == [f"groups.{g}.{i}.weight" for g in range(3) for i in (0, 4)]
    biases, others = param_groups(params, config)
    assert biases["params"] == ["whiten.bias"] + [n for n, layer in params
                                                  if layer == "BatchNorm2d" and n.endswith("bias")]
    frozen_scales = [n for n, layer in params if layer == "BatchNorm2d" and n.endswith("weight")]
    assert others["params"] == ["whiten.weight", *frozen_scales, "head.weight"]
    assert muon_filters(params, _config("fast-sgd")) == []  # without Muon: SGD for all


@pytest.mark.parametrize("engine_type", [Engine, PynetEngine], ids=["torch", "pynet"])
def test_both_engines_freeze_what_the_recipe_freezes(engine_type):
    config = _config(engine="pynet" if engine_type is PynetEngine else "torch",
                     precision="fp32", channels_last=False)
    engine = engine_type(config, 2, torch.device("cpu"))
    engine.prepare(torch.randn(32, 3, 32, 32))
    engine.start_epoch(config["whiten_bias_epochs"])  # the whitening bias is frozen now
    before = {k: v.numpy().copy() for k, v in engine.state_dict()["model"].items()}
    engine.train_step(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))
    after = engine.state_dict()["model"]
    unchanged = {k for k in before if np.array_equal(before[k], np.asarray(after[k]))}
    assert {"whiten.weight", "whiten.bias", "groups.0.2.weight"} <= unchanged
    assert "groups.0.0.weight" not in unchanged


def test_whitening_weight_whitens_the_patches_it_was_computed_from():
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((3, 3))
    images = np.einsum("ij,njhw->nihw", mixing, rng.standard_normal((64, 3, 8, 8)))
    weight = whitening_weight(images.astype(np.float32), kernel=2, eps=0.0)
    assert weight.shape == (24, 3, 2, 2)
    patches = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(2, 3))
    patches = patches.transpose(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    whitened = patches @ weight[:12].reshape(12, 12).T.astype(np.float64)
    np.testing.assert_allclose(whitened.T @ whitened / len(whitened), np.eye(12), atol=1e-4)
    np.testing.assert_array_equal(weight[12:], -weight[:12])


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_lookahead_moves_slow_weights_towards_fast_and_copies_them_back(kind: str):
    start = np.zeros(3, np.float32)
    state = {"w": torch.zeros(3) if kind == "torch" else start.copy()}
    look = Lookahead(state, every=1, decay=0.5)
    state["w"][...] = 1
    look.update(lambda: state, step=1, total_steps=2)  # decay 0.5 * (1/2)^3
    expected = 1 - 0.5 / 8
    np.testing.assert_allclose(np.asarray(state["w"]), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(look.slow["w"]), expected, rtol=1e-6)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_ema_averages_the_weights_without_moving_them_until_the_last_step(kind: str):
    state = {"w": torch.zeros(3) if kind == "torch" else np.zeros(3, np.float32)}
    ema = WeightEMA(state, every=1, decay=0.5)
    state["w"][...] = 1
    ema.update(lambda: state, step=1, total_steps=2)  # decay 0.5 * (1/2)^3
    np.testing.assert_array_equal(np.asarray(state["w"]), 1)
    np.testing.assert_allclose(np.asarray(ema.slow["w"]), 1 - 0.5 / 8, rtol=1e-6)
    state["w"][...] = 3
    ema.update(lambda: state, step=2, total_steps=2)  # the last step: decay 1
    np.testing.assert_allclose(np.asarray(state["w"]), 1 - 0.5 / 8, rtol=1e-6)


def test_weight_averages_build_the_configured_ones_lookahead_first():
    state = {"w": np.zeros(2, np.float32)}
    config = {"lookahead": {"every": 5, "decay": 0.95}, "ema": {"every": 2, "decay": 0.9}}
    averages = weight_averages(config, state)
    assert list(averages) == ["lookahead", "ema"]
    assert type(averages["lookahead"]) is Lookahead and type(averages["ema"]) is WeightEMA
    assert (averages["ema"].every, averages["ema"].decay) == (2, 0.9)
    assert weight_averages({"lookahead": None, "ema": None}, state) == {}


@pytest.mark.parametrize("key", ["lookahead", "ema"])
@pytest.mark.parametrize("spec", [{"every": 0, "decay": 0.9}, {"every": 2.5, "decay": 0.9},
                                  {"every": 2, "decay": 1.5}, {"every": 2},
                                  {"every": 2, "decay": 0.9, "start": 3}, 5],
                         ids=["every-0", "every-fractional", "decay-above-1", "no-decay",
                              "unknown-key", "not-a-table"])
def test_bad_weight_average_settings_are_refused_naming_the_setting(key: str, spec: object):
    with pytest.raises(CifarError, match=rf'^{key}: expected null or \{{"every": a count of '
                                         rf'steps >= 1, "decay": a number from 0 to 1\}}, got'):
        weight_averages({key: spec}, {"w": np.zeros(2, np.float32)})


def test_pynet_engine_holds_no_torch_network_and_writes_model_pt_from_its_weights(
        tmp_path: Path):
    from cifar.checkpoint import load_model
    from cifar.rundir import RunDir

    config = _config(engine="pynet", precision="fp32", channels_last=False)
    engine = PynetEngine(config, 1, torch.device("cpu"))
    assert not any(isinstance(v, torch.nn.Module) for v in vars(engine).values())
    run = RunDir(tmp_path)
    engine.save_model(run, ["c"] * 10)
    loaded = load_model(tmp_path / "model.pt", torch.device("cpu"))
    for name, value in engine.model.state_dict().items():
        np.testing.assert_array_equal(loaded.model.state_dict()[name].numpy(), value)
    folded = backends.get("numpy").load(tmp_path / "model.npz").eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = loaded.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(folded(x), expected, rtol=0, atol=1e-5)


def test_named_sequential_keeps_its_children_names_through_a_model_file(tmp_path: Path):
    nn = backends.get("numpy")
    net = nn.Sequential(OrderedDict(stem=nn.Conv2d(3, 4, 3), act=nn.ReLU(),
                                    flat=nn.Flatten(), head=nn.Linear(4 * 30 * 30, 2)))
    assert list(net.state_dict()) == ["stem.weight", "stem.bias", "head.weight", "head.bias"]
    net.save(tmp_path / "named.npz")
    loaded = nn.load(tmp_path / "named.npz")
    assert list(loaded.state_dict()) == list(net.state_dict())
