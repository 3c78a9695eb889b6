"""Bad input gets a clear error naming the layer, what it expected and what it got."""

import numpy as np
import pytest


def test_conv_names_itself_the_expected_and_the_actual_shape(nn):
    conv = nn.Conv2d(3, 16, 3)
    with pytest.raises(ValueError, match=r"^Conv2d\(3, 16, \(3, 3\)\): expected input "
                                         r"\(N, 3, H, W\).*got \(8, 4, 32, 32\)$"):
        conv(np.zeros((8, 4, 32, 32), np.float32))


@pytest.mark.parametrize("make, shape", [
    (lambda nn: nn.Conv2d(3, 4, 3), (3, 32, 32)),
    (lambda nn: nn.Conv2d(3, 4, 5), (1, 3, 4, 4)),
    (lambda nn: nn.Linear(10, 2), (4, 9)),
    (lambda nn: nn.Linear(10, 2), (10,)),
    (lambda nn: nn.MaxPool2d(2), (4, 3, 8)),
    (lambda nn: nn.MaxPool2d(3), (1, 1, 2, 2)),
    (lambda nn: nn.BatchNorm2d(3), (4, 3, 8)),
    (lambda nn: nn.BatchNorm2d(3), (4, 5, 8, 8)),
    (lambda nn: nn.BatchNorm1d(3), (4, 3, 2, 2)),
])
def test_wrong_rank_channels_or_size_is_a_value_error(nn, make, shape):
    layer = make(nn)
    with pytest.raises(ValueError, match=rf"^{type(layer).__name__}\(.*expected input .*got "
                                         rf"\({', '.join(map(str, shape))},?\)$"):
        layer(np.zeros(shape, np.float32))


@pytest.mark.parametrize("bad", [np.zeros((2, 3), np.int64), np.zeros((2, 3), np.float16)])
def test_non_float_input_is_a_type_error(nn, bad):
    with pytest.raises(TypeError, match=rf"Linear\(3, 2\): expected a float32 or float64 "
                                        rf"input, got {bad.dtype}"):
        nn.Linear(3, 2)(bad)


def test_a_list_is_not_silently_converted(nn):
    with pytest.raises(TypeError, match=r"ReLU\(\): expected a NumPy array, got list"):
        nn.ReLU()([1.0, -1.0])


def test_dtype_mismatch_between_input_and_parameters_is_an_error_not_an_upcast(nn):
    with pytest.raises(TypeError, match=r"Conv2d\(1, 1, \(1, 1\)\): input dtype float64 does not "
                                        r"match parameter 'weight' dtype float32"):
        nn.Conv2d(1, 1, 1)(np.zeros((1, 1, 2, 2)))


def test_backward_rejects_a_gradient_of_the_wrong_shape(nn):
    relu = nn.ReLU()
    relu(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"ReLU\(\): backward expected a gradient of shape "
                                         r"\(2, 3\) and dtype float32, got \(3, 2\)"):
        relu.backward(np.zeros((3, 2), np.float32))


def test_batchnorm_in_training_needs_more_than_one_value_per_channel(nn):
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\): expected more than 1 value"):
        nn.BatchNorm1d(4)(np.zeros((1, 4), np.float32))


@pytest.mark.parametrize("targets, error, message", [
    (np.array([0, 3]), ValueError, r"targets must be in \[0, 3\), got values from 0 to 3"),
    (np.array([0.0, 1.0]), TypeError, "expected integer class targets, got dtype float64"),
    (np.array([0, 1, 2]), ValueError, r"expected targets of shape \(2,\), got \(3\)"),
])
def test_cross_entropy_rejects_bad_targets(nn, targets, error, message):
    with pytest.raises(error, match=r"CrossEntropyLoss\(\): " + message):
        nn.CrossEntropyLoss()(np.zeros((2, 3), np.float32), targets)


@pytest.mark.parametrize("make, message", [
    (lambda nn: nn.Conv2d(3, 4, 0), r"kernel_size must be >= 1, got 0"),
    (lambda nn: nn.Conv2d(3, 4, (3, 3, 3)), "kernel_size must be an int or a pair of ints"),
    (lambda nn: nn.Conv2d(3, 4, 2, padding="same"), "even effective kernel"),
    (lambda nn: nn.MaxPool2d(2, padding=2), "padding should be at most half"),
    (lambda nn: nn.Linear(0, 2), "in_features must be a positive int, got 0"),
    (lambda nn: nn.CrossEntropyLoss(label_smoothing=1.5), r"label_smoothing must be in \[0, 1\]"),
])
def test_bad_constructor_arguments_name_the_argument(nn, make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make(nn)


def test_adaptive_pool_names_the_sizes_it_supports(nn):
    expected = (r"AdaptiveMaxPool2d\(\(3, 3\)\): expected input \(N, C, H, W\) with H a "
                r"multiple of 3.*got \(1, 2, 8, 8\)")
    with pytest.raises(ValueError, match=expected):
        nn.AdaptiveMaxPool2d(3)(np.zeros((1, 2, 8, 8), np.float32))
