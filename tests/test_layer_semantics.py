"""PyTorch's semantics, pinned by hand-computed expectations on every backend."""

import numpy as np
import pytest


def test_maxpool_tie_sends_the_gradient_to_the_first_maximum(nn):
    pool = nn.MaxPool2d(2)
    x = np.zeros((1, 1, 2, 4), np.float32)  # every window is a four-way tie
    pool(x)
    dx = pool.backward(np.ones((1, 1, 1, 2), np.float32))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 1, 0], [0, 0, 0, 0]])


def test_maxpool_pads_with_negative_infinity_not_zero(nn):
    pool = nn.MaxPool2d(3, stride=1, padding=1)
    x = -np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)
    y = pool(x)
    assert y.max() < 0  # zero padding would make a 0 appear at every border window
    assert y[0, 0, 0, 0] == -1 and y[0, 0, 2, 2] == -5


def test_overlapping_pool_windows_accumulate_gradient(nn):
    pool = nn.MaxPool2d(3, stride=1)
    x = np.zeros((1, 1, 5, 5), np.float64)
    x[0, 0, 2, 2] = 1.0  # the maximum of all nine 3x3 windows
    pool(x)
    dx = pool.backward(np.ones((1, 1, 3, 3)))
    assert dx[0, 0, 2, 2] == 9 and dx.sum() == 9


def test_strided_conv_gradient_accumulates_over_overlapping_windows(nn):
    conv = nn.Conv2d(1, 1, 3, stride=1, bias=False, dtype=np.float64)
    conv.load_state_dict({"weight": np.ones((1, 1, 3, 3))})
    conv(np.zeros((1, 1, 5, 5)))
    dx = conv.backward(np.ones((1, 1, 3, 3)))
    assert dx[0, 0, 2, 2] == 9 and dx[0, 0, 0, 0] == 1 and dx[0, 0, 0, 2] == 3


def test_batchnorm_normalises_with_biased_and_tracks_unbiased_variance(nn):
    bn = nn.BatchNorm1d(1, momentum=0.1, dtype=np.float64)
    x = np.array([[1.0], [2.0], [3.0], [6.0]])
    y = bn(x)
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 3) / np.sqrt(x.var() + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(bn.running_mean, [0.9 * 0 + 0.1 * 3.0], rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, [0.9 * 1 + 0.1 * x.var(ddof=1)], rtol=1e-12)
    assert bn.num_batches_tracked == 1 and bn.num_batches_tracked.dtype == np.int64


def test_batchnorm_eval_mode_uses_running_statistics(nn):
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    bn.load_state_dict({**bn.state_dict(), "running_mean": np.array([1.0, -1.0]),
                        "running_var": np.array([4.0, 0.25])})
    x = np.ones((3, 2, 2, 2))
    y = bn.eval()(x)
    np.testing.assert_allclose(y[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(y[:, 1], 2.0 / np.sqrt(0.25 + 1e-5), rtol=1e-12)
    assert bn.num_batches_tracked == 0  # eval mode leaves the statistics alone


def test_batchnorm_momentum_none_is_a_cumulative_average(nn):
    bn = nn.BatchNorm1d(1, momentum=None, dtype=np.float64)
    for mean in (2.0, 4.0, 9.0):
        bn(np.array([[mean - 1], [mean + 1]]))
    np.testing.assert_allclose(bn.running_mean, [5.0], rtol=1e-12)


def test_cross_entropy_is_finite_for_huge_logits(nn):
    crit = nn.CrossEntropyLoss()
    logits = np.array([[1e3, -1e3, 0.0], [-1e3, 1e3, 999.0]])
    loss = crit(logits, np.array([1, 2]))
    dlogits = crit.backward()
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    np.testing.assert_allclose(loss, (2000.0 + np.log1p(np.exp(-1.0)) + 1.0) / 2, rtol=1e-12)


def test_cross_entropy_label_smoothing_mixes_in_the_uniform_target(nn):
    crit = nn.CrossEntropyLoss(label_smoothing=0.3)
    logits = np.zeros((1, 4))  # uniform softmax: every -log p is log 4
    np.testing.assert_allclose(crit(logits, np.array([0])), np.log(4), rtol=1e-12)
    np.testing.assert_allclose(crit.backward(), [[0.25 - 0.775, 0.25 - 0.075,
                                                  0.25 - 0.075, 0.25 - 0.075]], rtol=1e-12)


def test_cross_entropy_reductions_sum_and_none(nn):
    logits, targets = np.array([[0.0, 1.0], [2.0, 0.0]]), np.array([1, 0])
    per_sample = nn.CrossEntropyLoss(reduction="none")(logits, targets)
    assert per_sample.shape == (2,)
    np.testing.assert_allclose(nn.CrossEntropyLoss(reduction="sum")(logits, targets),
                               per_sample.sum(), rtol=1e-12)


def test_relu_gradient_at_exactly_zero_is_zero(nn):
    relu = nn.ReLU()
    relu(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(relu.backward(np.ones(3)), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_layer_keeps_the_input_dtype(nn, dtype):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3)).to(dtype)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(dtype)
    y = net(x)
    crit = nn.CrossEntropyLoss()
    loss = crit(y, np.array([0, 2]))
    dx = net.backward(crit.backward())
    assert y.dtype == loss.dtype == dx.dtype == dtype
    assert all(g.dtype == dtype for g in net.grads.values())


def test_relu_lets_the_gradient_through_nan_as_torchs_threshold_backward_does(nn):
    relu = nn.ReLU()
    y = relu(np.array([np.nan, -np.inf, 1.0]))
    assert np.isnan(y[0])
    np.testing.assert_array_equal(relu.backward(np.full(3, 2.0)), [2.0, 0.0, 2.0])


def test_maxpool_window_of_minus_inf_sends_its_gradient_to_its_first_element_inside(nn):
    pool = nn.MaxPool2d(3, stride=2, padding=1)
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, :2, :2] = -np.inf  # the top-left window sees only -inf inside the input
    y = pool(x)
    assert y[0, 0, 0, 0] == -np.inf
    dx = pool.backward(np.ones_like(y))
    assert dx[0, 0, 0, 0] == 1 and dx.sum() == 4  # no gradient lost to the padding
