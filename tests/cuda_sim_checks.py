"""The CUDA kernels checked against the NumPy reference under Numba's CUDA simulator.

Run as `NUMBA_ENABLE_CUDASIM=1 python -m tests.cuda_sim_checks` (tests/test_cuda_sim.py does
this in a subprocess: the variable must be set before Numba is first imported). The simulator
runs every kernel thread in Python on NumPy arrays, so the shapes are tiny; the launch
configuration is shrunk to 32-thread blocks and at most 3 blocks so that every grid-stride loop
goes round several times (one check keeps the real 256-thread configuration).

Each check prints one line, "ok <name>" or "FAIL <name>: <why>"; the exit status is 1 if
any failed. The case lists (CONV_CASES, POOL_CASES, LRN_CASES) are shared with the real-GPU
tests in tests/test_cuda_gpu.py.
"""

import os
import sys
import time
import traceback

import numpy as np

from nnlite import random as nnrandom
from nnlite.backends import cuda_kernels as ck
from nnlite.backends import numpy_kernels as nk
from tests.conftest import close_enough

DTYPES = (np.float32, np.float64)

_results = []


def check(name):
    """Register a check; it passes unless it raises."""

    def register(fn):
        _results.append((name, fn))
        return fn

    return register


def assert_close(got, want, dtype, what, exact=False):
    assert type(got) is type(want), f"{what}: {type(got).__name__}, expected {type(want).__name__}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    if exact:
        assert np.array_equal(got, want), f"{what}: not equal"
        return
    tol = close_enough(dtype)
    if not np.allclose(got, want, **tol):
        err = np.abs(got.astype(np.float64) - want)
        worst = tuple(int(i) for i in np.unravel_index(np.argmax(err), err.shape))
        raise AssertionError(f"{what}: max abs error {err.max():.3g} at {worst} "
                             f"(got {got[worst]!r}, want {want[worst]!r})")


def rng(seed=0):
    return np.random.default_rng(seed)


# Convolution geometries: (x shape, kh, kw, stride, pad (top, bottom, left, right)).
CONV_CASES = [
    ((2, 3, 5, 7), 3, 3, (1, 1), (1, 1, 1, 1)),   # odd sizes, symmetric pad
    ((1, 2, 7, 6), 4, 4, (2, 2), (1, 2, 1, 1)),   # stride 2, asymmetric 'same' pad (extra at end)
    ((2, 1, 6, 5), 3, 2, (2, 1), (1, 1, 0, 0)),   # different strides and kernel sides
    ((2, 2, 4, 4), 2, 2, (2, 2), (0, 0, 0, 0)),   # non-overlapping windows
    ((1, 2, 5, 5), 5, 5, (1, 1), (2, 2, 2, 2)),   # kernel 5 'same'
]

