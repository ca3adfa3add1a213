"""The CUDA backend on a real GPU: CuPy arrays, cuBLAS GEMMs, Numba CUDA kernels.

Skipped, with the reason from `nnlite.backends.available()["cuda"]`, where there is no GPU
(tests/test_cuda_sim.py checks the same kernels under the CUDA simulator there).

    every kernel of cuda_kernels vs numpy_kernels (float32 and float64, the simulator's cases)
    every gradient check of nnlite.gradcheck under nnlite.use("cuda")
    mixing host and device arrays raises DeviceMismatchError
    5 training steps of emotion's "compact" model on the GPU lower the loss, and the first
    step's loss matches the NumPy backend from the same weights
"""

import copy

import numpy as np
import pytest

import nnlite
from nnlite import backends
from nnlite import random as nnrandom
from nnlite.backends import numpy_kernels as nk
from tests.conftest import close_enough

CUDA_REASON = backends.available()["cuda"]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(CUDA_REASON is not None, reason=f"no usable CUDA GPU: {CUDA_REASON}"),
]

if CUDA_REASON is None:
    import cupy as cp

    from nnlite.backends import cuda_kernels as ck
    from tests.cuda_sim_checks import BATCH_NORM_CASES, CONV_CASES, LRN_CASES, POOL_CASES
else:  # the case lists are only needed to parametrize the (skipped) tests
    cp = ck = None
    BATCH_NORM_CASES = CONV_CASES = LRN_CASES = POOL_CASES = [None]

DTYPES = [np.float32, np.float64]


def on_gpu(*arrays):
    return [cp.asarray(a) for a in arrays]


def assert_matches(got, want, dtype, exact=False):
    """`got` is a CuPy array with `want`'s shape and dtype and (nearly) its values."""
    assert isinstance(got, cp.ndarray), type(got)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    got = cp.asnumpy(got)
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, **close_enough(dtype))


@pytest.fixture(autouse=True)
def _sync():
    yield
    cp.cuda.get_current_stream().synchronize()  # a kernel fault surfaces in its own test


