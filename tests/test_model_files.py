"""PyNet model files: .npz round trips, never a pickle, and clear errors for bad files."""

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