for case in CONV_CASES:
    for dtype in DTYPES:
        shape, kh, kw, stride, pad = case
        tag = f"{shape} k{kh}x{kw} s{stride} p{pad} {np.dtype(dtype).name}"

        @check(f"im2col {tag}")
        def _(shape=shape, kh=kh, kw=kw, stride=stride, pad=pad, dtype=dtype):
            x = rng().standard_normal(shape).astype(dtype)
            for fill in (0.0, -np.inf):
                assert_close(ck.im2col(x, kh, kw, stride, pad, fill), nk.im2col(x, kh, kw, stride, pad, fill),
                             dtype, f"fill={fill}", exact=True)

        @check(f"col2im {tag}")
        def _(shape=shape, kh=kh, kw=kw, stride=stride, pad=pad, dtype=dtype):
            rows = shape[1] * kh * kw
            oh = nk.output_size(shape[2], kh, stride[0], pad[0], pad[1])
            ow = nk.output_size(shape[3], kw, stride[1], pad[2], pad[3])
            col = rng(1).standard_normal((rows, shape[0] * oh * ow)).astype(dtype)
            assert_close(ck.col2im(col, shape, kh, kw, stride, pad), nk.col2im(col, shape, kh, kw, stride, pad),
                         dtype, "col2im")
            # A broadcast (stride-0) gradient, as average pooling passes it.
            view = np.broadcast_to(col[:1], col.shape)
            assert_close(ck.col2im(view, shape, kh, kw, stride, pad), nk.col2im(view, shape, kh, kw, stride, pad),
                         dtype, "col2im of a broadcast view")

        @check(f"conv2d forward/backward {tag}")
        def _(shape=shape, kh=kh, kw=kw, stride=stride, pad=pad, dtype=dtype):
            x = rng(2).standard_normal(shape).astype(dtype)
            W = rng(3).standard_normal((3, shape[1], kh, kw)).astype(dtype)
            y = nk.conv2d_forward(x, W, stride, pad)
            assert_close(ck.conv2d_forward(x, W, stride, pad), y, dtype, "conv2d_forward")
            gy = rng(4).standard_normal(y.shape).astype(dtype)
            for got, want in zip(ck.conv2d_backward(gy, x, W, stride, pad), nk.conv2d_backward(gy, x, W, stride, pad)):
                assert_close(got, want, dtype, "conv2d_backward")
            gx, gW = ck.conv2d_backward(gy, x, W, stride, pad, input_grad=False)
            assert gx is None, "conv2d_backward(input_grad=False) returned a gx"
            assert_close(gW, nk.conv2d_backward(gy, x, W, stride, pad)[1], dtype, "conv2d_backward gW alone")


# Grouped convolution: (x shape, output channels, groups, stride, pad); groups == C is depthwise.
GROUPED_CASES = [
    ((1, 3, 5, 6), 3, 3, (1, 1), (1, 1, 1, 1)),   # depthwise, 'same'
    ((1, 3, 6, 5), 6, 3, (2, 2), (1, 1, 1, 1)),   # depthwise, two filters a channel, stride 2
    ((1, 2, 7, 6), 2, 2, (2, 1), (0, 1, 2, 0)),   # depthwise, uneven stride and padding
    ((2, 4, 5, 5), 6, 2, (1, 1), (1, 1, 1, 1)),   # two groups: the dense kernels per group
]

