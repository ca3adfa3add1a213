"""Binary cross-entropy on one logit (nnlite.functional.binary_cross_entropy_with_logits)
against a hand computation, with weights and extreme logits.

Its gradient check, on every backend, is the `binary_cross_entropy_with_logits` case of
nnlite.gradcheck.op_cases() (run by tests/test_backends.py and `emotion gradcheck`).
"""

import math

import numpy as np
import pytest

import nnlite
import nnlite.functional as F


def test_by_hand_with_weights():
    z = np.array([2.0, -1.0, 0.5], np.float32)
    t = np.array([1.0, 0.0, 0.25], np.float32)
    w = np.array([1.0, 3.0, 0.0], np.float32)  # the last row drops out
    sig = [1 / (1 + math.exp(-v)) for v in z]
    per_row = [-(ti * math.log(p) + (1 - ti) * math.log(1 - p)) for ti, p in zip(t, sig)]
    expected = (per_row[0] * 1 + per_row[1] * 3) / 4
    x = nnlite.Tensor(z, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, t, w)
    assert loss.dtype == np.float32
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    expected_grad = [(sig[0] - 1) * 1 / 4, sig[1] * 3 / 4, 0.0]
    np.testing.assert_allclose(x.grad, expected_grad, rtol=1e-6, atol=1e-8)


def test_extreme_logits_stay_finite_and_exact():
    z = np.array([80.0, -80.0, 80.0, -80.0], np.float32)
    t = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    x = nnlite.Tensor(z, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, t)
    # Right answers cost ~e^-80; the two wrong ones cost 80 each: mean 40.
    assert loss.item() == pytest.approx(40.0, rel=1e-6)
    loss.backward()
    np.testing.assert_allclose(x.grad, [0, 0, 0.25, -0.25], atol=1e-7)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shape"):
        F.binary_cross_entropy_with_logits(np.zeros((2, 1), np.float32),
                                           np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="weight"):
        F.binary_cross_entropy_with_logits(np.zeros(2, np.float32), np.zeros(2, np.float32),
                                           np.ones(3, np.float32))