# -- kernels vs the NumPy reference ------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_im2col_col2im(case, dtype):
    shape, kh, kw, stride, pad = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    for fill in (0.0, -np.inf):
        assert_matches(ck.im2col(*on_gpu(x), kh, kw, stride, pad, fill),
                       nk.im2col(x, kh, kw, stride, pad, fill), dtype, exact=True)
    col = rng.standard_normal(nk.im2col(x, kh, kw, stride, pad).shape).astype(dtype)
    assert_matches(ck.col2im(*on_gpu(col), shape, kh, kw, stride, pad),
                   nk.col2im(col, shape, kh, kw, stride, pad), dtype)
    view = np.broadcast_to(col[:1], col.shape)  # stride-0, as average pooling passes it
    assert_matches(ck.col2im(cp.broadcast_to(cp.asarray(col[:1]), col.shape), shape, kh, kw, stride, pad),
                   nk.col2im(view, shape, kh, kw, stride, pad), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool(case, dtype):
    shape, kh, kw, stride, pad = case
    rng = np.random.default_rng(2)
    for x in (rng.standard_normal(shape), rng.integers(0, 3, shape)):  # ties: first position wins
        x = x.astype(dtype)
        y, argmax = ck.max_pool_forward(*on_gpu(x), kh, kw, stride, pad)
        y_ref, argmax_ref = nk.max_pool_forward(x, kh, kw, stride, pad)
        assert_matches(y, y_ref, dtype, exact=True)
        assert_matches(argmax, argmax_ref, dtype, exact=True)
        gy = rng.standard_normal(y_ref.shape).astype(dtype)
        assert_matches(ck.max_pool_backward(*on_gpu(gy), argmax, shape, kh, kw, stride, pad),
                       nk.max_pool_backward(gy, argmax_ref, shape, kh, kw, stride, pad), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LRN_CASES)
def test_lrn(case, dtype):
    shape, size, alpha, beta, k = case
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    y, scale = ck.lrn_forward(*on_gpu(x), size, alpha, beta, k)
    y_ref, scale_ref = nk.lrn_forward(x, size, alpha, beta, k)
    assert_matches(scale, scale_ref, dtype)
    assert_matches(y, y_ref, dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    assert_matches(ck.lrn_backward(*on_gpu(gy, x, y_ref, scale_ref), size, alpha, beta, k),
                   nk.lrn_backward(gy, x, y_ref, scale_ref, size, alpha, beta, k), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lrn_and_pooling_at_model_size(dtype):
    """The seed model's first block (64 channels, 48x48, LRN size 11, pool 3/2 'same'):
    enough work for many blocks and the grid-stride loop."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 64, 48, 48)).astype(dtype)
    y, scale = ck.lrn_forward(*on_gpu(x), 11, 1.1e-3, 0.75, 1.0)
    y_ref, scale_ref = nk.lrn_forward(x, 11, 1.1e-3, 0.75, 1.0)
    assert_matches(y, y_ref, dtype)
    pooled, argmax = ck.max_pool_forward(y, 3, 3, (2, 2), (0, 1, 0, 1))
    pooled_ref, argmax_ref = nk.max_pool_forward(cp.asnumpy(y), 3, 3, (2, 2), (0, 1, 0, 1))
    assert_matches(pooled, pooled_ref, dtype, exact=True)
    assert_matches(argmax, argmax_ref, dtype, exact=True)
    col = ck.im2col(*on_gpu(x[:, :8]), 5, 5, (1, 1), (2, 2, 2, 2))
    assert_matches(col, nk.im2col(x[:, :8], 5, 5, (1, 1), (2, 2, 2, 2)), dtype, exact=True)
    assert_matches(ck.col2im(col, (4, 8, 48, 48), 5, 5, (1, 1), (2, 2, 2, 2)),
                   nk.col2im(cp.asnumpy(col), (4, 8, 48, 48), 5, 5, (1, 1), (2, 2, 2, 2)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BATCH_NORM_CASES + [(64, 32, 48, 48)])  # + a compact-net layer
@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm(shape, dtype, relu):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    c = shape[1]
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(dtype), rng.standard_normal(c).astype(dtype)
    mean, var = ck.batch_norm_stats(*on_gpu(x))
    mean_ref, var_ref = nk.batch_norm_stats(x)
    assert_matches(mean, mean_ref, dtype)
    assert_matches(var, var_ref, dtype)
    y, inv_std = ck.batch_norm_forward(*on_gpu(x, gamma, beta, mean_ref, var_ref), 1e-5, relu)
    y_ref, inv_std_ref = nk.batch_norm_forward(x, gamma, beta, mean_ref, var_ref, 1e-5, relu)
    assert_matches(y, y_ref, dtype)
    assert_matches(inv_std, inv_std_ref, dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    # with the ReLU, the mask is the GPU forward's own y > 0 (see tests/test_backends.py)
    masked = nk.relu_backward(gy, cp.asnumpy(y)) if relu else gy
    for train in (True, False):
        got = ck.batch_norm_backward(*on_gpu(gy, x, mean_ref, gamma, inv_std_ref), train,
                                     cp.asarray(beta) if relu else None)
        want = nk.batch_norm_backward(masked, x, mean_ref, gamma, inv_std_ref, train)
        for g, w in zip(got, want):
            assert_matches(g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy(dtype):
    rng = np.random.default_rng(4)
    logits, labels = rng.standard_normal((5, 7)).astype(dtype), rng.integers(0, 7, 5)
    weights = rng.uniform(0.5, 2, 5).astype(dtype)
    assert_matches(ck.log_softmax(*on_gpu(logits)), nk.log_softmax(logits), dtype)
    loss, probs = ck.softmax_cross_entropy_forward(*on_gpu(logits, labels, weights), 0.1)
    loss_ref, probs_ref = nk.softmax_cross_entropy_forward(logits, labels, weights, 0.1)
    assert_matches(loss, loss_ref, dtype)
    gloss = np.asarray(0.7, dtype=dtype)
    assert_matches(ck.softmax_cross_entropy_backward(*on_gpu(gloss, probs_ref, labels, weights), 0.1),
                   nk.softmax_cross_entropy_backward(gloss, probs_ref, labels, weights, 0.1), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask(dtype):
    like = cp.zeros((64, 1000), dtype=dtype)
    nnrandom.seed(5)
    mask = ck.dropout_mask(like.shape, 0.3, like.dtype, like)
    assert isinstance(mask, cp.ndarray) and mask.shape == like.shape and mask.dtype == dtype
    values = cp.asnumpy(mask)
    assert set(np.unique(values)) == {0, dtype(1 / 0.7)}
    assert abs((values == 0).mean() - 0.3) < 0.01
    assert abs(values.mean() - 1.0) < 0.02  # inverted dropout keeps the expectation
    nnrandom.seed(5)
    np.testing.assert_array_equal(cp.asnumpy(ck.dropout_mask(like.shape, 0.3, like.dtype, like)), values)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_sgd_update(dtype, nesterov, weight_decay):
    rng = np.random.default_rng(6)
    param, velocity = (rng.standard_normal((40, 30)).astype(dtype) for _ in range(2))
    p_gpu, v_gpu = on_gpu(param, velocity)
    for _ in range(3):
        grad = rng.standard_normal(param.shape).astype(dtype)
        ck.sgd_update(p_gpu, *on_gpu(grad), v_gpu, 0.1, 0.9, weight_decay, nesterov)
        nk.sgd_update(param, grad, velocity, 0.1, 0.9, weight_decay, nesterov)
    assert_matches(p_gpu, param, dtype)
    assert_matches(v_gpu, velocity, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_update(dtype, weight_decay):
    rng = np.random.default_rng(7)
    param = rng.standard_normal((40, 30)).astype(dtype)
    m, v = np.zeros_like(param), np.zeros_like(param)
    p_gpu, m_gpu, v_gpu = on_gpu(param, m, v)
    for step in (1, 2, 3):
        grad = rng.standard_normal(param.shape).astype(dtype)
        ck.adam_update(p_gpu, *on_gpu(grad), m_gpu, v_gpu, 1e-2, 0.9, 0.999, 1e-8, weight_decay, step)
        nk.adam_update(param, grad, m, v, 1e-2, 0.9, 0.999, 1e-8, weight_decay, step)
    assert_matches(m_gpu, m, dtype)
    assert_matches(v_gpu, v, dtype)
    assert_matches(p_gpu, param, dtype)


def test_host_arrays_are_refused_by_the_cuda_kernels():
    with pytest.raises(TypeError, match="host"):
        ck.im2col(np.zeros((1, 1, 3, 3), np.float32), 2, 2, (1, 1), (0, 0, 0, 0))


# -- the ops and the engine on the GPU ---------------------------------------------------------
def test_every_gradient_check_passes_on_cuda():
    from nnlite.gradcheck import check_all

    nnlite.use("cuda")
    results = check_all("cuda")
    failed = [f"{name}: {result}" for name, result in results if not result.ok]
    assert not failed, "\n".join(failed)


def test_mixing_host_and_device_arrays_is_an_error():
    x_gpu = nnlite.Tensor(cp.ones((2, 3), dtype=cp.float32))
    y_cpu = nnlite.Tensor(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(backends.DeviceMismatchError, match="to\\('cuda'\\)"):
        x_gpu + y_cpu
    import nnlite.functional as F

    x = nnlite.Tensor(cp.ones((1, 1, 4, 4), dtype=cp.float32))
    with pytest.raises(backends.DeviceMismatchError):
        F.conv2d(x, nnlite.Tensor(np.ones((2, 1, 3, 3), np.float32), requires_grad=True))


def _train_steps(model, x, labels, steps):
    import nnlite.functional as F
    from nnlite import optim

    optimizer = optim.MomentumSGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):
        loss = F.softmax_cross_entropy(model(nnlite.Tensor(x)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert loss.dtype == np.float32
        losses.append(loss.item())
    return losses


def test_compact_model_trains_on_the_gpu_and_matches_numpy():
    from emotion.models import build
    from nnlite import layers

    nnlite.seed(0)
    host_model = build("compact")
    for module in host_model.modules():  # dropout masks come from different RNGs on each device
        if isinstance(module, layers.Dropout):
            module.p = 0.0
    gpu_model = copy.deepcopy(host_model).to("cuda")
    assert all(p.device == "cuda" for p in gpu_model.parameters())

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 48, 48)).astype(np.float32)
    labels = rng.integers(0, 7, 16)

    host_first = _train_steps(host_model, x, labels, steps=1)[0]
    gpu_losses = _train_steps(gpu_model, cp.asarray(x), cp.asarray(labels), steps=5)
    assert abs(gpu_losses[0] - host_first) <= 1e-4 * abs(host_first), (gpu_losses[0], host_first)
    assert gpu_losses[-1] < gpu_losses[0], gpu_losses
    for p in gpu_model.parameters():
        assert isinstance(p.data, cp.ndarray) and p.data.dtype == np.float32
        assert p.grad is None or p.grad.dtype == np.float32
