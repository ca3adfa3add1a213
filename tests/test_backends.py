"""One suite for every backend: each kernel against the NumPy specification, and every op's
gradient check, on numpy, numba and (when a GPU is usable) cuda.

The NumPy kernels are the specification, so for the numpy backend the parity tests compare
the reference with itself: they still assert shapes and dtypes, and they keep the suite
identical across backends.
"""

import numpy as np
import pytest

import nnlite
from nnlite import backends
from nnlite.backends import numpy_kernels as reference
from nnlite.gradcheck import check_all

# "numba-parallel" is the numba backend with every kernel forced onto its parallel twin
# (small calls otherwise run the serial one; see numba_compile.PARALLEL_MIN).
BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=str(reason)))
    for name, reason in backends.available().items()
]
BACKENDS.insert(2, pytest.param("numba-parallel", marks=BACKENDS[1].marks))
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}  # relative to the largest |value|
DTYPES = [np.float32, np.float64]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Select the backend for one test and restore the previous one afterwards."""
    name = request.param
    if name == "numba-parallel":
        from nnlite.backends import numba_compile

        monkeypatch.setattr(numba_compile, "PARALLEL_MIN", 0)
        name = "numba"
    previous = nnlite.current()
    nnlite.use(name)
    yield name
    nnlite.use(previous)


def kernels(backend):
    return backends.kernels_for(on(backend, np.zeros(1)))


def on(backend, array):
    return backends.to_device(array, "cuda" if backend == "cuda" else "cpu")


def assert_matches(expected, got, dtype):
    got_host = backends.to_numpy(got)
    assert got_host.dtype == np.dtype(dtype), f"dtype {got_host.dtype}, expected {np.dtype(dtype)}"
    assert got_host.shape == expected.shape
    scale = max(float(np.max(np.abs(expected))), 1e-30) if expected.size else 1.0
    np.testing.assert_allclose(got_host, expected, rtol=0, atol=TOLERANCE[dtype] * scale)


# (x shape, kh, kw, stride, pad): odd sizes, strides, asymmetric "same" pads, k3 s2
WINDOWS = [
    ((2, 3, 7, 9), 3, 3, (1, 1), (1, 1, 1, 1)),
    ((3, 2, 8, 8), 4, 4, (1, 1), (1, 2, 1, 2)),       # 'same' for an even kernel
    ((2, 4, 9, 7), 3, 3, (2, 2), (0, 1, 1, 1)),       # 'same' k3 s2 on odd sizes
    ((1, 3, 6, 5), 3, 2, (2, 1), (1, 1, 0, 0)),
    ((2, 1, 5, 5), 5, 5, (1, 1), (2, 2, 2, 2)),
    ((2, 2, 6, 6), 2, 2, (2, 2), (0, 0, 0, 0)),
    ((2, 3, 7, 5), 2, 2, (2, 2), (0, 0, 0, 0)),       # 2x2 s2 on odd sizes: the last row/column unused
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kh,kw,stride,pad", WINDOWS)
def test_im2col_col2im(backend, dtype, shape, kh, kw, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    k = kernels(backend)
    col = reference.im2col(x, kh, kw, stride, pad)
    assert_matches(col, k.im2col(on(backend, x), kh, kw, stride, pad), dtype)
    gcol = rng.standard_normal(col.shape).astype(dtype)
    assert_matches(reference.col2im(gcol, shape, kh, kw, stride, pad),
                   k.col2im(on(backend, gcol), shape, kh, kw, stride, pad), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kh,kw,stride,pad", WINDOWS + [
    ((1, 3, 9, 6), 3, 3, (1, 1), (1, 1, 1, 1)),    # batch 1: the Numba forward splits the rows
    ((5, 2, 4, 4), 3, 3, (1, 1), (3, 0, 0, 2)),    # more images than threads, odd pads
    ((3, 2, 5, 5), 1, 1, (1, 1), (1, 1, 1, 1)),    # 1x1 kernel with padding
    ((4, 16, 13, 12), 3, 3, (1, 1), (1, 1, 1, 1)),  # Numba: Winograd F(2x2, 3x3), odd height
])
def test_conv2d(backend, dtype, shape, kh, kw, stride, pad):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((4, shape[1], kh, kw)).astype(dtype)
    k = kernels(backend)
    y = reference.conv2d_forward(x, W, stride, pad)
    # The specification itself, against im2col written out by hand for one output pixel.
    col = reference.im2col(x, kh, kw, stride, pad)
    assert np.allclose(y[0, :, 0, 0], W.reshape(4, -1) @ col[:, 0])
    assert_matches(y, k.conv2d_forward(on(backend, x), on(backend, W), stride, pad), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    want_gx, want_gW = reference.conv2d_backward(gy, x, W, stride, pad)
    for want, got in zip((want_gx, want_gW),
                         k.conv2d_backward(*(on(backend, a) for a in (gy, x, W)), stride, pad)):
        assert_matches(want, got, dtype)
    # Without the input's gradient (a first layer): gW alone, the same
    gx, gW = k.conv2d_backward(*(on(backend, a) for a in (gy, x, W)), stride, pad, input_grad=False)
    assert gx is None
    assert_matches(want_gW, gW, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kh,kw,stride,pad", WINDOWS)
def test_max_pool(backend, dtype, shape, kh, kw, stride, pad):
    rng = np.random.default_rng(1)
    x = rng.permutation(np.linspace(-1, 1, int(np.prod(shape)))).reshape(shape).astype(dtype)
    k = kernels(backend)
    y, argmax = reference.max_pool_forward(x, kh, kw, stride, pad)
    y_got, argmax_got = k.max_pool_forward(on(backend, x), kh, kw, stride, pad)
    assert_matches(y, y_got, dtype)
    np.testing.assert_array_equal(backends.to_numpy(argmax_got), argmax)
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_matches(reference.max_pool_backward(gy, argmax, shape, kh, kw, stride, pad),
                   k.max_pool_backward(on(backend, gy), argmax_got, shape, kh, kw, stride, pad),
                   dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size,alpha,beta,bias", [
    ((2, 7, 3, 3), 5, 0.1, 0.75, 2.0),
    ((2, 13, 2, 5), 11, 1.1e-1, 0.75, 1.0),   # TFLearn's defaults, scaled up to matter
    ((1, 5, 4, 3), 2, 0.2, 0.6, 1.5),         # even size: an asymmetric window
    ((3, 3, 33, 33), 7, 0.3, 0.75, 1.0),      # window wider than the channels; many pixels
])
def test_lrn(backend, dtype, shape, size, alpha, beta, bias):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    k = kernels(backend)
    y, scale = reference.lrn_forward(x, size, alpha, beta, bias)
    y_got, scale_got = k.lrn_forward(on(backend, x), size, alpha, beta, bias)
    assert_matches(y, y_got, dtype)
    assert_matches(scale, scale_got, dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    assert_matches(reference.lrn_backward(x, y, scale, gy, size, alpha, beta, bias),
                   k.lrn_backward(*(on(backend, a) for a in (x, y, scale, gy)), size, alpha,
                                  beta, bias), dtype)


@pytest.mark.parametrize("beta", [0.75, 0.5])
def test_lrn_of_zeros_with_no_bias_is_nan_as_in_numpy(backend, beta):
    # scale = 0 where a channel window holds only zeros: 0 * 0^-beta is NaN in NumPy, and must
    # be NaN on every backend (not a ZeroDivisionError, not 0)
    x = np.zeros((2, 4, 3, 3), np.float32)
    x[0, 0] = 1.0  # windows that reach channel 0 of image 0 are finite
    k = kernels(backend)
    with np.errstate(divide="ignore", invalid="ignore"):  # NumPy warns of 0^-beta and 0 * inf
        y, scale = reference.lrn_forward(x, 3, 1e-2, beta, 0.0)
        got = k.lrn_forward(on(backend, x), 3, 1e-2, beta, 0.0)
    y_got, scale_got = (backends.to_numpy(a) for a in got)
    assert np.isnan(y).any() and np.isfinite(y).any()
    np.testing.assert_array_equal(np.isnan(y_got), np.isnan(y))
    np.testing.assert_allclose(y_got[np.isfinite(y)], y[np.isfinite(y)], rtol=1e-6)
    np.testing.assert_allclose(scale_got, scale, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 5), (64, 8, 9, 9)])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm(backend, dtype, shape, train, relu):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, shape[1]).astype(dtype)
    beta = rng.standard_normal(shape[1]).astype(dtype)
    k = kernels(backend)
    mean, var = reference.batch_norm_stats(x)
    for want, got in zip((mean, var), k.batch_norm_stats(on(backend, x))):
        assert_matches(want, got, dtype)
    forward = reference.batch_norm_forward(x, gamma, beta, mean, var, 1e-5, relu)
    got = k.batch_norm_forward(*(on(backend, a) for a in (x, gamma, beta, mean, var)), 1e-5, relu)
    for want, g in zip(forward, got):
        assert_matches(want, g, dtype)
    if relu:
        assert (forward[0] == 0).mean() > 0.2  # the ReLU cut a good share: the mask is tested
    gy = rng.standard_normal(shape).astype(dtype)
    inv_std = forward[1]
    if relu:
        # The backend's mask is its own forward's y > 0. A y within rounding of 0 may fall on
        # the other side of 0 in the reference, which computes y another way, and move gx by a
        # whole gy: so the expected value is the reference's unfused backward of the gradient
        # masked by this backend's y (test_batch_norm_relu_is_batch_norm_then_relu checks that
        # each backend's fused op equals its own two ops, bit for bit).
        y_got = backends.to_numpy(got[0])
        want = reference.batch_norm_backward(reference.relu_backward(gy, y_got), x, mean, gamma,
                                             inv_std, train)
    else:
        want = reference.batch_norm_backward(gy, x, mean, gamma, inv_std, train)
    got = k.batch_norm_backward(*(on(backend, a) for a in (gy, x, mean, gamma, inv_std)), train,
                                on(backend, beta) if relu else None)
    for w, g in zip(want, got):
        assert_matches(w, g, dtype)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (0, 3)])
def test_batch_norm_of_an_empty_batch_in_eval(backend, shape, relu):
    x = np.zeros(shape, np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
    k = kernels(backend)
    y, inv_std = k.batch_norm_forward(*(on(backend, a) for a in (x, gamma, beta, mean, var)), 1e-5, relu)
    assert y.shape == shape
    assert_matches(reference.batch_norm_forward(x, gamma, beta, mean, var, 1e-5)[1], inv_std, np.float32)
    grads = k.batch_norm_backward(*(on(backend, a) for a in (x, x, mean, gamma, inv_std)), False,
                                  on(backend, beta) if relu else None)
    assert grads[0].shape == shape
    for g in grads[1:]:
        assert_matches(np.zeros(3, np.float32), g, np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_running_update(backend, dtype):
    rng = np.random.default_rng(12)
    arrays = [rng.uniform(0.5, 2, 5).astype(dtype) for _ in range(4)]
    before = [a.copy() for a in arrays[:2]]
    want = [a.copy() for a in arrays[:2]]
    reference.batch_norm_running_update(*want, *arrays[2:], 0.1, 64 * 9)
    got = [on(backend, a.copy()) for a in arrays[:2]]
    kernels(backend).batch_norm_running_update(*got, *(on(backend, a) for a in arrays[2:]), 0.1, 64 * 9)
    for w, g, b in zip(want, got, before):
        assert not np.allclose(w, b)  # the statistics moved
        assert_matches(w, g, dtype)  # in place, as in the reference


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_relu_is_batch_norm_then_relu(backend, train):
    """The fused op against the two ops it replaces, on the same backend: same values, same
    gradients (the backward's recomputed mask agrees with the forward's output bit for bit, so
    the results are equal, not just close)."""
    rng = np.random.default_rng(11)
    shape = (64, 8, 9, 9)
    x, gy = (on(backend, rng.standard_normal(shape).astype(np.float32)) for _ in range(2))
    gamma = on(backend, rng.uniform(0.5, 1.5, shape[1]).astype(np.float32))
    beta = on(backend, rng.standard_normal(shape[1]).astype(np.float32))
    k = kernels(backend)
    mean, var = k.batch_norm_stats(x)
    y, inv_std = k.batch_norm_forward(x, gamma, beta, mean, var, 1e-5, True)
    plain, _ = k.batch_norm_forward(x, gamma, beta, mean, var, 1e-5)
    np.testing.assert_array_equal(backends.to_numpy(y), backends.to_numpy(k.relu_forward(plain)))
    fused = k.batch_norm_backward(gy, x, mean, gamma, inv_std, train, beta)
    apart = k.batch_norm_backward(k.relu_backward(gy, y), x, mean, gamma, inv_std, train)
    for f, a in zip(fused, apart):
        np.testing.assert_array_equal(backends.to_numpy(f), backends.to_numpy(a))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (64, 32, 33, 33)])  # the second runs in parallel
def test_relu(backend, dtype, shape):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[:3] = (0.0, np.nan, -np.inf)  # the kink itself, and values that must pass through
    k = kernels(backend)
    y = reference.relu_forward(x)
    assert np.isnan(y.flat[1]) and y.flat[0] == 0 and y.flat[2] == 0
    assert_matches(np.nan_to_num(y), np.nan_to_num(backends.to_numpy(k.relu_forward(on(backend, x)))), dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    y = np.nan_to_num(y)
    assert_matches(reference.relu_backward(gy, y), k.relu_backward(on(backend, gy), on(backend, y)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing,weighted", [(0.0, False), (0.1, True)])
def test_softmax_cross_entropy(backend, dtype, smoothing, weighted):
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal((6, 7)) * 3).astype(dtype)
    labels = rng.integers(0, 7, 6)
    weights = (rng.uniform(0.5, 2.0, 6) if weighted else np.ones(6)).astype(dtype)
    k = kernels(backend)
    assert_matches(reference.log_softmax(logits), k.log_softmax(on(backend, logits)), dtype)
    loss, probs = reference.softmax_cross_entropy_forward(logits, labels, weights, smoothing)
    loss_got, probs_got = k.softmax_cross_entropy_forward(
        on(backend, logits), on(backend, labels), on(backend, weights), smoothing)
    assert_matches(loss, loss_got, dtype)
    assert_matches(probs, probs_got, dtype)
    gloss = np.asarray(1.7, dtype=dtype)
    assert_matches(
        reference.softmax_cross_entropy_backward(probs, labels, weights, smoothing, gloss),
        k.softmax_cross_entropy_backward(probs_got, on(backend, labels), on(backend, weights),
                                         smoothing, on(backend, gloss)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask(backend, dtype):
    like = on(backend, np.zeros(1, dtype))
    nnlite.seed(5)
    mask = backends.to_numpy(kernels(backend).dropout_mask((50, 40), 0.3, dtype, like))
    assert mask.dtype == np.dtype(dtype) and mask.shape == (50, 40)
    scale = np.asarray(1 / 0.7, dtype=dtype)
    assert np.isin(mask, [0, scale]).all()
    assert abs((mask == 0).mean() - 0.3) < 0.05
    if backend != "cuda":  # the host stream: the same seed gives NumPy's mask exactly
        nnlite.seed(5)
        np.testing.assert_array_equal(mask, reference.dropout_mask((50, 40), 0.3, dtype, like))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov,weight_decay", [(False, 0.0), (True, 1e-2)])
def test_optimizer_updates(backend, dtype, nesterov, weight_decay):
    rng = np.random.default_rng(6)
    p, g, v = (rng.standard_normal((5, 7)).astype(dtype) for _ in range(3))
    k = kernels(backend)
    want_p, want_v = p.copy(), v.copy()
    reference.sgd_update(want_p, g, want_v, 0.1, 0.9, weight_decay, nesterov)
    got_p, got_v = on(backend, p.copy()), on(backend, v.copy())
    k.sgd_update(got_p, on(backend, g), got_v, 0.1, 0.9, weight_decay, nesterov)
    assert_matches(want_p, got_p, dtype)
    assert_matches(want_v, got_v, dtype)

    m, s = np.abs(v), np.abs(g)
    want = [p.copy(), m.copy(), s.copy()]
    reference.adam_update(want[0], g, want[1], want[2], 1e-2, 0.9, 0.999, 1e-8, weight_decay, 3)
    got = [on(backend, a.copy()) for a in (p, m, s)]
    k.adam_update(got[0], on(backend, g), got[1], got[2], 1e-2, 0.9, 0.999, 1e-8, weight_decay, 3)
    for w, g_ in zip(want, got):
        assert_matches(w, g_, dtype)


def test_output_size(backend):
    assert kernels(backend).output_size(48, 3, 2, 0, 1) == reference.output_size(48, 3, 2, 0, 1) == 24


def test_float32_network_stays_float32(backend):
    """A small net of every layer kind: float32 in, float32 out, float32 gradients."""
    from nnlite import layers as L
    import nnlite.functional as F

    nnlite.seed(0)
    model = L.Sequential(
        L.Conv2d(1, 4, 3, pad="same"), L.BatchNorm2d(4), L.ReLU(),
        L.LocalResponseNorm(3, 0.1, 0.75, 2.0), L.MaxPool2d(3, 2, pad="same"),
        L.Conv2d(4, 6, 4, stride=2, pad="same"), L.ReLU(), L.Dropout(0.5), L.Flatten(),
        L.Linear(6 * 2 * 2, 3),
    ).to(backends.default_device())
    x = on(backend, np.random.default_rng(7).standard_normal((3, 1, 7, 7)).astype(np.float32))
    logits = model(nnlite.Tensor(x))
    assert logits.dtype == np.float32 and logits.shape == (3, 3)
    loss = F.softmax_cross_entropy(logits, on(backend, np.array([0, 1, 2])))
    assert loss.dtype == np.float32
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == np.float32, name


def test_gradcheck_every_op(backend):
    """Every case of nnlite.gradcheck.op_cases(), float64 central differences."""
    failures = [f"{name}: {result}" for name, result in check_all(backends.default_device())
                if not result.ok]
    assert not failures, "\n".join(failures)


def _force_winograd(monkeypatch, chunk_bytes):
    """Send every 3x3 stride-1 'same' convolution of the Numba backend through Winograd F(2x2, 3x3)
    (by default only batches of 4 or more images of 6x6 and more with 16 channels or more take
    it), with the filters' gradients computed on the threads however few they are, and count the
    calls."""
    from nnlite.backends import numba_winograd

    monkeypatch.setattr(numba_winograd, "WINOGRAD_FILTERS_MIN_THREADED", 0)
    monkeypatch.setattr(numba_winograd, "WINOGRAD_MIN_PIXELS", 0)
    monkeypatch.setattr(numba_winograd, "WINOGRAD_MIN_CHANNELS", 0)
    monkeypatch.setattr(numba_winograd, "WINOGRAD_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(numba_winograd, "WINOGRAD_MIN_IMAGES", 1)
    calls = []
    for name in ("_winograd_forward", "_winograd_backward"):
        original = getattr(numba_winograd, name)
        monkeypatch.setattr(numba_winograd, name,
                            lambda *args, _f=original, _n=name: calls.append(_n) or _f(*args))
    return calls


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
@pytest.mark.parametrize("chunk_bytes", [1, 1 << 20])  # one image per chunk; the whole batch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 2, 6, 6), (2, 1, 1, 1), (2, 2, 2, 3),
                                   (3, 4, 9, 4), (5, 2, 7, 5), (2, 3, 4, 11)])
def test_numba_winograd_conv(monkeypatch, shape, dtype, chunk_bytes):
    # Odd and even sizes (a last tile half outside the image), one-pixel images, and chunks that
    # split the batch unevenly, against the NumPy specification.
    import numba
    from nnlite.backends import numba_kernels

    calls = _force_winograd(monkeypatch, chunk_bytes)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((max(shape[0], numba.get_num_threads()), *shape[1:])).astype(dtype)
    W = rng.standard_normal((3, shape[1], 3, 3)).astype(dtype)
    y = reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1))
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_matches(y, numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)), dtype)
    want_gx, want_gW = reference.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1))
    for want, got in zip((want_gx, want_gW),
                         numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1))):
        assert_matches(want, got, dtype)
    gx, gW = numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1), input_grad=False)
    assert gx is None
    assert_matches(want_gW, gW, dtype)
    assert calls == ["_winograd_forward", "_winograd_backward", "_winograd_backward"]


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
@pytest.mark.parametrize("hw, blas, winograd", [(12, 1, True), (11, 1, False), (12, 2, False)])
def test_numba_winograd_for_one_image_runs_in_the_calling_thread(monkeypatch, hw, blas, winograd):
    # Batch 1 on two threads with BLAS on one (the live demo): Winograd from 12 x 12 on (144
    # pixels), in the calling thread, with the same result as the NumPy specification. BLAS on
    # two threads keeps im2col, whose one GEMM it spreads over both.
    import numba
    import threading
    from threadpoolctl import threadpool_limits
    from nnlite.backends import numba_kernels, numba_runtime, numba_winograd

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    monkeypatch.setattr(numba_runtime, "run_on_threads", None)  # no hand-off to the pool
    calls = []
    original = numba_winograd._winograd_input
    monkeypatch.setattr(numba_winograd, "_winograd_input", lambda *a: calls.append(
        threading.current_thread()) or original(*a))
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1, 16, hw, hw)).astype(np.float32)
    W = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        with threadpool_limits(blas, user_api="blas"):
            if numba_runtime.numpy_blas_threads() != blas:
                pytest.skip(f"BLAS cannot run on {blas} threads here")
            y = numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1))
    finally:
        numba.set_num_threads(previous)
    assert_matches(reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)), y, np.float32)
    assert calls == ([threading.current_thread()] if winograd else [])


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
@pytest.mark.parametrize("h, w", [(6, 6), (5, 7), (1, 1), (2, 3), (7, 4)])
def test_numba_winograd_transforms_ignore_their_scratch(h, w):
    # The input transform and its adjoint write every scratch value they later read: NaN left
    # in the scratch buffers (np.empty gives whatever was there) must not reach V or gx.
    from nnlite.backends import numba_winograd as nk

    rng = np.random.default_rng(3)
    th, tw = (h + 1) // 2, (w + 1) // 2
    x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    gV = rng.standard_normal((16, 3, 2, th * tw)).astype(np.float32)
    results = []
    for fill in (0.0, np.nan):
        E, Q = np.full((2, tw + 1), fill, np.float32), np.full((4, 2, th + 1, tw), fill, np.float32)
        V, gx = np.empty((16, 3, 2, th * tw), np.float32), np.empty_like(x)
        nk._winograd_input(x, 0, 2, E, Q, V)
        Q[:] = fill
        nk._winograd_grad_input(gV, 0, 2, Q, gx)
        results.append((V, gx))
    for clean, dirty in zip(*results):
        assert np.isfinite(dirty).all()
        np.testing.assert_array_equal(clean, dirty)


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
@pytest.mark.parametrize("winograd", [False, True])
def test_numba_conv_backward_rejects_a_wrong_gy(monkeypatch, winograd):
    # The Numba loops index gy by the shapes of x and W: a gy of another shape must be an
    # error, not a read past its end.
    from nnlite.backends import numba_kernels

    if winograd:
        _force_winograd(monkeypatch, 1)
    x, W = np.ones((4, 3, 6, 6), np.float32), np.ones((2, 3, 3, 3), np.float32)
    for shape in [(2, 2, 6, 6), (4, 1, 6, 6), (4, 2, 5, 6)]:
        with pytest.raises(ValueError, match="gy has shape"):
            numba_kernels.conv2d_backward(np.ones(shape, np.float32), x, W, (1, 1), (1, 1, 1, 1))


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
def test_numba_conv_of_integers_is_exact(monkeypatch):
    # Winograd's transforms halve values, so integer arrays must not take that path.
    from nnlite.backends import numba_kernels

    _force_winograd(monkeypatch, 1 << 20)
    rng = np.random.default_rng(11)
    x, W = rng.integers(-3, 4, (4, 16, 6, 6)), rng.integers(-3, 4, (2, 16, 3, 3))
    np.testing.assert_array_equal(numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
                                  reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)))


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
def test_numba_winograd_conv_gradcheck(monkeypatch):
    # The conv2d op through the Winograd kernels, float64 central differences.
    import numba
    import nnlite.functional as F
    from nnlite.gradcheck import gradcheck

    calls = _force_winograd(monkeypatch, 1)
    previous = nnlite.current()
    nnlite.use("numba")
    try:
        rng = np.random.default_rng(9)
        inputs = [rng.standard_normal((max(2, numba.get_num_threads()), 2, 5, 4)),
                  rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)]
        result = gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=1, pad=1), inputs)
    finally:
        nnlite.use(previous)
    assert result.ok, result
    assert "_winograd_backward" in calls


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
def test_numba_conv_follows_numba_thread_count():
    # The Numba convolution runs its images on as many threads as numba.get_num_threads();
    # changing that between calls must give the same result (and use a pool of the new size).
    import numba
    from nnlite.backends import numba_kernels, numba_runtime

    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((5, 4, 8, 8)).astype(np.float32)
    want = (reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
            *reference.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1)))
    previous = numba.get_num_threads()
    try:
        for threads in sorted({1, previous}):
            numba.set_num_threads(threads)
            got = (numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
                   *numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1)))
            for w, g in zip(want, got):
                assert_matches(w, g, np.float32)
            assert numba_runtime._pool_threads == threads
    finally:
        numba.set_num_threads(previous)


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
@pytest.mark.parametrize("winograd", [False, True])
def test_numba_conv_weight_gradient_is_repeatable(monkeypatch, winograd):
    # Threads draw images from a shared queue, so which thread sums which image changes from
    # call to call; the weight gradient must not change by a single bit (a resumed training
    # run matches an uninterrupted one), on 1 or 2 threads alike.
    import numba
    from nnlite.backends import numba_kernels

    if winograd:
        _force_winograd(monkeypatch, 1)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((13, 3, 8, 8)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((13, 4, 8, 8)).astype(np.float32)
    previous = numba.get_num_threads()
    try:
        results = []
        for threads in [1] + [min(2, numba.config.NUMBA_NUM_THREADS)] * 6:
            numba.set_num_threads(threads)
            results.append(numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1))[1])
    finally:
        numba.set_num_threads(previous)
    for gW in results[1:]:
        np.testing.assert_array_equal(gW, results[0])


@pytest.mark.skipif(backends.available()["numba"] is not None or not hasattr(__import__("os"), "fork"),
                    reason="needs the numba backend and os.fork")
def test_numba_conv_works_in_a_forked_child():
    # The child of os.fork() inherits the pool object but not its threads; it must make its own
    # instead of waiting forever. Run in a subprocess so that the fork does not touch pytest.
    import subprocess
    import sys

    code = """if True:
        import os, signal, numpy as np
        from nnlite.backends import numba_kernels as k
        x, W = np.ones((4, 2, 6, 6), np.float32), np.ones((3, 2, 3, 3), np.float32)
        want = k.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1))
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)  # a hang ends the child with SIGALRM instead of forever
            got = k.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1))
            os._exit(0 if np.array_equal(got, want) else 3)
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
    """
    result = subprocess.run([sys.executable, "-c", code], timeout=240, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
def test_numba_conv_from_two_python_threads():
    # Two threads convolving at once (numba's thread count is per thread, so they also ask for
    # different pool sizes): both results right, and BLAS's thread count restored afterwards.
    import threading

    import numba
    from threadpoolctl import threadpool_info

    from nnlite.backends import numba_kernels

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 3, 10, 10)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((6, 4, 10, 10)).astype(np.float32)
    want = (reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
            *reference.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1)))
    before, errors = blas_threads(), []

    def run(threads):
        try:
            numba.set_num_threads(threads)
            for _ in range(20):
                got = (numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
                       *numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1)))
                for w, g in zip(want, got):
                    assert_matches(w, g, np.float32)
        except BaseException as err:  # reported by the main thread below
            errors.append(err)

    workers = [threading.Thread(target=run, args=(t,)) for t in (1, numba.config.NUMBA_NUM_THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    assert blas_threads() == before


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_2x2_pool_matches_the_general_loop(dtype):
    # The written-out 2x2 stride-2 pool against the general window loop on the values where
    # the order of comparisons shows: ties (the first maximum wins), -inf, NaN, an all-NaN
    # window; both compilations (serial and parallel), on a contiguous and a strided input.
    from nnlite.backends import numba_kernels

    x = np.random.default_rng(3).integers(-2, 3, (2, 3, 9, 8)).astype(dtype)  # many ties
    x[0, 0, 0, :4] = (np.nan, 1.0, np.nan, np.nan)
    x[0, 0, 1, :4] = (-np.inf, 1.0, np.nan, np.nan)  # windows: NaN first and a tie; all NaN
    x[1, 2, 2:4, 2:4] = -np.inf
    for image in (x, x[:, :, :, ::-1]):
        want_y, want_argmax = np.empty((2, 3, 4, 4), dtype), np.empty((2, 3, 4, 4), np.int64)
        numba_kernels._max_pool_forward[0](image, 2, 2, 2, 2, 0, 0, want_y, want_argmax)
        got = [numba_kernels.max_pool_forward(image, 2, 2, (2, 2), (0, 0, 0, 0))]
        for compiled in numba_kernels._max_pool_2x2_forward:  # serial, parallel
            y, argmax = np.empty_like(want_y), np.empty_like(want_argmax)
            compiled(image, y, argmax)
            got.append((y, argmax))
        for y, argmax in got:
            np.testing.assert_array_equal(y, want_y)  # NaN where NaN
            np.testing.assert_array_equal(argmax, want_argmax)
    y, argmax = numba_kernels.max_pool_forward(x, 2, 2, (2, 2), (0, 0, 0, 0))
    assert y[0, 0, 0, 0] == 1 and argmax[0, 0, 0, 0] == 1  # the first of the tied maxima
    assert y[0, 0, 0, 1] == -np.inf and argmax[0, 0, 0, 1] == 0  # an all-NaN window: none wins
    assert y[1, 2, 1, 1] == -np.inf


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_winograd_filter_transforms(monkeypatch, dtype):
    # The filters' gradient (the blocks' sum, then the adjoint transform) gives the same bits in
    # the calling thread and on the threads; the transform is G g G^T, also of W's transposed
    # view (which the backward uses for U^T); and the adjoint is the transpose:
    # <U(W), gU> = <W, U^T(gU)>.
    import numba
    from nnlite.backends import numba_winograd as nb

    rng = np.random.default_rng(12)
    W = rng.standard_normal((9, 13, 3, 3)).astype(dtype)
    gUT = rng.standard_normal((3, 16, 13, 9)).astype(dtype)  # 3 blocks' partial sums of gU^T
    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    gWs = []
    for min_threaded in (1 << 30, 0):  # one thread; the threads
        monkeypatch.setattr(nb, "WINOGRAD_FILTERS_MIN_THREADED", min_threaded)
        gWs.append(nb._winograd_filters_backward(gUT, W.shape, threads))
    np.testing.assert_array_equal(gWs[0], gWs[1])
    U, UT = np.empty((16, 9, 13), dtype), np.empty((16, 13, 9), dtype)
    nb._winograd_filters_kernel(W, U)
    nb._winograd_filters_kernel(W.transpose(1, 0, 2, 3), UT)  # as the backward gets U^T
    np.testing.assert_array_equal(UT, U.transpose(0, 2, 1))
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    reference = np.einsum("ai,kcij,sj->askc", G, W.astype(np.float64), G).reshape(16, 9, 13)
    np.testing.assert_allclose(U, reference, rtol=0, atol=TOLERANCE[dtype] * np.abs(W).max())
    gU = gUT.sum(axis=0).transpose(0, 2, 1)  # (16, K, C)
    lhs, rhs = np.vdot(U.astype(np.float64), gU), np.vdot(W.astype(np.float64), gWs[0])
    assert abs(lhs - rhs) <= TOLERANCE[dtype] * np.abs(U).max() * np.abs(gU).sum()
