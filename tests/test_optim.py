"""Optimizers and the learning-rate schedule follow torch.optim (Muon: `cifar.optim.Muon`) to
round-off in float64."""

import numpy as np
import pytest
import torch

import backends
from cifar.optim import Muon as TorchMuon
from spec.optim import SGD, Adam, AdamW, CosineAnnealingLR, LambdaLR, Muon, orthogonalize

CONFIGS = [
    (SGD, torch.optim.SGD, {"lr": 0.1}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                            "weight_decay": 1e-3}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.5, "dampening": 0.3}),
    (Adam, torch.optim.Adam, {"lr": 1e-2}),
    (Adam, torch.optim.Adam, {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 1e-2}),
    (AdamW, torch.optim.AdamW, {"lr": 1e-2}),
    (AdamW, torch.optim.AdamW, {"lr": 3e-3, "weight_decay": 0.1, "eps": 1e-6}),
]


def _twin_networks():
    """A float64 torch MLP and its PyNet copy with the same weights."""
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3)).double()
    nn = backends.get("numpy")
    net = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    net.load_state_dict(reference.state_dict())
    return reference, net


def _step_both_on_the_same_gradients(opt, ref_opt, net, reference, rng) -> None:
    grads = {name: rng.standard_normal(p.shape) for name, p in net.named_parameters()}
    opt.zero_grad()
    for prefix, module in net.named_modules():
        for name in module._parameters:
            module._accumulate_grad(name, grads[prefix + name])
    opt.step()
    ref_opt.zero_grad()
    for name, p in reference.named_parameters():
        p.grad = torch.tensor(grads[name])
    ref_opt.step()


def _assert_same_weights(net, reference) -> None:
    for name, p in reference.named_parameters():
        np.testing.assert_allclose(net.state_dict()[name], p.detach().numpy(), rtol=1e-12,
                                   atol=1e-14)


@pytest.mark.parametrize("ours, theirs, kwargs", CONFIGS,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CONFIGS)])
def test_optimizer_matches_torch_over_20_steps_on_the_same_gradients(ours, theirs, kwargs):
    reference, net = _twin_networks()
    opt, ref_opt = ours(net, **kwargs), theirs(reference.parameters(), **kwargs)
    rng = np.random.default_rng(0)
    for _ in range(20):
        _step_both_on_the_same_gradients(opt, ref_opt, net, reference, rng)
    _assert_same_weights(net, reference)


def test_param_groups_and_frozen_parameters_match_torch_param_groups():
    reference, net = _twin_networks()
    groups = [{"params": ["0.bias", "1.bias"], "lr": 0.5, "weight_decay": 1e-4},
              {"params": ["1.weight"]}]  # "0.weight" is frozen: in no group
    opt = SGD(net, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2, param_groups=groups)
    ref = dict(reference.named_parameters())
    ref_opt = torch.optim.SGD([{**g, "params": [ref[n] for n in g["params"]]} for g in groups],
                              lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)
    schedule, ref_schedule = LambdaLR(opt, lambda s: 1 / (1 + s)), \
        torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda s: 1 / (1 + s))
    rng = np.random.default_rng(0)
    for _ in range(20):
        _step_both_on_the_same_gradients(opt, ref_opt, net, reference, rng)
        schedule.step()
        ref_schedule.step()
        assert schedule.get_last_lr() == pytest.approx(ref_schedule.get_last_lr(), rel=1e-12)
    _assert_same_weights(net, reference)


def test_param_groups_naming_an_unknown_parameter_is_an_error():
    nn = backends.get("numpy")
    with pytest.raises(ValueError, match=r"\['2.weight'\] that Linear"):
        SGD(nn.Linear(2, 2), lr=0.1, param_groups=[{"params": ["2.weight"]}])


def test_cosine_schedule_matches_torch():
    nn = backends.get("numpy")
    opt = SGD(nn.Linear(2, 2), lr=0.4)
    ref_opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.4)
    ours, theirs = CosineAnnealingLR(opt, T_max=7, eta_min=0.01), \
        torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=7, eta_min=0.01)
    for _ in range(7):
        ref_opt.step()
        ours.step()
        theirs.step()
        assert ours.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], rel=1e-12)


def test_optimizer_rejects_what_torch_rejects():
    nn = backends.get("numpy")
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum"):
        SGD(nn.Linear(2, 2), lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="expected a PyNet module, got generator"):
        SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)


MUON_CONFIGS = [
    {"lr": 0.05},
    {"lr": 0.02, "momentum": 0.9, "nesterov": False, "ns_steps": 5},
    {"lr": 0.1, "momentum": 0.6, "renormalize": False},
]


def _twin_conv_networks():
    """A float64 torch conv net and its PyNet copy with the same weights."""
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 4, 3),
                                    torch.nn.Flatten(), torch.nn.Linear(4, 16)).double()
    nn = backends.get("numpy")
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(4, 16))
    net.load_state_dict(reference.state_dict())
    return reference, net


@pytest.mark.parametrize("kwargs", MUON_CONFIGS, ids=lambda k: "-".join(map(str, k.values())))
def test_muon_matches_the_torch_muon_over_20_steps_on_the_same_gradients(kwargs):
    reference, net = _twin_conv_networks()
    filters = ["0.weight", "1.weight", "3.weight"]  # a 3x3 bank of each shape and a matrix
    ref = dict(reference.named_parameters())
    opt = Muon(net, **kwargs, param_groups=[{"params": filters}])
    ref_opt = TorchMuon([ref[name] for name in filters], **kwargs)
    rng = np.random.default_rng(0)
    for _ in range(20):
        _step_both_on_the_same_gradients(opt, ref_opt, net, reference, rng)
    for name in filters:
        np.testing.assert_allclose(net.state_dict()[name], ref[name].detach().numpy(),
                                   rtol=1e-10, atol=1e-12)
    assert all(np.array_equal(net.state_dict()[n], ref[n].detach().numpy())
               for n in ("0.bias", "1.bias"))  # in no group: untouched


@pytest.mark.parametrize("shape", [(8, 27), (27, 8)], ids=["wide", "tall"])
def test_orthogonalize_keeps_the_singular_vectors_and_squeezes_the_singular_values(shape):
    """Newton-Schulz is an odd matrix polynomial: p(U S V^T) = U p(S) V^T exactly, and the
    quintic maps every singular value of the normalised input into (0, 1.5)."""
    update = np.random.default_rng(0).standard_normal(shape)
    u, _, vt = np.linalg.svd(update, full_matrices=False)
    core = u.T @ orthogonalize(update, 5) @ vt.T
    np.testing.assert_allclose(core, np.diag(np.diag(core)), atol=1e-12)
    assert np.all((np.diag(core) > 0.3) & (np.diag(core) < 1.5))
    np.testing.assert_allclose(orthogonalize(update, 5),
                               orthogonalize(torch.tensor(update), 5).numpy(), rtol=1e-12)


def test_muon_refuses_a_parameter_of_one_dimension_like_its_torch_version():
    nn = backends.get("numpy")
    with pytest.raises(ValueError, match=r"Muon: expected filters of 2 or more dimensions, "
                                         r"got \['bias'\]"):
        Muon(nn.Linear(2, 2), param_groups=[{"params": ["weight", "bias"]}])
    with pytest.raises(ValueError, match=r"Muon: expected filters .* shape \(2,\)"):
        TorchMuon(torch.nn.Linear(2, 2).parameters())
