"""airnet's layer tree: groups of `convs_per_group` convolutions, in either engine's namespace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixtures import cifar_root_fixture, tiny_config  # noqa: F401  (pytest fixtures)

import backends
from cifar.errors import CifarError
from cifar.models import build_layers
from cifar.train import train

SMALL_AIRNET = {"arch": "airnet", "widths": [8, 16, 16], "whiten_kernel": 2}
NAMESPACES = {"torch": torch.nn, "numpy": backends.get("numpy"), "numba": backends.get("numba")}


def _weight(conv: object) -> np.ndarray:
    weight = conv.weight
    return weight.detach().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("convs_per_group", [1, 2, 3])
def test_each_airnet_group_holds_convs_per_group_convolutions_the_later_ones_identities_at_init(
        namespace: str, convs_per_group: int) -> None:
    layers = build_layers({**SMALL_AIRNET, "convs_per_group": convs_per_group},
                          NAMESPACES[namespace])
    for group in layers.groups:
        kinds = [type(layer).__name__ for layer in group]
        assert kinds == (["Conv2d", "MaxPool2d", "BatchNorm2d", "GELU"]
                         + ["Conv2d", "BatchNorm2d", "GELU"] * (convs_per_group - 1))
        convs = [layer for layer in group if type(layer).__name__ == "Conv2d"]
        for conv in convs[1:]:
            identity = np.zeros_like(_weight(conv))
            identity[range(conv.out_channels), range(conv.out_channels), 1, 1] = 1
            np.testing.assert_array_equal(_weight(conv), identity)


@pytest.mark.parametrize("convs_per_group", [0, 2.0, True, "3"])
def test_bad_convs_per_group_is_refused_naming_the_setting_before_any_file_is_written(
        convs_per_group: object, cifar_root: Path, tmp_path: Path) -> None:
    config = tiny_config(cifar_root, model={**SMALL_AIRNET, "convs_per_group": convs_per_group})
    with pytest.raises(CifarError, match="model config: expected convs_per_group a whole "
                                         f"number >= 1, got {convs_per_group!r}"):
        train(config, out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
