"""Evaluation at several test-time augmentation levels shares the views between the levels
and gives each level exactly what evaluating that level alone gives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar.data import Split
from cifar.evaluate import evaluate, evaluate_levels
from cifar.models import build_model


class CountingModel(nn.Module):
    """Counts the forward passes of the module it wraps."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


@pytest.fixture(name="model_and_split")
def model_and_split_fixture() -> tuple[nn.Module, Split]:
    torch.manual_seed(0)
    model = build_model({"arch": "airnet", "widths": [8, 16, 16]})
    images = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8)
    return model, Split(images, torch.randint(0, 10, (30,)))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("levels", [(0, 0), (0, 1), (0, 2), (1, 2), (0, 1, 2), (2, 0)])
def test_each_level_equals_that_level_evaluated_alone(
        model_and_split: tuple[nn.Module, Split], levels: tuple[int, ...], precision: str) -> None:
    model, split = model_and_split
    together = evaluate_levels(model, split, levels, 16, precision)
    for level in levels:
        alone = evaluate(model, split, level, 16, precision)
        assert together[level].loss == alone.loss
        assert together[level].accuracy == alone.accuracy
        assert torch.equal(together[level].predictions, alone.predictions)


@pytest.mark.parametrize(("levels", "passes_per_batch"), [((0,), 1), ((0, 1), 2), ((0, 2), 6),
                                                          ((2,), 6)])
def test_levels_cost_the_forward_passes_of_the_highest_alone(
        model_and_split: tuple[nn.Module, Split], levels: tuple[int, ...],
        passes_per_batch: int) -> None:
    model, split = model_and_split
    counting = CountingModel(model)
    evaluate_levels(counting, split, levels, 16)
    assert counting.calls == passes_per_batch * 2  # 30 images in batches of 16


def test_a_level_above_two_is_refused_naming_tta_level(
        model_and_split: tuple[nn.Module, Split]) -> None:
    model, split = model_and_split
    with pytest.raises(ValueError, match=r"tta_level: expected one of \(0, 1, 2\), got 3"):
        evaluate(model, split, 3, 16)