for case in GROUPED_CASES:
    for dtype in DTYPES:
        shape, oc, groups, stride, pad = case
        tag = f"{shape} oc{oc} g{groups} s{stride} p{pad} {np.dtype(dtype).name}"

        @check(f"grouped conv2d forward/backward {tag}")
        def _(shape=shape, oc=oc, groups=groups, stride=stride, pad=pad, dtype=dtype):
            x = rng(5).standard_normal(shape).astype(dtype)
            W = rng(6).standard_normal((oc, shape[1] // groups, 3, 3)).astype(dtype)
            y = nk.grouped_conv2d_forward(x, W, stride, pad, groups)
            assert_close(ck.grouped_conv2d_forward(x, W, stride, pad, groups), y, dtype,
                         "grouped_conv2d_forward")
            gy = rng(7).standard_normal(y.shape).astype(dtype)
            for got, want in zip(ck.grouped_conv2d_backward(gy, x, W, stride, pad, groups),
                                 nk.grouped_conv2d_backward(gy, x, W, stride, pad, groups)):
                assert_close(got, want, dtype, "grouped_conv2d_backward")
            gx, gW = ck.grouped_conv2d_backward(gy, x, W, stride, pad, groups, input_grad=False)
            assert gx is None, "grouped_conv2d_backward(input_grad=False) returned a gx"


# Pooling geometries: (x shape, kh, kw, stride, pad).
POOL_CASES = [
    ((2, 3, 4, 6), 2, 2, (2, 2), (0, 0, 0, 0)),
    ((2, 2, 7, 8), 3, 3, (2, 2), (1, 1, 0, 1)),   # kernel 3 stride 2, TensorFlow 'same' pads
    ((1, 2, 5, 5), 3, 3, (2, 2), (0, 0, 0, 0)),   # odd size, last row/column dropped
    ((1, 1, 6, 6), 3, 3, (1, 1), (1, 1, 1, 1)),   # overlapping windows: a pixel wins several
]

for case in POOL_CASES:
    for dtype in DTYPES:
        shape, kh, kw, stride, pad = case
        tag = f"{shape} k{kh}x{kw} s{stride} p{pad} {np.dtype(dtype).name}"

        @check(f"max_pool forward+backward {tag}")
        def _(shape=shape, kh=kh, kw=kw, stride=stride, pad=pad, dtype=dtype):
            r = rng(2)
            # Continuous values, then small integers: ties must go to the first position.
            for x in (r.standard_normal(shape), r.integers(0, 3, shape)):
                x = x.astype(dtype)
                y, argmax = ck.max_pool_forward(x, kh, kw, stride, pad)
                y_ref, argmax_ref = nk.max_pool_forward(x, kh, kw, stride, pad)
                assert_close(y, y_ref, dtype, "y", exact=True)
                assert_close(argmax, argmax_ref, dtype, "argmax", exact=True)
                gy = r.standard_normal(y.shape).astype(dtype)
                assert_close(ck.max_pool_backward(gy, argmax, shape, kh, kw, stride, pad),
                             nk.max_pool_backward(gy, argmax_ref, shape, kh, kw, stride, pad), dtype, "gx")


# LRN: (x shape, size, alpha, beta, k); size 5 and 11 (TFLearn's default), and an even size.
LRN_CASES = [
    ((2, 7, 3, 3), 5, 1e-1, 0.75, 2.0),
    ((2, 13, 2, 3), 11, 1.1e-1, 0.75, 1.0),
    ((1, 6, 2, 2), 4, 0.5, 0.6, 1.5),
]

for case in LRN_CASES:
    for dtype in DTYPES:
        shape, size, alpha, beta, k = case
        tag = f"{shape} size {size} {np.dtype(dtype).name}"

        @check(f"lrn forward+backward {tag}")
        def _(shape=shape, size=size, alpha=alpha, beta=beta, k=k, dtype=dtype):
            r = rng(3)
            x = (r.standard_normal(shape) * 2).astype(dtype)
            y, scale = ck.lrn_forward(x, size, alpha, beta, k)
            y_ref, scale_ref = nk.lrn_forward(x, size, alpha, beta, k)
            assert_close(scale, scale_ref, dtype, "scale")
            assert_close(y, y_ref, dtype, "y")
            gy = r.standard_normal(shape).astype(dtype)
            assert_close(ck.lrn_backward(gy, x, y_ref, scale_ref, size, alpha, beta, k),
                         nk.lrn_backward(gy, x, y_ref, scale_ref, size, alpha, beta, k), dtype, "gx")


# Batch norm: (x shape); 5 channels > the 3 blocks main() allows, so blocks stride over
# channels; 2-D input; a channel of 7 * 5 * 3 = 105 values, not a multiple of the block.
BATCH_NORM_CASES = [(3, 2, 2, 3), (2, 5, 3, 3), (7, 4), (7, 3, 5, 3)]

for shape in BATCH_NORM_CASES:
    for dtype in DTYPES:
        @check(f"batch_norm stats, forward, backward (plain and with the fused ReLU) {shape} "
               f"{np.dtype(dtype).name}")
        def _(shape=shape, dtype=dtype):
            r = rng(4)
            x = (r.standard_normal(shape) * 2 + 1).astype(dtype)
            c = shape[1]
            gamma, beta = r.uniform(0.5, 1.5, c).astype(dtype), r.standard_normal(c).astype(dtype)
            mean, var = ck.batch_norm_stats(x)
            mean_ref, var_ref = nk.batch_norm_stats(x)
            assert_close(mean, mean_ref, dtype, "mean")
            assert_close(var, var_ref, dtype, "var")
            gy = r.standard_normal(shape).astype(dtype)
            for relu in (False, True):
                y, inv_std = ck.batch_norm_forward(x, gamma, beta, mean_ref, var_ref, 1e-5, relu)
                y_ref, inv_std_ref = nk.batch_norm_forward(x, gamma, beta, mean_ref, var_ref, 1e-5, relu)
                assert_close(inv_std, inv_std_ref, dtype, "inv_std")
                assert_close(y, y_ref, dtype, f"y relu={relu}")
                if relu:
                    assert (y_ref == 0).any() and (y_ref > 0).any(), "the ReLU had nothing to cut"
                    np.testing.assert_array_equal(  # fused = the two ops, bit for bit
                        y, nk.relu_forward(ck.batch_norm_forward(x, gamma, beta, mean_ref, var_ref, 1e-5)[0]))
                relu_beta = beta if relu else None
                for train in (True, False):
                    got = ck.batch_norm_backward(gy, x, mean_ref, gamma, inv_std, train, relu_beta)
                    want = nk.batch_norm_backward(gy, x, mean_ref, gamma, inv_std, train, relu_beta)
                    for g, w, what in zip(got, want, ("gx", "ggamma", "gbeta")):
                        assert_close(g, w, dtype, f"{what} train={train} relu={relu}")
                    if relu:  # the recomputed mask is the forward's: the same bits as apart
                        apart = ck.batch_norm_backward(nk.relu_backward(gy, y), x, mean_ref, gamma,
                                                       inv_std, train)
                        for g, a in zip(got, apart):
                            np.testing.assert_array_equal(g, a)


for dtype in DTYPES:
    name = np.dtype(dtype).name

    @check(f"batch_norm_running_update, relu_backward {name}")
    def _(dtype=dtype):
        r = rng(12)
        arrays = [r.uniform(0.5, 2, 5).astype(dtype) for _ in range(4)]
        got, want = [a.copy() for a in arrays[:2]], [a.copy() for a in arrays[:2]]
        ck.batch_norm_running_update(*got, *arrays[2:], 0.1, 36)
        nk.batch_norm_running_update(*want, *arrays[2:], 0.1, 36)
        for g, w in zip(got, want):
            assert_close(g, w, dtype, "running statistics")
        x, gy = r.standard_normal((3, 4, 5)).astype(dtype), r.standard_normal((3, 4, 5)).astype(dtype)
        y = nk.relu_forward(x)
        assert_close(ck.relu_backward(gy, y), nk.relu_backward(gy, y), dtype, "relu_backward", exact=True)

    @check(f"softmax cross-entropy, 40 rows (more than a block's threads) {name}")
    def _(dtype=dtype):
        r = rng(13)
        logits = (r.standard_normal((40, 7)) * 3).astype(dtype)
        labels = r.integers(0, 7, 40)
        labels[5] = 9  # out of range (only the host checks): no row of q is 1, as in NumPy
        for weights in (np.ones(40, dtype), r.uniform(0.5, 2, 40).astype(dtype)):
            for smoothing in (0.0, 0.1):
                loss, probs = ck.softmax_cross_entropy_forward(logits, labels, weights, smoothing)
                loss_ref, probs_ref = nk.softmax_cross_entropy_forward(logits, labels, weights, smoothing)
                what = f"smoothing={smoothing}"
                assert_close(loss, loss_ref, dtype, "loss " + what)
                assert_close(probs, probs_ref, dtype, "probs " + what)
                gloss = np.asarray(0.7, dtype=dtype)
                assert_close(ck.softmax_cross_entropy_backward(gloss, probs_ref, labels, weights, smoothing),
                             nk.softmax_cross_entropy_backward(gloss, probs_ref, labels, weights, smoothing),
                             dtype, "glogits " + what)

    @check(f"softmax cross-entropy {name}")
    def _(dtype=dtype):
        r = rng(4)
        logits, labels = r.standard_normal((5, 7)).astype(dtype), r.integers(0, 7, 5)
        weights = r.uniform(0.5, 2, 5).astype(dtype)
        assert_close(ck.log_softmax(logits), nk.log_softmax(logits), dtype, "log_softmax")
        loss, probs = ck.softmax_cross_entropy_forward(logits, labels, weights, 0.1)
        loss_ref, _ = nk.softmax_cross_entropy_forward(logits, labels, weights, 0.1)
        assert_close(loss, loss_ref, dtype, "loss")
        gloss = np.asarray(0.7, dtype=dtype)
        assert_close(ck.softmax_cross_entropy_backward(gloss, probs, labels, weights, 0.1),
                     nk.softmax_cross_entropy_backward(gloss, probs, labels, weights, 0.1), dtype, "glogits")

    @check(f"dropout_mask {name}")
    def _(dtype=dtype):
        like = np.zeros((3, 5, 2), dtype=dtype)
        for p in (0.3, 0.7):
            nnrandom.seed(5)
            mask = ck.dropout_mask(like.shape, p, like.dtype, like)
            nnrandom.seed(5)  # same stream (the host one, under the simulator): same mask
            assert_close(mask, nk.dropout_mask(like.shape, p, like.dtype, like), dtype, f"p={p}", exact=True)
            assert set(np.unique(mask)) <= {0, dtype(1 / (1 - p))}

    @check(f"sgd_update (momentum, weight decay, nesterov) {name}")
    def _(dtype=dtype):
        r = rng(6)
        for nesterov in (False, True):
            for weight_decay in (0.0, 1e-2):
                param = r.standard_normal((4, 3, 2)).astype(dtype)
                velocity = r.standard_normal(param.shape).astype(dtype)
                p_ref, v_ref = param.copy(), velocity.copy()
                for _step in range(2):
                    grad = r.standard_normal(param.shape).astype(dtype)
                    ck.sgd_update(param, grad, velocity, 0.1, 0.9, weight_decay, nesterov)
                    nk.sgd_update(p_ref, grad, v_ref, 0.1, 0.9, weight_decay, nesterov)
                what = f"nesterov={nesterov} wd={weight_decay}"
                assert_close(param, p_ref, dtype, "param " + what)
                assert_close(velocity, v_ref, dtype, "velocity " + what)
        # A non-contiguous parameter (a transposed view) is still updated in place.
        base = r.standard_normal((3, 4)).astype(dtype)
        param, p_ref = base.T, base.T.copy()
        velocity, v_ref = np.zeros_like(param), np.zeros_like(param)
        grad = r.standard_normal(param.shape).astype(dtype).T.copy().T  # non-contiguous grad
        ck.sgd_update(param, grad, velocity, 0.1, 0.9, 0.0, False)
        nk.sgd_update(p_ref, grad, v_ref, 0.1, 0.9, 0.0, False)
        assert_close(np.ascontiguousarray(param), p_ref, dtype, "transposed param")

    @check(f"adam_update (bias correction, weight decay) {name}")
    def _(dtype=dtype):
        r = rng(7)
        for weight_decay in (0.0, 1e-2):
            param = r.standard_normal((5, 3)).astype(dtype)
            m, v = np.zeros_like(param), np.zeros_like(param)
            p_ref, m_ref, v_ref = param.copy(), m.copy(), v.copy()
            for step in (1, 2, 3):
                grad = r.standard_normal(param.shape).astype(dtype)
                ck.adam_update(param, grad, m, v, 1e-2, 0.9, 0.999, 1e-8, weight_decay, step)
                nk.adam_update(p_ref, grad, m_ref, v_ref, 1e-2, 0.9, 0.999, 1e-8, weight_decay, step)
            assert_close(m, m_ref, dtype, f"m wd={weight_decay}")
            assert_close(v, v_ref, dtype, f"v wd={weight_decay}")
            assert_close(param, p_ref, dtype, f"param wd={weight_decay}")


@check("im2col + col2im with the real launch configuration (256 threads, 8192 blocks)")
def _():
    threads, blocks = ck.THREADS, ck.MAX_BLOCKS
    ck.THREADS, ck.MAX_BLOCKS = 256, 8192
    try:
        x = rng(8).standard_normal((2, 3, 6, 7)).astype(np.float32)
        col = ck.im2col(x, 3, 3, (2, 1), (1, 1, 1, 1))
        assert_close(col, nk.im2col(x, 3, 3, (2, 1), (1, 1, 1, 1)), np.float32, "im2col", exact=True)
        assert_close(ck.col2im(col, x.shape, 3, 3, (2, 1), (1, 1, 1, 1)),
                     nk.col2im(col, x.shape, 3, 3, (2, 1), (1, 1, 1, 1)), np.float32, "col2im")
    finally:
        ck.THREADS, ck.MAX_BLOCKS = threads, blocks


@check("batch_norm of an empty batch in eval mode (2-D and 4-D, with and without the ReLU)")
def _():
    for shape in ((0, 3, 4, 4), (0, 3)):
        x = np.zeros(shape, np.float32)
        gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
        mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
        for relu in (False, True):
            y, inv_std = ck.batch_norm_forward(x, gamma, beta, mean, var, 1e-5, relu)
            assert y.shape == shape, y.shape
            assert_close(inv_std, nk.batch_norm_forward(x, gamma, beta, mean, var, 1e-5)[1],
                         np.float32, "inv_std")
            gx, ggamma, gbeta = ck.batch_norm_backward(x, x, mean, gamma, inv_std, False,
                                                       beta if relu else None)
            assert gx.shape == shape, gx.shape
            assert_close(ggamma, np.zeros(3, np.float32), np.float32, "ggamma")
            assert_close(gbeta, np.zeros(3, np.float32), np.float32, "gbeta")


@check("batch_norm with the real launch configuration (512-thread sums, 256-thread passes)")
def _():
    saved = ck.THREADS, ck.MAX_BLOCKS, ck.REDUCE_THREADS
    ck.THREADS, ck.MAX_BLOCKS, ck.REDUCE_THREADS = 256, 8192, 512
    try:
        r = rng(10)
        x = r.standard_normal((3, 2, 7, 9)).astype(np.float32)  # 189 values per channel
        gamma, beta = r.uniform(0.5, 1.5, 2).astype(np.float32), r.standard_normal(2).astype(np.float32)
        for got, want in zip(ck.batch_norm_stats(x), nk.batch_norm_stats(x)):
            assert_close(got, want, np.float32, "stats")
        mean, var = nk.batch_norm_stats(x)
        y, inv_std = ck.batch_norm_forward(x, gamma, beta, mean, var, 1e-5, True)
        assert_close(y, nk.batch_norm_forward(x, gamma, beta, mean, var, 1e-5, True)[0], np.float32, "y")
        gy = r.standard_normal(x.shape).astype(np.float32)
        for got, want in zip(ck.batch_norm_backward(gy, x, mean, gamma, inv_std, True, beta),
                             nk.batch_norm_backward(gy, x, mean, gamma, inv_std, True, beta)):
            assert_close(got, want, np.float32, "backward")
    finally:
        ck.THREADS, ck.MAX_BLOCKS, ck.REDUCE_THREADS = saved


@check("gradient checks (float64) of every op with a custom CUDA kernel, running on those kernels")
def _():
    # The ops pick kernels by device, and host arrays never get the CUDA ones: route them
    # there by hand, then gradient-check the ops that call the custom kernels (tiny shapes: a
    # gradient check runs the forward twice per input element).
    import importlib

    from nnlite import functional as F
    from nnlite.gradcheck import _distinct, gradcheck

    op_modules = [importlib.import_module(f"nnlite.functions.{name}")
                  for name in ("activation", "conv", "loss", "normalization", "pool")]
    saved = [m.kernels_for for m in op_modules]
    for m in op_modules:
        m.kernels_for = lambda array: ck
    r = rng(9)
    cases = [
        ("conv2d stride 2 'same'", lambda x, w, b: F.conv2d(x, w, b, stride=2, pad="same"),
         [r.standard_normal((1, 2, 4, 3)), r.standard_normal((2, 2, 3, 2)), r.standard_normal(2)]),
        ("max_pool2d k3 s2 'same'", lambda x: F.max_pool2d(x, 3, 2, pad="same"),
         [_distinct(r, (1, 2, 5, 4))]),
        ("avg_pool2d k3 s2 pad 1", lambda x: F.avg_pool2d(x, 3, 2, pad=1), [r.standard_normal((1, 1, 4, 5))]),
        ("local_response_norm size 5", lambda x: F.local_response_norm(x, 5, 1e-1, 0.75, 2.0),
         [r.standard_normal((1, 6, 1, 2)) * 2]),
        ("dropout", lambda x: F.dropout(x, 0.4), [r.standard_normal((3, 4))]),
        ("relu", F.relu, [_distinct(r, (2, 3))]),
        ("softmax_cross_entropy, weighted and smoothed", lambda z: F.softmax_cross_entropy(
            z, np.array([0, 3, 6]), class_weights=np.linspace(0.5, 2, 7), label_smoothing=0.1),
         [r.standard_normal((3, 7))]),
        ("batch_norm train", lambda x, g, b: F.batch_norm(x, g, b, train=True),
         [r.standard_normal((2, 2, 1, 2)), r.uniform(0.5, 1.5, 2), r.standard_normal(2)]),
        ("batch_norm train, fused ReLU", lambda x, g, b: F.batch_norm(x, g, b, train=True, relu=True),
         [r.standard_normal((3, 2, 1, 2)), r.uniform(0.5, 1.5, 2), r.standard_normal(2)]),
        ("batch_norm eval, fused ReLU, 2-D", lambda x, g, b: F.batch_norm(
            x, g, b, x.data[0] * 0 + 0.3, x.data[0] * 0 + 1.7, train=False, relu=True),
         [r.standard_normal((3, 2)), r.uniform(0.5, 1.5, 2), r.standard_normal(2)]),
    ]
    try:
        failed = []
        for name, fn, inputs in cases:
            result = gradcheck(fn, inputs, raise_on_failure=False)
            if not result.ok:
                failed.append(f"{name}: {result}")
    finally:
        for m, kernels_for in zip(op_modules, saved):
            m.kernels_for = kernels_for
    assert not failed, "; ".join(failed)


def main() -> int:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        print("run with NUMBA_ENABLE_CUDASIM=1 (the simulator must be on before Numba loads)")
        return 2
    ck.THREADS, ck.MAX_BLOCKS = 32, 3  # small blocks: fast to simulate, grid-stride loops run
    ck.REDUCE_THREADS = 16  # (a power of two; fewer threads than values per channel)
    assert ck.SIMULATOR, "cuda_kernels did not see the simulator"
    start, failures = time.perf_counter(), 0
    for name, fn in _results:
        t0 = time.perf_counter()
        try:
            fn()
            print(f"ok {name} ({time.perf_counter() - t0:.2f}s)", flush=True)
        except Exception as err:  # noqa: BLE001 - every failure is reported, then counted
            failures += 1
            detail = str(err) if isinstance(err, AssertionError) else traceback.format_exc()
            print(f"FAIL {name}: {detail}", flush=True)
    print(f"{len(_results) - failures} passed, {failures} failed "
          f"in {time.perf_counter() - start:.1f}s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
