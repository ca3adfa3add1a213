"""The wing loss (nnlite.functional.wing_loss) against a hand computation; masking and dtypes.

Its gradient check, on every backend, is the `wing_loss_masked` case of
nnlite.gradcheck.op_cases() (run by tests/test_backends.py and `emotion gradcheck`).
"""

import math

import numpy as np
import pytest

import nnlite
import nnlite.functional as F


def test_wing_loss_by_hand():
    # w = 2, eps = 1: |d| = 0.5 and 1.5 are in the log region, |d| = 3 on the linear part.
    pred = np.array([[0.5, -1.5], [4.0, 1.0]], np.float32)
    target = np.array([[0.0, 0.0], [1.0, 1.5]], np.float32)
    weight = np.array([1.0, 3.0], np.float32)
    w, eps = 2.0, 1.0
    c = w - w * math.log(1 + w / eps)
    # d = [[0.5, -1.5], [3.0, -0.5]]; per-element weights [[1, 1], [3, 3]], summing to 8.
    expected = (w * math.log(1.5) + w * math.log(2.5) + 3 * (3.0 - c) + 3 * w * math.log(1.5)) / 8
    p = nnlite.Tensor(pred, requires_grad=True)
    t = nnlite.Tensor(target, requires_grad=True)
    loss = F.wing_loss(p, t, weight, width=w, curvature=eps)
    assert loss.dtype == np.float32
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # slope w / (eps + |d|) in the log region, 1 beyond w; times sign(d) * weight / 8
    expected_grad = np.array([[w / 1.5, -w / 2.5], [3 * 1.0, -3 * w / 1.5]]) / 8
    assert p.grad.dtype == np.float32 and t.grad.dtype == np.float32
    np.testing.assert_allclose(p.grad, expected_grad, rtol=1e-6)
    np.testing.assert_allclose(t.grad, -expected_grad, rtol=1e-6)


def test_rows_without_a_label_drop_out_even_when_their_targets_are_nan():
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((4, 68, 2)).astype(np.float32)
    target = rng.standard_normal((4, 68, 2)).astype(np.float32)
    found = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    with_nan = target.copy()
    with_nan[found == 0] = np.nan  # what the teacher file holds where no mesh was found
    p = nnlite.Tensor(pred, requires_grad=True)
    loss = F.wing_loss(p, with_nan, found)
    loss.backward()
    kept = F.wing_loss(nnlite.Tensor(pred[found == 1]), target[found == 1])
    # The mean is over the labelled elements only: the same as the labelled rows alone.
    assert loss.item() == pytest.approx(kept.item(), rel=1e-6)
    assert np.isfinite(p.grad).all() and not p.grad[found == 0].any()
    assert p.grad[found == 1].any()


def test_per_element_weights_and_an_unlabelled_batch():
    pred = np.array([[1.0, 5.0]], np.float32)
    target = np.zeros((1, 2), np.float32)
    only_first = F.wing_loss(pred, target, np.array([[1.0, 0.0]], np.float32))
    assert only_first.item() == pytest.approx(10 * math.log(1 + 1 / 2), rel=1e-6)
    p = nnlite.Tensor(pred, requires_grad=True)
    nothing = F.wing_loss(p, target, np.zeros(1, np.float32))  # a batch with no mesh at all
    nothing.backward()
    assert nothing.item() == 0.0 and not p.grad.any()


def test_wing_loss_refuses_mismatched_inputs():
    pred = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="target must have pred's shape"):
        F.wing_loss(pred, np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="target is float64"):
        F.wing_loss(pred, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="weight must have shape"):
        F.wing_loss(pred, pred, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="width and curvature"):
        F.wing_loss(pred, pred, width=0.0)
