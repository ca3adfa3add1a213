"""A small CNN must learn a synthetic image task quickly: the whole engine working together."""

import time

import numpy as np

import nnlite
import nnlite.functional as F
from nnlite import layers as L
from nnlite import optim


def blob_images(n, rng, size=12):
    """Images with one bright blob; the label is the quadrant that holds it (0..3)."""
    labels = rng.integers(0, 4, n)
    images = rng.normal(0.0, 0.3, (n, 1, size, size)).astype(np.float32)
    half = size // 2
    for i, q in enumerate(labels):
        r = rng.integers(1, half - 2) + (half if q >= 2 else 0)
        c = rng.integers(1, half - 2) + (half if q % 2 else 0)
        images[i, 0, r : r + 2, c : c + 2] += 2.0
    return images, labels


def test_small_cnn_learns_which_quadrant_holds_the_blob():
    nnlite.seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = blob_images(512, rng)
    x_test, y_test = blob_images(256, rng)
    model = L.Sequential(
        L.Conv2d(1, 8, 3, pad=1), L.BatchNorm2d(8), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(8, 16, 3, pad=1), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Dropout(0.2), L.Linear(16 * 3 * 3, 4, init="glorot"),
    )
    optimizer = optim.MomentumSGD(model.parameters(), lr=0.05, momentum=0.9)
    start = time.perf_counter()
    for epoch in range(6):
        order = rng.permutation(len(x_train))
        for i in range(0, len(order), 32):
            batch = order[i : i + 32]
            loss = F.softmax_cross_entropy(model(nnlite.Tensor(x_train[batch])), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with nnlite.no_grad():
        accuracy = F.accuracy(model(nnlite.Tensor(x_test)), y_test)
    elapsed = time.perf_counter() - start
    print(f"quadrant task: test accuracy {accuracy:.3f} after {elapsed:.1f}s")
    assert accuracy >= 0.95


def test_adam_and_schedules_reduce_a_quadratic():
    w = nnlite.Tensor(np.array([3.0, -2.0], np.float32), requires_grad=True)
    opt = optim.Adam([w], lr=0.1)
    schedule = optim.CosineLR(opt, total_epochs=200)
    for _ in range(200):
        loss = (w * w).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    assert float((w.data**2).sum()) < 1e-2


def test_step_and_plateau_schedules():
    w = nnlite.Tensor(np.zeros(1, np.float32), requires_grad=True)
    opt = optim.MomentumSGD([w], lr=1.0)
    step = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(4):
        step.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 0.5, 0.5, 0.25]
    plateau = optim.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=1)
    for metric in [0.5, 0.6, 0.6, 0.6]:
        plateau.step(metric)
    assert opt.lr == 0.025


def test_momentum_sgd_matches_its_formula():
    p = nnlite.Tensor(np.array([1.0], np.float32), requires_grad=True)
    opt = optim.MomentumSGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(2):
        p.grad = np.array([0.5], np.float32)
        opt.step()
    g1 = 0.5 + 0.01 * 1.0
    v1 = g1
    p1 = 1.0 - 0.1 * v1
    g2 = 0.5 + 0.01 * p1
    v2 = 0.9 * v1 + g2
    np.testing.assert_allclose(p.data, [p1 - 0.1 * v2], rtol=1e-6)
