"""nnlite.fold: a network with its batch norms folded predicts what the network predicts."""

import numpy as np
import pytest

import nnlite
from nnlite import layers as L
from nnlite.fold import fold_batch_norm


def trained_looking(net, seed=0):
    """Give every batch norm running statistics and an affine part far from the defaults
    (a fresh one is the identity, which would let a wrong fold pass)."""
    rng = np.random.default_rng(seed)
    for m in net.modules():
        if isinstance(m, L.BatchNorm):
            c = m.gamma.shape[0]
            m.gamma.data[:] = rng.uniform(0.5, 2.0, c)
            m.beta.data[:] = rng.normal(0, 0.5, c)
            m._buffers["running_mean"][:] = rng.normal(0, 0.5, c)
            m._buffers["running_var"][:] = rng.uniform(0.2, 3.0, c)
    return net.eval()


def small_nets():
    return {
        "conv bn relu (no bias)": L.Sequential(
            L.Conv2d(2, 4, 3, pad=1, bias=False), L.BatchNorm2d(4), L.ReLU(),
            L.GlobalAvgPool2d(), L.Linear(4, 3)),
        "conv with bias, dense bn": L.Sequential(
            L.Conv2d(2, 4, 3, pad=1), L.BatchNorm2d(4), L.MaxPool2d(2), L.Flatten(),
            L.Linear(4 * 4 * 4, 5), L.BatchNorm1d(5), L.ReLU(), L.Linear(5, 3)),
        "depthwise, pointwise, residual": L.Sequential(
            L.Residual(L.Sequential(L.Conv2d(2, 2, 3, pad=1, groups=2, bias=False),
                                    L.Conv2d(2, 4, 1, bias=False), L.BatchNorm2d(4)),
                       L.Sequential(L.Conv2d(2, 4, 1, bias=False), L.BatchNorm2d(4))),
            L.ReLU(), L.GlobalAvgPool2d(), L.Linear(4, 3)),
        "a batch norm first (nothing to fold into)": L.Sequential(
            L.BatchNorm2d(2), L.Conv2d(2, 3, 3), L.GlobalAvgPool2d(), L.Linear(3, 2)),
    }


@pytest.mark.parametrize("name", list(small_nets()))
def test_a_folded_net_predicts_the_same_and_the_net_is_untouched(name):
    net = trained_looking(small_nets()[name])
    x = nnlite.Tensor(np.random.default_rng(1).standard_normal((3, 2, 8, 8)).astype(np.float32))
    before = {k: v.data.copy() for k, v in net.named_parameters()}
    with nnlite.no_grad():
        want = net(x).data
        folded = fold_batch_norm(net)
        got = folded(x).data
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert {k: v.data.tolist() for k, v in net.named_parameters()} == \
        {k: v.tolist() for k, v in before.items()}  # the model itself is unchanged
    norms_left = [m for m in folded.modules() if isinstance(m, L.BatchNorm)]
    assert len(norms_left) == (1 if name.startswith("a batch norm first") else 0)
    assert not folded.training


def test_the_fold_is_the_formula():
    conv, norm = L.Conv2d(1, 2, 1, bias=True), L.BatchNorm2d(2)
    conv.W.data[:] = np.array([2.0, -1.0]).reshape(2, 1, 1, 1)
    conv.b.data[:] = [1.0, 0.5]
    norm.gamma.data[:], norm.beta.data[:] = [3.0, 1.0], [0.25, -2.0]
    norm._buffers["running_mean"][:], norm._buffers["running_var"][:] = [1.0, 0.5], [4.0, 1.0]
    norm.eps = 0.0
    (layer,) = fold_batch_norm(L.Sequential(conv, norm)).layers
    s = np.array([3.0 / 2.0, 1.0])  # gamma / sqrt(var)
    np.testing.assert_allclose(layer.W.data.ravel(), s * [2.0, -1.0])
    np.testing.assert_allclose(layer.b.data, s * (np.array([1.0, 0.5]) - [1.0, 0.5]) + [0.25, -2.0])


def test_shipped_models_fold_to_the_same_probabilities():
    from emotion.cnn.classifier import EmotionClassifier

    x = nnlite.Tensor(np.random.default_rng(2).standard_normal((4, 1, 48, 48)).astype(np.float32))
    for name in ["mobile_fer2013", "compact"]:
        model = EmotionClassifier.load(name).model
        with nnlite.no_grad():
            np.testing.assert_allclose(fold_batch_norm(model)(x).data, model(x).data,
                                       rtol=1e-4, atol=1e-4)
