"""save/load: round trip, atomic writes, and clear errors for missing or mismatched files."""

import os

import numpy as np
import pytest

import nnlite
from nnlite import layers as L


def small_net(width=4):
    return L.Sequential(L.Conv2d(1, width, 3, pad=1), L.BatchNorm2d(width), L.ReLU(),
                        L.GlobalAvgPool2d(), L.Linear(width, 3))


def test_round_trip_restores_parameters_buffers_and_meta(tmp_path):
    nnlite.seed(1)
    net = small_net()
    net(nnlite.Tensor(np.random.rand(2, 1, 5, 5).astype(np.float32)))  # moves BN running stats
    path = nnlite.save(net, tmp_path / "w.npz", meta={"model": "small", "gamma": 1.2})
    nnlite.seed(2)
    other = small_net()
    meta = nnlite.load(other, path)
    assert meta == {"model": "small", "gamma": 1.2}
    for (name, a), (_, b) in zip(net.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert all(p.dtype == np.float32 for p in other.parameters())


def test_float16_files_load_back_as_float32(tmp_path):
    net = small_net()
    path = nnlite.save(net, tmp_path / "half.npz", dtype=np.float16)
    other = small_net()
    nnlite.load(other, path)
    assert other[0].W.dtype == np.float32
    np.testing.assert_allclose(other[0].W.data, net[0].W.data, rtol=1e-3, atol=1e-3)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(nnlite.WeightFileError, match="not found: .*nope.npz"):
        nnlite.load(small_net(), tmp_path / "nope.npz")


def test_shape_mismatch_names_the_parameter_and_both_shapes(tmp_path):
    path = nnlite.save(small_net(width=4), tmp_path / "w4.npz")
    with pytest.raises(nnlite.WeightFileError) as err:
        nnlite.load(small_net(width=8), path)
    message = str(err.value)
    assert "w4.npz" in message and "'0.W'" in message
    assert "(4, 1, 3, 3)" in message and "(8, 1, 3, 3)" in message


def test_name_mismatch_lists_missing_and_unexpected(tmp_path):
    path = nnlite.save(small_net(), tmp_path / "w.npz")
    other = L.Sequential(L.Linear(3, 3))
    with pytest.raises(nnlite.WeightFileError, match="missing .*unexpected"):
        nnlite.load(other, path)


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(nnlite.WeightFileError, match="cannot read"):
        nnlite.load(small_net(), path)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"\x80\x04 a pickle, or any other non-archive"),
     "it is not an .npz archive"),
    (lambda p: np.save(p, np.zeros(3)), "it is a single .npy array"),
    (lambda p: np.savez(p, W=np.zeros(3)), "not one written by nnlite.save"),
    (lambda p: p.mkdir(), "is a folder, not a weight file"),
])
def test_files_that_are_not_nnlite_weights_say_what_they_are(tmp_path, make, message):
    path = tmp_path / "w.npz"
    make(path)
    if path.with_name("w.npz.npy").exists():  # np.save adds .npy to a name without it
        path.with_name("w.npz.npy").rename(path)
    with pytest.raises(nnlite.WeightFileError, match=message) as err:
        nnlite.load(small_net(), path)
    assert str(path) in str(err.value) and "allow_pickle" not in str(err.value)


def test_save_is_atomic_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = nnlite.save(small_net(), tmp_path / "w.npz", meta={"version": "old"})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if the run were killed mid-write

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        nnlite.save(small_net(), path, meta={"version": "new"})
    monkeypatch.undo()
    assert nnlite.read_meta(path) == {"version": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temp file left behind
    assert os.path.getsize(path) > 0
