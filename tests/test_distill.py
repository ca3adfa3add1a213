"""Knowledge distillation: the loss against a hand computation, and the teacher's targets."""

import numpy as np
import pytest

import nnlite
import nnlite.functional as F
from emotion.training import distill, votes as vote_targets


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_soft_target_cross_entropy_by_hand():
    z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], np.float32)
    q = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], np.float32)
    t = 2.0
    p = softmax(z / t)
    expected = -(t * t) * (q * np.log(p)).sum() / 2
    logits = nnlite.Tensor(z, requires_grad=True)
    loss = F.soft_target_cross_entropy(logits, q, t)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)
    loss.backward()
    np.testing.assert_allclose(logits.grad, t / 2 * (p - q), rtol=1e-5, atol=1e-7)


def test_distillation_loss_mixes_hard_and_kl_by_hand():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 7)).astype(np.float32)
    teacher = rng.standard_normal((4, 7)).astype(np.float32)
    labels = np.array([0, 3, 6, 2])
    t, weight = 4.0, 0.7
    q = softmax(teacher / t).astype(np.float32)
    hard = -np.log(softmax(z)[np.arange(4), labels]).mean()
    kl = (q * (np.log(q) - np.log(softmax(z / t)))).sum() / 4
    expected = (1 - weight) * hard + weight * t * t * kl
    loss = distill.loss(nnlite.Tensor(z), labels, q, t, weight)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    # weight 0: the labels alone, as without a teacher
    np.testing.assert_allclose(distill.loss(nnlite.Tensor(z), labels, q, t, 0).item(), hard,
                               rtol=1e-6)


def test_a_student_equal_to_its_teacher_has_no_soft_loss():
    z = np.random.default_rng(1).standard_normal((3, 7)).astype(np.float32)
    q = softmax(z / 3.0).astype(np.float32)
    loss = distill.loss(nnlite.Tensor(z), np.zeros(3, np.int64), q, 3.0, 1.0)
    assert abs(loss.item()) < 1e-5


def test_bad_targets_are_refused():
    z = nnlite.Tensor(np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match="shape"):
        F.soft_target_cross_entropy(z, np.zeros((2, 6), np.float32))
    with pytest.raises(TypeError, match="float64"):
        F.soft_target_cross_entropy(z, np.full((2, 7), 1 / 7))
    with pytest.raises(ValueError, match="temperature"):
        F.soft_target_cross_entropy(z, np.full((2, 7), 1 / 7, np.float32), 0)


def test_teacher_probabilities_average_the_image_and_its_mirror():
    rng = np.random.default_rng(2)
    raw = rng.uniform(0, 255, (3, 1, 48, 48)).astype(np.float32)
    q = distill.teacher_probabilities("compact", raw, 2.0, progress=False)
    mirrored = distill.teacher_probabilities("compact", raw[..., ::-1].copy(), 2.0, progress=False)
    assert q.shape == (3, 7) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(q, mirrored, rtol=1e-4, atol=1e-6)  # symmetric by construction


def test_checking_the_teacher_keeps_the_runs_backend(tmp_path):
    """The early --teacher check loads the teacher's weights; loading a classifier selects its
    backend for the whole process, and the check once loaded it on NumPy, so every
    `train --teacher` asked for numba trained on NumPy, about 10x slower."""
    from emotion.commands import train

    if nnlite.available()["numba"] is not None:
        pytest.skip(f"numba backend unavailable: {nnlite.available()['numba']}")
    backend = train.choose_backend("numba")
    config = dict(model="mobile", epochs=1, batch_size=8, lr=0.01, teacher="mobile_fer2013")
    trainer = train.Trainer(config, tmp_path / "run", backend)
    trainer._check_teacher()
    assert nnlite.current() == "numba"


def test_vote_loss_by_hand_with_smoothing_and_a_teacher():
    z = np.array([[1.0, 2.0, 0.5, 0, 0, 0, -1], [0.0, -1.0, 3.0, 1, 0.5, 0, 0]], np.float32)
    votes = np.array([[0.6, 0.4, 0, 0, 0, 0, 0], [0, 0, 0.5, 0.5, 0, 0, 0]], np.float32)
    p = softmax(z.astype(np.float64))
    plain = -(votes * np.log(p)).sum() / 2
    logits = nnlite.Tensor(z, requires_grad=True)
    loss = vote_targets.loss(logits, votes)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.item(), plain, rtol=1e-6)
    loss.backward()
    np.testing.assert_allclose(logits.grad, (p - votes) / 2, rtol=1e-5, atol=1e-7)
    # smoothing s: q = (1 - s) votes + s / 7
    s = 0.1
    q = (1 - s) * votes + s / 7
    np.testing.assert_allclose(vote_targets.loss(nnlite.Tensor(z), votes, s).item(),
                               -(q * np.log(p)).sum() / 2, rtol=1e-6)
    # with a teacher the votes take the labels' place: (1 - w) CE(votes) + w T^2 KL
    t, weight = 4.0, 0.7
    teacher = softmax(z[::-1] / t).astype(np.float32)
    kl = (teacher * (np.log(teacher) - np.log(softmax(z / t)))).sum() / 2
    mixed = distill.mix(vote_targets.loss(nnlite.Tensor(z), votes), nnlite.Tensor(z), teacher,
                        t, weight)
    np.testing.assert_allclose(mixed.item(), (1 - weight) * plain + weight * t * t * kl,
                               rtol=1e-5)
