"""nnlite.plan: a compiled inference plan gives what its module gives, with buffers made once.

Also the fused depthwise + 1x1 kernel against the two convolutions it replaces, and the
classifier's predictions with and without plans."""

import tracemalloc

import numpy as np
import pytest

import nnlite
import nnlite.functional as F
from nnlite import layers as L
from nnlite.fold import fold_batch_norm

from emotion.cnn import models
from tests.conftest import needs_numba
from tests.test_fold import trained_looking

pytestmark = needs_numba

PLANNED_MODELS = [name for name in models.MODELS if name != "seed"]  # seed: LRN, 57M weights


def run_module(module, x):
    with nnlite.no_grad():
        return module(nnlite.Tensor(x)).data


def images(n, seed=1, shape=(1, 48, 48)):
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


@pytest.fixture(autouse=True)
def _numba():
    nnlite.use("numba")


@pytest.mark.parametrize("name", PLANNED_MODELS)
def test_a_plan_gives_what_the_folded_model_gives_at_batch_1_and_5(name):
    from nnlite.plan import Plan

    model = fold_batch_norm(trained_looking(models.build(name)))
    plan = Plan(model, (1, 48, 48))
    for n in (1, 5):
        x = images(n, seed=n)
        want, got = run_module(model, x), plan(x)
        assert got.dtype == np.float32 and got.shape == want.shape == (n, 7)
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)
        again = plan(x)
        np.testing.assert_array_equal(again, got)  # the reused buffers give the same again


@pytest.mark.parametrize("name", ["compact", "mobile"])
def test_a_plan_runs_unfolded_batch_norms_and_their_relus(name):
    from nnlite.plan import Plan

    model = trained_looking(models.build(name))
    x = images(2)
    want = run_module(model, x)
    np.testing.assert_allclose(Plan(model, (1, 48, 48))(x), want, rtol=1e-5,
                               atol=1e-5 * np.abs(want).max())


def test_each_head_of_the_face_model_planned_on_the_trunk_gives_geometry_forward():
    from nnlite.plan import Plan

    model = fold_batch_norm(trained_looking(models.build("mobile_face")))
    x = images(3)
    trunk = Plan(model.trunk(), (1, 48, 48))
    features = trunk(x)
    with nnlite.no_grad():
        want = model.geometry_forward(nnlite.Tensor(x))
    heads = [model.emotion_head(), model.geometry]
    assert trunk.output_shape == (256, 3, 3)
    for head, expected in zip(heads, want):
        got = Plan(head, trunk.output_shape)(features)
        np.testing.assert_allclose(got, expected.data, rtol=1e-5,
                                   atol=1e-5 * np.abs(expected.data).max())


