"""The CUDA backend where only a real GPU will do: CuPy arrays, streams, model-size grids,
training. Skipped, with the reason from `nnlite.backends.available()["cuda"]`, without a GPU.

Every kernel against the NumPy specification and every gradient check run in
tests/test_backends.py, which on a GPU includes the "cuda" backend and without one is re-run
under Numba's CUDA simulator (tests/test_cuda_sim.py). What is left here:

    the CUDA kernels refuse host arrays, and an op mixing host and device arrays is an error
    the kernels run on CuPy's current stream, ordered after the work that made their inputs
    the kernels at model size: more blocks than any case the simulator can run
    5 training steps of emotion's "compact" model on the GPU lower the loss, and the first
    step's loss matches the NumPy backend from the same weights
"""

import copy

import numpy as np
import pytest

import nnlite
from nnlite import backends
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
else:
    cp = ck = None

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


def test_host_arrays_are_refused_by_the_cuda_kernels():
    with pytest.raises(TypeError, match="host"):
        ck.im2col(np.zeros((1, 1, 3, 3), np.float32), 2, 2, (1, 1), (0, 0, 0, 0))


def test_kernels_follow_the_work_on_cupys_current_stream():
    """On a non-blocking stream (no implicit ordering with the default one), a kernel reads
    what the CuPy ops before it on the same stream wrote: it was launched on that stream."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((64, 32, 48, 48)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        y = cp.asarray(x)
        for _ in range(20):  # enough queued work that a kernel on another stream would race it
            y = cp.maximum(y * 1.0001, -1e30)
        gx = ck.relu_backward(cp.asarray(gy), y)
        pooled, argmax = ck.max_pool_forward(y, 2, 2, (2, 2), (0, 0, 0, 0))
    stream.synchronize()
    y_host = cp.asnumpy(y)
    np.testing.assert_array_equal(cp.asnumpy(gx), nk.relu_backward(gy, y_host))
    for got, want in zip((pooled, argmax), nk.max_pool_forward(y_host, 2, 2, (2, 2), (0, 0, 0, 0))):
        np.testing.assert_array_equal(cp.asnumpy(got), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_at_model_size(dtype):
    """The seed model's first block (64 channels, 48x48, LRN size 11, pool 3/2 'same') and a
    compact-net batch norm layer: thousands of blocks, sizes the simulator cannot run."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 64, 48, 48)).astype(dtype)
    y, scale = ck.lrn_forward(*on_gpu(x), 11, 1.1e-3, 0.75, 1.0)
    y_ref, scale_ref = nk.lrn_forward(x, 11, 1.1e-3, 0.75, 1.0)
    assert_matches(scale, scale_ref, dtype)
    assert_matches(y, y_ref, dtype)
    pooled, argmax = ck.max_pool_forward(y, 3, 3, (2, 2), (0, 1, 0, 1))
    pooled_ref, argmax_ref = nk.max_pool_forward(cp.asnumpy(y), 3, 3, (2, 2), (0, 1, 0, 1))
    assert_matches(pooled, pooled_ref, dtype, exact=True)
    assert_matches(argmax, argmax_ref, dtype, exact=True)
    col = ck.im2col(*on_gpu(x[:, :8]), 5, 5, (1, 1), (2, 2, 2, 2))
    assert_matches(col, nk.im2col(x[:, :8], 5, 5, (1, 1), (2, 2, 2, 2)), dtype, exact=True)
    assert_matches(ck.col2im(col, (4, 8, 48, 48), 5, 5, (1, 1), (2, 2, 2, 2)),
                   nk.col2im(cp.asnumpy(col), (4, 8, 48, 48), 5, 5, (1, 1), (2, 2, 2, 2)), dtype)

    x = (rng.standard_normal((64, 32, 48, 48)) * 2 + 1).astype(dtype)
    gamma, beta = rng.uniform(0.5, 1.5, 32).astype(dtype), rng.standard_normal(32).astype(dtype)
    mean, var = ck.batch_norm_stats(*on_gpu(x))
    mean_ref, var_ref = nk.batch_norm_stats(x)
    assert_matches(mean, mean_ref, dtype)
    assert_matches(var, var_ref, dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    for relu in (False, True):
        y, inv_std = ck.batch_norm_forward(*on_gpu(x, gamma, beta, mean_ref, var_ref), 1e-5, relu)
        y_ref, inv_std_ref = nk.batch_norm_forward(x, gamma, beta, mean_ref, var_ref, 1e-5, relu)
        assert_matches(y, y_ref, dtype)
        assert_matches(inv_std, inv_std_ref, dtype)
        # with the ReLU, the mask is the GPU forward's own y > 0 (see tests/test_backends.py)
        masked = nk.relu_backward(gy, cp.asnumpy(y)) if relu else gy
        for train in (True, False):
            got = ck.batch_norm_backward(*on_gpu(gy, x, mean_ref, gamma, inv_std_ref), train,
                                         cp.asarray(beta) if relu else None)
            want = nk.batch_norm_backward(masked, x, mean_ref, gamma, inv_std_ref, train)
            for g, w in zip(got, want):
                assert_matches(g, w, dtype)


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
    from emotion.cnn.models import build
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
