"""nnlite.summary.count against counts done by hand, and the models' docstring against it."""

import re

import numpy as np

from nnlite import layers as L
from nnlite import summary


def test_count_matches_a_hand_count_for_a_tiny_net():
    net = L.Sequential(
        L.Conv2d(1, 4, 3, pad=1), L.BatchNorm2d(4), L.ReLU(),     # 8x8 out
        L.MaxPool2d(2),                                            # 4x4
        L.Conv2d(4, 4, 3, pad=1, groups=4, bias=False),            # depthwise, 4x4 out
        L.Conv2d(4, 6, 1, stride=2),                               # 2x2 out
        L.Flatten(), L.Linear(6 * 2 * 2, 3))
    size = summary.count(net, (1, 8, 8))
    # Parameters: conv 4*1*3*3 + 4, BN 4 + 4, depthwise 4*1*3*3, 1x1 6*4 + 6, dense 3*24 + 3.
    assert size.parameters == (36 + 4) + 8 + 36 + (24 + 6) + (72 + 3)
    # Multiply-adds: one per weight per output value (a depthwise weight sees one channel).
    conv1 = 4 * 8 * 8 * (1 * 3 * 3)
    depthwise = 4 * 4 * 4 * (1 * 3 * 3)
    pointwise = 6 * 2 * 2 * 4
    dense = 3 * 24
    assert size.multiply_adds == conv1 + depthwise + pointwise + dense
    assert [r[1] for r in size.rows] == [(4, 8, 8), (4, 4, 4), (6, 2, 2), (3,)]


def test_count_leaves_the_model_as_it_was():
    net = L.Sequential(L.Conv2d(1, 2, 3), L.Flatten(), L.Linear(2 * 4 * 4, 2))
    x = np.random.default_rng(0).random((2, 1, 6, 6), dtype=np.float32)
    from nnlite import Tensor
    before = net(Tensor(x)).data
    summary.count(net, (1, 6, 6))
    assert net.training
    assert all("forward" not in vars(m) for m in net.modules())
    np.testing.assert_array_equal(net(Tensor(x)).data, before)


def test_the_models_docstring_states_what_the_counter_counts():
    from emotion.cnn import models

    stated = dict(re.findall(r"^\s+(\w+)\s+([\d,.]+k parameters, +[\d.]+M multiply-adds)$",
                             models.__doc__, re.M))
    assert set(stated) == set(models.MODELS)
    for name, text in stated.items():
        size = summary.count(models.build(name), (1, 48, 48))
        assert " ".join(text.split()) == str(size), name