@pytest.mark.parametrize("name", ["mobile", "compact"])
def test_batches_of_any_size_in_any_order_share_one_set_of_buffers(name):
    from nnlite.plan import Plan

    model = fold_batch_norm(trained_looking(models.build(name)))
    plan = Plan(model, (1, 48, 48))
    for n in (3, 1, 5, 2, 1, 5):
        x = images(n, seed=n)
        want = run_module(model, x)
        np.testing.assert_allclose(plan(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert plan._local.capacity == 5  # made for 3, then for 5; 1 and 2 ran in their views


def test_winograd_in_the_calling_thread_grows_its_buffers_with_the_batch(monkeypatch):
    # With 8 threads (pretended) and BLAS on one, batches under 8 take Winograd in the calling
    # thread, in chunks of images (on 12x12 inputs: at 48x48 a chunk is one image whatever
    # the batch). A batch of 8 makes the buffers (and takes the threads), then a batch of 1
    # makes Winograd's for chunks of 1, too small for the batch of 5 after it.
    import numba

    from nnlite.backends.numba import winograd
    from nnlite.blas import blas_on_threads
    from nnlite.plan import Plan

    monkeypatch.setattr(numba, "get_num_threads", lambda: 8)
    model = fold_batch_norm(trained_looking(models.build("compact")))
    plan = Plan(model, (1, 12, 12))
    with blas_on_threads(1):
        assert winograd.winograd_applies(np.empty((5, 32, 12, 12), np.float32),
                                         np.empty((32, 32, 3, 3), np.float32), (1, 1), (1,) * 4)
        assert winograd._winograd_chunks(5, 12, 12, 16 * 64 * 4)[0] == 5
        for n in (8, 1, 5):
            x = images(n, seed=n, shape=(1, 12, 12))
            want = run_module(model, x)
            np.testing.assert_allclose(plan(x), want, rtol=1e-5,
                                       atol=1e-5 * np.abs(want).max())


def test_the_output_is_a_copy_that_a_later_call_leaves_alone():
    from nnlite.plan import Plan

    net = L.Sequential(L.Conv2d(1, 4, 3, pad=1), L.ReLU()).eval()
    plan = Plan(net, (1, 5, 7))
    x1, x2 = images(2, seed=1, shape=(1, 5, 7)), images(2, seed=2, shape=(1, 5, 7))
    first = plan(x1)
    kept = first.copy()
    plan(x2)
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_array_equal(x1, images(2, seed=1, shape=(1, 5, 7)))  # input untouched


def test_a_call_allocates_only_its_output_once_the_batch_size_was_seen():
    from nnlite.plan import Plan

    model = fold_batch_norm(trained_looking(models.build("mobile")))
    plan, x = Plan(model, (1, 48, 48)), images(5)
    plan(x)  # the first call at batch 5 makes the buffers (1.1 MB for the first block alone)
    tracemalloc.start()
    try:
        plan(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Unplanned, one activation of the first block is 5 x 24 x 48 x 48 floats: 1.1 MB.
    assert peak < 64 * 1024, f"a planned call allocated {peak} bytes"


def test_an_unknown_layer_is_a_value_error_naming_it():
    from nnlite.plan import Plan

    class Mystery(L.Module):
        def forward(self, x):
            return x

    net = L.Sequential(L.Conv2d(1, 2, 3), L.Sequential(L.ReLU(), Mystery())).eval()
    with pytest.raises(ValueError, match=r"Sequential\.1\.1 \(Mystery\)"):
        Plan(net, (1, 8, 8))
    with pytest.raises(ValueError, match="LocalResponseNorm"):
        Plan(L.Sequential(L.LocalResponseNorm()).eval(), (3, 4, 4))


def test_a_module_in_training_mode_is_refused():
    from nnlite.plan import Plan

    with pytest.raises(ValueError, match="eval"):
        Plan(L.Sequential(L.Conv2d(1, 2, 3), L.Dropout(0.5)), (1, 8, 8))


def test_a_depthwise_then_pointwise_pair_is_planned_as_one_step():
    from nnlite.plan import Plan

    net = L.Sequential(L.Conv2d(3, 3, 3, pad=1, groups=3, bias=False), L.Conv2d(3, 5, 1),
                       L.ReLU()).eval()
    plan = Plan(net, (3, 6, 6))
    assert len(plan) == 1  # depthwise, 1x1 and the ReLU: one fused kernel call
    x = images(2, shape=(3, 6, 6))
    np.testing.assert_allclose(plan(x), run_module(net, x), rtol=1e-5, atol=1e-6)


# -- the fused kernel ------------------------------------------------------------------------
@pytest.mark.parametrize("n, c, m, oc, h, w, stride, pad", [
    (1, 16, 1, 24, 48, 48, 1, 1),   # the mobile net's first block
    (2, 3, 1, 5, 5, 7, 1, 1),       # odd sizes, stride 1
    (3, 4, 2, 6, 5, 7, 1, (1, 1)),  # two filters a channel
    (2, 4, 1, 8, 7, 5, 2, 1),       # stride 2, odd sizes
    (1, 8, 1, 8, 6, 6, 1, 0),       # no padding
])
@pytest.mark.parametrize("bias, relu", [(False, False), (True, True)])
def test_the_fused_separable_kernel_equals_depthwise_then_pointwise(n, c, m, oc, h, w, stride,
                                                                      pad, bias, relu):
    from nnlite.backends.numba.separable import separable_forward
    from nnlite.functions.conv import as_pair, resolve_padding

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    W_d = rng.standard_normal((m * c, 1, 3, 3)).astype(np.float32)
    W_p = rng.standard_normal((oc, m * c, 1, 1)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32) if bias else None
    with nnlite.no_grad():
        T = nnlite.Tensor
        want = F.conv2d(F.conv2d(T(x), T(W_d), stride=stride, pad=pad, groups=c), T(W_p),
                        None if b is None else T(b))
        want = (F.relu(want) if relu else want).data
    sh = as_pair(stride)
    resolved = resolve_padding(pad, (h, w), (3, 3), sh)
    y = np.full(want.shape, np.nan, np.float32)  # every output must be written
    scratch = np.empty((m * c, want.shape[2] * want.shape[3]), np.float32)
    separable_forward(x, W_d, W_p, b, sh, resolved, relu, scratch, y)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


# -- the classifier --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mobile", "mobile_face", "compact"])
def test_the_classifier_gives_the_same_probabilities_with_and_without_plans(name, monkeypatch):
    from emotion.cnn import classifier as C
    from emotion.cnn.preprocess import PreprocessConfig

    clf = C.EmotionClassifier(trained_looking(models.build(name)), PreprocessConfig())
    x = images(4)
    planned = clf.predict_batch(x)
    assert clf._plans, "the Numba backend's predictions did not run through a plan"
    outputs = clf.predict_geometry_batch(x) if clf.has_geometry else None
    monkeypatch.setattr(C, "PLAN_MAX_BATCH", 0)  # every batch through the modules
    np.testing.assert_allclose(planned, clf.predict_batch(x), rtol=1e-5, atol=1e-6)
    assert planned.dtype == np.float32
    if outputs is not None:
        for got, want in zip(outputs, clf.predict_geometry_batch(x)):
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_the_classifier_runs_the_modules_for_a_layer_plans_do_not_know():
    from emotion.cnn.classifier import EmotionClassifier
    from emotion.cnn.preprocess import PreprocessConfig

    net = L.Sequential(L.Conv2d(1, 4, 5, pad=2), L.ReLU(), L.LocalResponseNorm(3),
                       L.GlobalAvgPool2d(), L.Linear(4, 7))
    clf = EmotionClassifier(net, PreprocessConfig())
    x = images(2)
    with nnlite.no_grad():
        want = F.softmax(net(nnlite.Tensor(x))).data
    np.testing.assert_allclose(clf.predict_batch(x), want, rtol=1e-6)
    assert list(clf._plans.values()) == [None]  # tried once, then the modules


def test_threads_calling_one_plan_together_each_get_their_own_answer():
    from concurrent.futures import ThreadPoolExecutor

    from nnlite.plan import Plan

    model = fold_batch_norm(trained_looking(models.build("mobile")))
    plan = Plan(model, (1, 48, 48))
    inputs = [images(2, seed=s) for s in range(8)]
    want = [plan(x) for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(plan, inputs))
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_the_classifier_runs_modules_on_the_numpy_backend():
    from emotion.cnn.classifier import EmotionClassifier
    from emotion.cnn.preprocess import PreprocessConfig

    nnlite.use("numpy")
    clf = EmotionClassifier(trained_looking(models.build("mobile")), PreprocessConfig())
    probs = clf.predict_batch(images(2))
    assert probs.shape == (2, 7) and not clf._plans
