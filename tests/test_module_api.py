"""The torch-like module API: state dicts, gradients, modes, initialisation, printing."""

import inspect
import math

import numpy as np
import pytest
import torch

import backends
import spec


def small_cnn(nn):
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 10))


def small_torch_cnn():
    t = torch.nn
    return t.Sequential(t.Conv2d(3, 4, 3, padding=1), t.BatchNorm2d(4), t.ReLU(),
                        t.MaxPool2d(2), t.Flatten(), t.Linear(4 * 2 * 2, 10))


def test_get_rejects_an_unknown_backend_and_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'cuda'.*naive, numpy, numba"):
        backends.get("cuda")


def test_state_dict_has_torchs_keys_shapes_and_order(nn):
    ours, theirs = small_cnn(nn).state_dict(), small_torch_cnn().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == tuple(theirs[k].shape) for k in ours)


def test_a_torch_state_dict_loads_as_is_and_gives_torchs_output(nn):
    reference = small_torch_cnn().eval()
    net = small_cnn(nn)
    net.load_state_dict(reference.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(net.eval()(x), reference(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_load_state_dict_keeps_the_given_dtype(nn):
    conv = nn.Conv2d(2, 2, 1)
    conv.load_state_dict({k: v.astype(np.float64) for k, v in conv.state_dict().items()})
    assert conv.weight.dtype == np.float64
    assert conv(np.ones((1, 2, 1, 1))).dtype == np.float64


def test_load_state_dict_names_missing_and_unexpected_keys(nn):
    net = small_cnn(nn)
    state = net.state_dict()
    state.pop("1.running_var")
    state["9.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['1.running_var'\].*'9.weight'"):
        net.load_state_dict(state)


def test_load_state_dict_names_the_key_with_the_wrong_shape(nn):
    conv = nn.Conv2d(3, 16, 3)
    expected = r"'weight' expected shape \(16, 3, 3, 3\), got \(16, 3, 5, 5\)"
    with pytest.raises(ValueError, match=expected):
        conv.load_state_dict({"weight": np.zeros((16, 3, 5, 5), np.float32),
                              "bias": np.zeros(16, np.float32)})


def test_gradients_accumulate_like_torch_until_zero_grad(nn):
    fc = nn.Linear(3, 2, dtype=np.float64)
    x, dy = np.ones((1, 3)), np.ones((1, 2))
    fc(x)
    fc.backward(dy)
    once = fc.grads["weight"].copy()
    fc(x)
    fc.backward(dy)
    np.testing.assert_array_equal(fc.grads["weight"], 2 * once)
    fc.zero_grad()
    assert fc.grads == {}


def test_sequential_gradients_use_dotted_names(nn):
    net = small_cnn(nn)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    net.backward(np.ones(net(x).shape, np.float32))
    assert sorted(net.grads) == sorted(name for name, _ in net.named_parameters())
    assert [name for name, _ in net.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"]


def test_train_and_eval_propagate_to_children(nn):
    net = small_cnn(nn)
    assert net.eval() is net and not any(layer.training for layer in net)
    assert all(layer.training for layer in net.train())


def test_backward_before_forward_is_an_error(nn):
    with pytest.raises(RuntimeError, match=r"Linear\(3, 2\): backward\(\) called before"):
        nn.Linear(3, 2).backward(np.ones((1, 2), np.float32))


@pytest.mark.parametrize("make, fan_in", [
    (lambda nn: nn.Conv2d(16, 64, 3), 16 * 9), (lambda nn: nn.Linear(400, 300), 400)])
def test_default_init_is_torchs_kaiming_uniform(nn, make, fan_in):
    layer = make(nn)
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) reduces to this
    for name in ("weight", "bias"):
        values = getattr(layer, name)
        assert values.dtype == np.float32 and np.abs(values).max() <= bound
    weight = layer.weight.astype(np.float64)
    assert abs(weight.mean()) < 0.02 * bound
    assert weight.var() == pytest.approx(bound**2 / 3, rel=0.05)


REPR_PAIRS = [  # (PyNet layer, torch layer) built with the same arguments
    ("Conv2d", (3, 16, 3), {"padding": 1}), ("Conv2d", (3, 4, (3, 5)), {"stride": 2}),
    ("Conv2d", (3, 4, 3), {"dilation": 2, "bias": False}),
    ("Linear", (4, 2), {}), ("Linear", (4, 2), {"bias": False}),
    ("BatchNorm2d", (8,), {}),
    ("BatchNorm1d", (8,), {"eps": 1e-3, "momentum": None, "affine": False}),
    ("BatchNorm1d", (8,), {"track_running_stats": False, "bias": False}),
    ("ReLU", (), {}), ("Flatten", (), {}), ("Flatten", (0, 2), {}), ("GELU", ("tanh",), {}),
    ("AdaptiveMaxPool2d", (1,), {}), ("AdaptiveMaxPool2d", ((2, 3),), {})]


@pytest.mark.parametrize("name, args, kwargs", REPR_PAIRS)
def test_repr_matches_torch(nn, name, args, kwargs):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)


def test_a_sequential_prints_its_children_as_torch_does(nn):
    assert repr(nn.Sequential(nn.ReLU())) == repr(torch.nn.Sequential(torch.nn.ReLU()))


@pytest.mark.parametrize("make", [
    lambda nn: nn.Conv2d(3, 4, (3, 5), stride=2, padding=1, dilation=2, bias=False),
    lambda nn: nn.Linear(4, 2, bias=False),
    lambda nn: nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
    lambda nn: nn.AdaptiveMaxPool2d((2, 3)),
    lambda nn: nn.BatchNorm1d(8, eps=1e-3, momentum=None, affine=False),
    lambda nn: nn.Flatten(0, 2), lambda nn: nn.GELU("tanh"),
    lambda nn: nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum")])
def test_config_rebuilds_the_same_layer(nn, make):
    layer = make(nn)
    rebuilt = type(layer)(**layer.config())
    assert (rebuilt.config(), repr(rebuilt)) == (layer.config(), repr(layer))


@pytest.mark.parametrize("layer", [cls for cls in spec.LAYERS if cls is not spec.Sequential],
                         ids=lambda cls: cls.__name__)
def test_every_constructor_argument_but_dtype_is_a_declared_constant(layer):
    arguments = set(inspect.signature(layer).parameters) - {"dtype"}
    assert sorted(layer.__constants__) == sorted(arguments)


@pytest.mark.parametrize("make, label", [
    (lambda nn: nn.Conv2d(3, 16, 3, padding=1), "Conv2d(3, 16, (3, 3))"),
    (lambda nn: nn.Linear(4, 2, bias=False), "Linear(4, 2)"),
    (lambda nn: nn.MaxPool2d(2), "MaxPool2d((2, 2))"),
    (lambda nn: nn.AdaptiveMaxPool2d(1), "AdaptiveMaxPool2d((1, 1))"),
    (lambda nn: nn.BatchNorm2d(8, eps=1e-3), "BatchNorm2d(8)"),
    (lambda nn: nn.GELU("tanh"), "GELU()"),
    (lambda nn: nn.CrossEntropyLoss(reduction="sum"), "CrossEntropyLoss()"),
    (lambda nn: nn.Sequential(nn.ReLU(), nn.ReLU()), "Sequential(2 layers)")])
def test_describe_is_the_constructor_call_with_the_required_arguments(nn, make, label):
    assert make(nn).describe() == label
