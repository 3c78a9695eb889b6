"""cifar.max_pool: the torch engine's 2x2 max-pool gives torch's outputs and gradients bit for
bit, takes its own path only where it applies, and is in every network build_model makes."""

import pytest
import torch
import torch.nn.functional as F

import cifar.max_pool
from cifar.max_pool import MaxPool2d
from cifar.models import build_layers, build_model
from cifar.presets import PRESETS

SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.0, float("inf"), -float("inf"), float("nan"), -float("nan")]


def bf16_channels_last(shape: tuple[int, ...], values: str, seed: int = 0) -> torch.Tensor:
    """Random normal values, or values drawn from SPECIAL so that windows tie often."""
    generator = torch.Generator().manual_seed(seed)
    if values == "normal":
        x = torch.randn(shape, generator=generator)
    else:
        x = torch.tensor(SPECIAL)[torch.randint(0, len(SPECIAL), shape, generator=generator)]
    x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    return x.requires_grad_()


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits, with every NaN as 0x7FC0 (torch's own pools keep a NaN's payload on some
    shapes and canonicalise it on others)."""
    t = t.detach().contiguous()
    return torch.where(t.isnan(), torch.tensor(0x7FC0, dtype=torch.int16), t.view(torch.int16))


def pool_and_grad(pool, x: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, ...]:
    y = pool(x)
    (dx,) = torch.autograd.grad(y, x, dy)
    return y, dx


@pytest.mark.parametrize("shape", [(4, 8, 8, 8), (3, 5, 9, 7), (2, 24, 31, 31), (1, 3, 2, 3)])
@pytest.mark.parametrize("values", ["normal", "ties, signed zeros, infinities and NaNs"])
def test_outputs_and_gradients_equal_torchs_bit_for_bit(shape, values):
    x = bf16_channels_last(shape, values)
    dy = torch.randn(F.max_pool2d(x, 2).shape).bfloat16()
    dy = dy.contiguous(memory_format=torch.channels_last)
    y_torch, dx_torch = pool_and_grad(lambda t: F.max_pool2d(t, 2), x, dy)
    y_ours, dx_ours = pool_and_grad(MaxPool2d(2), x, dy)
    assert torch.equal(bits(y_ours), bits(y_torch))
    assert torch.equal(bits(dx_ours), bits(dx_torch))
    assert y_ours.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("torch_threads", [1, 2, 3])
def test_it_runs_on_as_many_pool_threads_as_torch_has_with_the_same_bits(torch_threads,
                                                                         monkeypatch):
    pieces = []
    parallel_range = cifar.max_pool.parallel_range
    monkeypatch.setattr(cifar.max_pool, "parallel_range", lambda kernel, total, threads: (
        pieces.append(threads), parallel_range(kernel, total, threads=threads)))
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        x = bf16_channels_last((3, 16, 12, 12), "ties, signed zeros, infinities and NaNs")
        dy = torch.randn(3, 16, 6, 6).bfloat16().contiguous(memory_format=torch.channels_last)
        y, dx = pool_and_grad(MaxPool2d(2), x, dy)
    finally:
        torch.set_num_threads(before)
    assert pieces == [torch_threads, torch_threads]  # forward, backward
    y_torch, dx_torch = pool_and_grad(lambda t: F.max_pool2d(t, 2), x, dy)
    assert torch.equal(bits(y), bits(y_torch)) and torch.equal(bits(dx), bits(dx_torch))


def test_an_nchw_output_gradient_gives_the_same_input_gradient():
    x = bf16_channels_last((2, 6, 10, 10), "normal")
    dy = torch.randn(2, 6, 5, 5).bfloat16()  # NCHW-contiguous, not channels_last
    _, dx_torch = pool_and_grad(lambda t: F.max_pool2d(t, 2), x, dy)
    _, dx_ours = pool_and_grad(MaxPool2d(2), x, dy)
    assert torch.equal(bits(dx_ours), bits(dx_torch))


def count_fast_calls(monkeypatch) -> list[int]:
    calls = []
    apply = cifar.max_pool._MaxPool2x2.apply
    monkeypatch.setattr(cifar.max_pool._MaxPool2x2, "apply",
                        lambda x: calls.append(1) or apply(x))
    return calls


def test_bfloat16_channels_last_2x2_windows_take_the_fast_path(monkeypatch):
    calls = count_fast_calls(monkeypatch)
    MaxPool2d(2)(bf16_channels_last((2, 4, 6, 6), "normal"))
    MaxPool2d((2, 2), stride=2)(bf16_channels_last((2, 4, 6, 6), "normal"))
    assert len(calls) == 2


@pytest.mark.parametrize(("args", "input_kind"), [
    ({"kernel_size": 2}, "float32 channels_last"),
    ({"kernel_size": 2}, "bfloat16 NCHW"),
    ({"kernel_size": 3}, "bfloat16 channels_last"),
    ({"kernel_size": 2, "stride": 1}, "bfloat16 channels_last"),
    ({"kernel_size": 2, "padding": 1}, "bfloat16 channels_last"),
    ({"kernel_size": 2, "ceil_mode": True}, "bfloat16 channels_last"),
    ({"kernel_size": 2, "dilation": 2}, "bfloat16 channels_last"),
])
def test_everything_else_goes_to_torchs_pool_with_torchs_result(monkeypatch, args, input_kind):
    calls = count_fast_calls(monkeypatch)
    dtype, layout = input_kind.split()
    x = torch.randn(2, 4, 9, 9).to(getattr(torch, dtype))
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(MaxPool2d(**args)(x), torch.nn.MaxPool2d(**args)(x))
    assert not calls


@pytest.mark.parametrize("preset", ["fast", "course"])
def test_build_model_puts_it_in_place_of_every_max_pool_with_the_same_state_dict(preset):
    config = PRESETS[preset]["model"]
    model = build_model(config)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert pools and all(type(m) is MaxPool2d for m in pools)
    assert list(model.state_dict()) == list(build_layers(config, torch.nn).state_dict())
