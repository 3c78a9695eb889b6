"""``backward(dy, input_grad=False)``: the parameter gradients alone, as torch computes them
for a layer whose input needs no gradient (a network's first layer). The default still
returns dL/dx; opting out gives the same parameter gradients, returns None, and skips work:
the first layer's dx, every layer before it, and a convolution's dx kernel where the backend
has the optional ``conv2d_backward_weight``."""

import types

import numpy as np
import pytest

import backends
from backends import contract

RNG = np.random.default_rng(0)


def networks(nn):
    """Layers and chains whose parameter gradients must not depend on input_grad."""
    return {
        "conv": nn.Conv2d(3, 4, 3, padding=1),
        "conv-nobias-stride2": nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False),
        "linear": nn.Linear(6, 5),
        "batchnorm": nn.BatchNorm2d(3),
        "conv-bn-relu-pool-linear": nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(4 * 3 * 3, 5)),
        "relu-then-conv": nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Flatten()),
    }


def input_for(name):
    return RNG.standard_normal((2, 6) if name == "linear" else (2, 3, 6, 6))


@pytest.mark.parametrize("name", list(networks(backends.get("numpy"))))
@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_input_grad_false_returns_none_and_the_same_parameter_gradients(backend, name):
    net = networks(backends.get(backend))[name].double()
    x = input_for(name)
    dy = RNG.standard_normal(net(x).shape)
    dx = net.backward(dy)
    full = {k: v.copy() for k, v in net.grads.items()}
    net.zero_grad()
    net(x)
    assert net.backward(dy, input_grad=False) is None
    assert dx.shape == x.shape and full.keys() == net.grads.keys()
    for key, grad in net.grads.items():
        np.testing.assert_allclose(grad, full[key], rtol=1e-12, atol=1e-14, err_msg=key)


def kernels_with_weight_shortcut(calls: list[str]) -> types.ModuleType:
    """The numpy backend's kernels plus a recording conv2d_backward_weight."""
    base = backends.get("numpy").kernels
    module = types.ModuleType("with_shortcut")
    vars(module).update({name: getattr(base, name) for name in contract.KERNEL_NAMES})

    def conv2d_backward(dy, ctx):
        calls.append("conv2d_backward")
        return base.conv2d_backward(dy, ctx)

    def conv2d_backward_weight(dy, ctx):
        calls.append("conv2d_backward_weight")
        return base.conv2d_backward(dy, ctx)[1:]

    module.conv2d_backward, module.conv2d_backward_weight = (conv2d_backward,
                                                             conv2d_backward_weight)
    return module


def test_conv_uses_the_optional_weight_kernel_only_when_no_input_gradient_is_wanted():
    calls: list[str] = []
    nn = backends.get(kernels_with_weight_shortcut(calls))
    conv = nn.Conv2d(3, 4, 3)
    x = RNG.standard_normal((2, 3, 5, 5)).astype(np.float32)
    dy = np.ones((2, 4, 3, 3), np.float32)
    conv(x)
    conv.backward(dy)
    conv(x)
    conv.backward(dy, input_grad=False)
    assert calls == ["conv2d_backward", "conv2d_backward_weight"]


def test_a_chain_runs_no_backward_before_its_first_layer_with_parameters():
    nn = backends.get(kernels_with_weight_shortcut([]))
    net = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten())
    net(RNG.standard_normal((2, 3, 5, 5)).astype(np.float32))
    calls = []
    for layer in net:
        original = layer._backward
        layer._backward = lambda dy, layer=layer, original=original: (
            calls.append(type(layer).__name__), original(dy))[1]
    net.backward(np.ones((2, 36), np.float32), input_grad=False)
    assert calls == ["Flatten", "ReLU"]  # the conv takes its parameter-only path, ReLU 0 none


def test_a_backend_without_the_optional_kernel_is_complete_and_falls_back():
    base = backends.get("numpy").kernels
    module = types.ModuleType("required_only")
    vars(module).update({name: getattr(base, name) for name in contract.KERNEL_NAMES})
    assert contract.validate(module, "required_only", complete=True) == ()
    conv = backends.get(module).Conv2d(3, 4, 3)
    conv(RNG.standard_normal((2, 3, 5, 5)).astype(np.float32))
    assert conv.backward(np.ones((2, 4, 3, 3), np.float32), input_grad=False) is None
    assert conv.grads["weight"].shape == (4, 3, 3, 3)


def test_an_optional_kernel_with_other_parameters_breaks_the_contract():
    calls: list[str] = []
    module = kernels_with_weight_shortcut(calls)
    module.conv2d_backward_weight = lambda grad, ctx: None
    with pytest.raises(contract.ContractError,
                       match=r"conv2d_backward_weight takes \(grad, ctx\), expected \(dy, ctx\)"):
        backends.get(module)
