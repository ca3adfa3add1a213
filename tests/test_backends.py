"""One suite for every backend: each kernel against the NumPy specification, and every op's
gradient check, on numpy, numba and (when a GPU is usable) cuda.

The NumPy kernels are the specification, so for the numpy backend the parity tests compare
the reference with itself: they still assert shapes and dtypes, and they keep the suite
identical across backends.

The GPU suite is this suite re-run. Without a GPU, tests/test_cuda_sim.py runs this file
under Numba's CUDA simulator in a process of its own:

    NUMBA_ENABLE_CUDASIM=1 NNLITE_BACKEND=cuda python -m pytest tests/test_backends.py

where the "cuda" backend alone runs, its kernels on NumPy arrays, on the tiny cases of
tests/cases.py. What needs a real GPU (CuPy arrays, streams, training) is in test_cuda_gpu.py.
"""

import numpy as np
import pytest

import nnlite
from nnlite import backends
from nnlite.backends import numpy_kernels as reference
from nnlite.gradcheck import gradcheck, op_cases
from tests import cases
from tests.conftest import DTYPES, SIMULATOR, assert_matches, tiny_under_simulator

# "numba-parallel" is the numba backend with every kernel forced onto its parallel twin
# (small calls otherwise run the serial one; see numba_compile.PARALLEL_MIN).
# Under the CUDA simulator the suite runs on "cuda" alone (the CUDA kernels on NumPy arrays).
BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=str(reason)))
    for name, reason in backends.available().items()
]
BACKENDS.insert(2, pytest.param("numba-parallel", marks=BACKENDS[1].marks))
if SIMULATOR:
    BACKENDS = [param for param in BACKENDS if param.values == ("cuda",)]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Select the backend for one test and restore the previous one afterwards."""
    name = request.param
    if name == "numba-parallel":
        from nnlite.backends.numba import compile as numba_compile

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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kh,kw,stride,pad", cases.WINDOWS)
def test_im2col_col2im(backend, dtype, shape, kh, kw, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    k = kernels(backend)
    col = reference.im2col(x, kh, kw, stride, pad)
    assert_matches(col, k.im2col(on(backend, x), kh, kw, stride, pad), dtype)
    for fill in (0.0, -np.inf):  # a copy: the same values exactly (-inf: max pooling's padding)
        np.testing.assert_array_equal(
            backends.to_numpy(k.im2col(on(backend, x), kh, kw, stride, pad, fill)),
            reference.im2col(x, kh, kw, stride, pad, fill))
    gcol = rng.standard_normal(col.shape).astype(dtype)
    assert_matches(reference.col2im(gcol, shape, kh, kw, stride, pad),
                   k.col2im(on(backend, gcol), shape, kh, kw, stride, pad), dtype)
    # A broadcast (stride-0) gradient, as average pooling passes it, made on the device.
    row = on(backend, gcol[:1])
    view = backends.get_array_module(row).broadcast_to(row, gcol.shape)
    assert_matches(reference.col2im(np.broadcast_to(gcol[:1], gcol.shape), shape, kh, kw, stride, pad),
                   k.col2im(view, shape, kh, kw, stride, pad), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kh,kw,stride,pad", cases.CONV_WINDOWS)
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
@pytest.mark.parametrize("shape,oc,groups,stride,pad", cases.GROUPED)
def test_grouped_conv2d(backend, dtype, shape, oc, groups, stride, pad):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((oc, shape[1] // groups, 3, 3)).astype(dtype)
    k = kernels(backend)
    y = reference.grouped_conv2d_forward(x, W, stride, pad, groups)
    assert_matches(y, k.grouped_conv2d_forward(on(backend, x), on(backend, W), stride, pad, groups),
                   dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    want_gx, want_gW = reference.grouped_conv2d_backward(gy, x, W, stride, pad, groups)
    got = k.grouped_conv2d_backward(*(on(backend, a) for a in (gy, x, W)), stride, pad, groups)
    for want, g in zip((want_gx, want_gW), got):
        assert_matches(want, g, dtype)
    gx, gW = k.grouped_conv2d_backward(*(on(backend, a) for a in (gy, x, W)), stride, pad, groups,
                                       input_grad=False)
    assert gx is None
    assert_matches(want_gW, gW, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kh,kw,stride,pad", cases.WINDOWS)
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
    # Small integers: ties, which go to the first position in the window, as in NumPy.
    x = rng.integers(0, 3, shape).astype(dtype)
    y, argmax = reference.max_pool_forward(x, kh, kw, stride, pad)
    y_got, argmax_got = k.max_pool_forward(on(backend, x), kh, kw, stride, pad)
    np.testing.assert_array_equal(backends.to_numpy(y_got), y)
    np.testing.assert_array_equal(backends.to_numpy(argmax_got), argmax)
    assert_matches(reference.max_pool_backward(gy, argmax, shape, kh, kw, stride, pad),
                   k.max_pool_backward(on(backend, gy), argmax_got, shape, kh, kw, stride, pad),
                   dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size,alpha,beta,bias", cases.LRN)
def test_lrn(backend, dtype, shape, size, alpha, beta, bias):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    k = kernels(backend)
    y, scale = reference.lrn_forward(x, size, alpha, beta, bias)
    y_got, scale_got = k.lrn_forward(on(backend, x), size, alpha, beta, bias)
    assert_matches(y, y_got, dtype)
    assert_matches(scale, scale_got, dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    assert_matches(reference.lrn_backward(gy, x, y, scale, size, alpha, beta, bias),
                   k.lrn_backward(*(on(backend, a) for a in (gy, x, y, scale)), size, alpha,
                                  beta, bias), dtype)


@pytest.mark.skipif(SIMULATOR, reason="the CUDA simulator's math.pow is Python's, which raises "
                    "on 0 ** -beta where the GPU's pow gives inf")
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
@pytest.mark.parametrize("shape", cases.BATCH_NORM)
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


@pytest.mark.parametrize("shape", cases.BATCH_NORM_RELU)
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_relu_is_batch_norm_then_relu(backend, train, shape):
    """The fused op against the two ops it replaces, on the same backend: same values, same
    gradients (the backward's recomputed mask agrees with the forward's output bit for bit, so
    the results are equal, not just close)."""
    rng = np.random.default_rng(11)
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
@pytest.mark.parametrize("shape", cases.RELU)
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
    gx = backends.to_numpy(k.relu_backward(on(backend, gy), on(backend, y)))
    assert_matches(reference.relu_backward(gy, y), gx, dtype)
    np.testing.assert_array_equal(gx, reference.relu_backward(gy, y))  # a choice, not arithmetic


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing,weighted", [(0.0, False), (0.1, True), (0.1, False), (0.0, True)])
@pytest.mark.parametrize("rows", [6, 40])  # 40: more rows than a simulated block's threads
def test_softmax_cross_entropy(backend, dtype, smoothing, weighted, rows):
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal((rows, 7)) * 3).astype(dtype)
    labels = rng.integers(0, 7, rows)
    if rows == 40:
        labels[5] = 9  # out of range (only the op checks labels): no row of q is 1, as in NumPy
    weights = (rng.uniform(0.5, 2.0, rows) if weighted else np.ones(rows)).astype(dtype)
    k = kernels(backend)
    assert_matches(reference.log_softmax(logits), k.log_softmax(on(backend, logits)), dtype)
    loss, probs = reference.softmax_cross_entropy_forward(logits, labels, weights, smoothing)
    loss_got, probs_got = k.softmax_cross_entropy_forward(
        on(backend, logits), on(backend, labels), on(backend, weights), smoothing)
    assert_matches(loss, loss_got, dtype)
    assert_matches(probs, probs_got, dtype)
    gloss = np.asarray(1.7, dtype=dtype)
    assert_matches(
        reference.softmax_cross_entropy_backward(gloss, probs, labels, weights, smoothing),
        k.softmax_cross_entropy_backward(on(backend, gloss), probs_got, on(backend, labels),
                                         on(backend, weights), smoothing), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.3, 0.7])
def test_dropout_mask(backend, dtype, p):
    like = on(backend, np.zeros(1, dtype))
    nnlite.seed(5)
    mask = backends.to_numpy(kernels(backend).dropout_mask((50, 40), p, dtype, like))
    assert mask.dtype == np.dtype(dtype) and mask.shape == (50, 40)
    scale = np.asarray(1 / (1 - p), dtype=dtype)
    assert np.isin(mask, [0, scale]).all()
    assert abs((mask == 0).mean() - p) < 0.05
    nnlite.seed(5)  # the same seed, the same mask
    again = backends.to_numpy(kernels(backend).dropout_mask((50, 40), p, dtype, like))
    np.testing.assert_array_equal(again, mask)
    if backend != "cuda" or SIMULATOR:  # the host stream: the same seed gives NumPy's mask
        nnlite.seed(5)
        np.testing.assert_array_equal(mask, reference.dropout_mask((50, 40), p, dtype, like))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov,weight_decay", [(False, 0.0), (True, 1e-2), (False, 1e-2), (True, 0.0)])
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov,weight_decay", [(False, 0.0), (True, 1e-2)])
def test_optimizer_updates_over_steps(backend, dtype, nesterov, weight_decay):
    """Several steps from zero state (Adam's bias correction at steps 1, 2, 3), each state
    array updated in place."""
    rng = np.random.default_rng(7)
    k = kernels(backend)
    p = rng.standard_normal((5, 3)).astype(dtype)
    want = [p.copy(), np.zeros_like(p), np.zeros_like(p)]  # SGD: param, velocity
    adam_want = [p.copy(), np.zeros_like(p), np.zeros_like(p)]  # Adam: param, m, v
    got, adam_got = [on(backend, a.copy()) for a in want], [on(backend, a.copy()) for a in adam_want]
    for step in (1, 2, 3):
        g = rng.standard_normal(p.shape).astype(dtype)
        reference.sgd_update(want[0], g, want[1], 0.1, 0.9, weight_decay, nesterov)
        k.sgd_update(got[0], on(backend, g), got[1], 0.1, 0.9, weight_decay, nesterov)
        reference.adam_update(*adam_want[:1], g, *adam_want[1:], 1e-2, 0.9, 0.999, 1e-8,
                              weight_decay, step)
        k.adam_update(*adam_got[:1], on(backend, g), *adam_got[1:], 1e-2, 0.9, 0.999, 1e-8,
                      weight_decay, step)
    for w, g_ in zip(want[:2] + adam_want, got[:2] + adam_got):
        assert_matches(w, g_, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_of_a_transposed_parameter(backend, dtype):
    """A non-contiguous parameter (a transposed view) and gradient: still updated in place."""
    rng = np.random.default_rng(6)
    base = on(backend, rng.standard_normal((3, 4)).astype(dtype))
    param = base.T
    want = backends.to_numpy(param).copy()
    velocity, want_v = on(backend, np.zeros((4, 3), dtype)), np.zeros((4, 3), dtype)
    g = rng.standard_normal((3, 4)).astype(dtype)
    grad = on(backend, g).T  # non-contiguous too
    kernels(backend).sgd_update(param, grad, velocity, 0.1, 0.9, 0.0, False)
    reference.sgd_update(want, g.T, want_v, 0.1, 0.9, 0.0, False)
    assert_matches(want, backends.get_array_module(param).ascontiguousarray(param), dtype)
    assert_matches(want.T, base, dtype)  # through the view: the parameter's own memory
    assert_matches(want_v, velocity, dtype)


@pytest.fixture
def real_launches(backend, monkeypatch):
    """The CUDA kernels with their real launch configuration (256-thread blocks, up to 8192
    of them, 512-thread per-channel sums), which under the simulator is otherwise shrunk."""
    if backend != "cuda":
        pytest.skip("the launch configuration is the CUDA kernels' own")
    from nnlite.backends import cuda_kernels

    for name in ("THREADS", "MAX_BLOCKS", "REDUCE_THREADS"):
        monkeypatch.setattr(cuda_kernels, name, REAL_LAUNCHES[name])


REAL_LAUNCHES = {"THREADS": 256, "MAX_BLOCKS": 8192, "REDUCE_THREADS": 512}


def test_im2col_col2im_with_the_real_launches(backend, real_launches):
    x = np.random.default_rng(8).standard_normal((2, 3, 6, 7)).astype(np.float32)
    k = kernels(backend)
    col = k.im2col(on(backend, x), 3, 3, (2, 1), (1, 1, 1, 1))
    np.testing.assert_array_equal(backends.to_numpy(col), reference.im2col(x, 3, 3, (2, 1), (1, 1, 1, 1)))
    assert_matches(reference.col2im(backends.to_numpy(col), x.shape, 3, 3, (2, 1), (1, 1, 1, 1)),
                   k.col2im(col, x.shape, 3, 3, (2, 1), (1, 1, 1, 1)), np.float32)


def test_batch_norm_with_the_real_launches(backend, real_launches):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 2, 7, 9)).astype(np.float32)  # 189 values per channel
    gamma, beta = rng.uniform(0.5, 1.5, 2).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    k = kernels(backend)
    for want, got in zip(reference.batch_norm_stats(x), k.batch_norm_stats(on(backend, x))):
        assert_matches(want, got, np.float32)
    mean, var = reference.batch_norm_stats(x)
    y, inv_std = k.batch_norm_forward(*(on(backend, a) for a in (x, gamma, beta, mean, var)), 1e-5, True)
    assert_matches(reference.batch_norm_forward(x, gamma, beta, mean, var, 1e-5, True)[0], y, np.float32)
    masked = reference.relu_backward(gy, backends.to_numpy(y))  # the mask of this y (see above)
    want = reference.batch_norm_backward(masked, x, mean, gamma, backends.to_numpy(inv_std), True)
    got = k.batch_norm_backward(*(on(backend, a) for a in (gy, x, mean, gamma)), inv_std, True,
                                on(backend, beta))
    for w, g in zip(want, got):
        assert_matches(w, g, np.float32)


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


CASES = {name: (fn, make_inputs) for name, fn, make_inputs in op_cases()}


@pytest.mark.parametrize("op", list(CASES))
def test_gradcheck(backend, op):
    """Every case of nnlite.gradcheck.op_cases(), float64 central differences with a random
    upstream gradient; a failure names the op. (Under the simulator: smaller inputs for the
    ops with custom CUDA kernels, see tests/cases.py.)"""
    from nnlite import random as nnrandom
    from nnlite.gradcheck import _to

    fn, make_inputs = CASES[op]
    if SIMULATOR:
        if op.startswith("layer_"):
            pytest.skip("a composition of the ops checked one by one: too slow to simulate")
        make_inputs = cases.SIMULATOR_GRADCHECK_INPUTS.get(op, make_inputs)
    rng = np.random.default_rng(0)
    nnrandom.seed(0)
    inputs = [_to(x, backends.default_device()) for x in make_inputs(rng)]
    result = gradcheck(fn, inputs, raise_on_failure=False)
    assert result.ok, f"{op}: {result}"


# -- the kernel contract ----------------------------------------------------------------------
def _kernel_modules():
    # cuda_kernels imports without a GPU (its kernels compile on first launch), so its
    # signatures are checked here too.
    import importlib

    return [importlib.import_module(backends.KERNEL_MODULES[name]) for name in backends.NAMES]


def test_every_kernel_module_defines_every_kernel_with_the_specifications_signature():
    import inspect

    modules = _kernel_modules()
    specification = {name: inspect.signature(getattr(reference, name)) for name in backends.KERNELS}
    for module in modules:
        for name, signature in specification.items():
            assert hasattr(module, name), f"{module.__name__} has no kernel {name}"
            assert inspect.signature(getattr(module, name)) == signature, (
                f"{module.__name__}.{name}{inspect.signature(getattr(module, name))} differs "
                f"from the specification numpy_kernels.{name}{signature}")
    public = {n for n, f in vars(reference).items()
              if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == reference.__name__}
    assert public == set(backends.KERNELS), "numpy_kernels and KERNELS list different kernels"


def test_every_backward_kernel_takes_the_upstream_gradient_first():
    import inspect

    for name in backends.KERNELS:
        if name.endswith("_backward"):
            first = next(iter(inspect.signature(getattr(reference, name)).parameters))
            assert first in ("gy", "gloss"), f"{name} takes {first} first"

