"""PyNet model files: .npz round trips, never a pickle, and clear errors for bad files."""

import json
import zipfile

import numpy as np
import pytest

import backends
from spec.serialization import ModelFileError


def small_cnn(nn, width=4):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width * 4, 10))


@pytest.fixture
def trained(tmp_path):
    nn = backends.get("numpy")
    net = small_cnn(nn)
    net(np.random.default_rng(0).standard_normal((4, 3, 4, 4)).astype(np.float32))
    path = tmp_path / "model.npz"
    net.save(path)
    return net, path


@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_a_saved_model_reloads_on_any_backend_with_identical_outputs(trained, backend):
    net, path = trained
    loaded = backends.get(backend).load(path)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    assert repr(loaded) == repr(net)
    assert loaded[1].num_batches_tracked == 1
    np.testing.assert_allclose(loaded.eval()(x), net.eval()(x), rtol=1e-6, atol=1e-6)


# The architecture record of every layer type, as files written since format 1 hold it
FORMAT_1_RECORD = {"type": "Sequential", "config": {}, "children": [
    {"type": "Conv2d", "config": {"in_channels": 3, "out_channels": 4, "kernel_size": [3, 3],
                                  "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1],
                                  "bias": True}},
    {"type": "BatchNorm2d", "config": {"num_features": 4, "eps": 1e-05, "momentum": 0.1,
                                       "affine": True, "track_running_stats": True,
                                       "bias": True}},
    {"type": "ReLU", "config": {}},
    {"type": "MaxPool2d", "config": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
                                     "dilation": [1, 1], "ceil_mode": False}},
    {"type": "Flatten", "config": {"start_dim": 1, "end_dim": -1}},
    {"type": "Linear", "config": {"in_features": 16, "out_features": 10, "bias": True}},
    {"type": "AdaptiveMaxPool2d", "config": {"output_size": [1, 1]}},
    {"type": "GELU", "config": {"approximate": "none"}},
    {"type": "CrossEntropyLoss", "config": {"label_smoothing": 0.0, "reduction": "mean"}}]}


def test_a_format_1_file_still_loads_as_the_same_model(tmp_path):
    nn = backends.get("numpy")
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 10), nn.AdaptiveMaxPool2d(1),
                        nn.GELU(), nn.CrossEntropyLoss())
    header = json.dumps({"format": 1, "architecture": FORMAT_1_RECORD})
    np.savez(tmp_path / "old.npz", __architecture__=np.array(header), **net.state_dict())
    assert repr(nn.load(tmp_path / "old.npz")) == repr(net)


def test_loading_weights_into_a_model_of_the_same_architecture(trained):
    net, path = trained
    other = small_cnn(backends.get("numba")).load(path)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)


def test_a_file_of_another_architecture_names_the_difference(trained):
    _, path = trained
    with pytest.raises(ModelFileError, match=r"another architecture: model.children\[0\]"
                                             r".config.out_channels is 4 in the file, 8"):
        small_cnn(backends.get("numpy"), width=8).load(path)


def test_missing_and_extra_keys_are_named(trained, tmp_path):
    _, path = trained
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays.pop("1.running_var")
    arrays["7.weight"] = np.zeros(3)
    bad = tmp_path / "keys.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ModelFileError, match=r"missing keys \['1.running_var'\], "
                                             r"unexpected keys \['7.weight'\]"):
        backends.get("numpy").load(bad)


def test_a_truncated_file_is_a_clear_error(trained, tmp_path):
    _, path = trained
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ModelFileError, match=r"cut.npz: not a readable PyNet model file"):
        backends.get("numpy").load(cut)


def test_a_pickle_inside_the_archive_is_refused_not_executed(tmp_path):
    evil = tmp_path / "evil.npz"
    np.savez(evil, __architecture__=np.array([{"type": "ReLU"}], dtype=object))
    with pytest.raises(ModelFileError, match="pickled objects"):
        backends.get("numpy").load(evil)


def test_a_zip_without_an_architecture_record_is_not_a_model_file(tmp_path):
    path = tmp_path / "weights.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weight.npy", b"")
    with pytest.raises(ModelFileError):
        backends.get("numpy").load(path)


def test_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz: no such PyNet model file"):
        backends.get("numpy").load(tmp_path / "nothing.npz")
