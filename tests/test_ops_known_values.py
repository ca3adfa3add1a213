"""conv2d and max_pool2d against plain nested loops; "same" sizes; dtypes."""

import numpy as np
import pytest

import nnlite
import nnlite.functional as F
from nnlite.functions.conv import resolve_padding


def naive_conv2d(x, W, b, stride, pad):
    """The definition of a convolution, one output value at a time."""
    sh, sw = stride
    top, bottom, left, right = pad
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, w = xp.shape
    oc, _, kh, kw = W.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, oc, oh, ow))
    for i in range(n):
        for o in range(oc):
            for r in range(oh):
                for s in range(ow):
                    window = xp[i, :, r * sh : r * sh + kh, s * sw : s * sw + kw]
                    y[i, o, r, s] = (window * W[o]).sum() + (b[o] if b is not None else 0)
    return y


def naive_max_pool2d(x, k, stride, pad):
    kh, kw = k
    sh, sw = stride
    top, bottom, left, right = pad
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
    n, c, h, w = xp.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for r in range(oh):
        for s in range(ow):
            y[:, :, r, s] = xp[:, :, r * sh : r * sh + kh, s * sw : s * sw + kw].max(axis=(2, 3))
    return y


CONV_CASES = [
    # (x shape, W shape, stride, pad)
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0),
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 1),
    ((1, 2, 8, 5), (3, 2, 3, 2), (2, 1), (1, 0)),
    ((2, 1, 9, 9), (2, 1, 5, 5), 2, "same"),
    ((1, 2, 6, 6), (2, 2, 4, 4), 1, "same"),  # even kernel: odd padding total
    ((1, 2, 7, 8), (2, 2, 3, 3), 3, "same"),
    ((1, 1, 5, 5), (1, 1, 2, 2), 2, "valid"),
]


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_nested_loops(x_shape, w_shape, stride, pad, bias):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    W = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if bias else None
    y = F.conv2d(x, W, b, stride=stride, pad=pad).data
    s = (stride, stride) if isinstance(stride, int) else stride
    expected = naive_conv2d(x, W, b, s, resolve_padding(pad, x_shape[2:], w_shape[2:], s))
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


POOL_CASES = [
    ((2, 3, 6, 6), 2, None, 0),
    ((1, 2, 7, 7), 3, 2, 0),
    ((1, 2, 7, 8), 3, 2, "same"),
    ((1, 1, 48, 48), 3, 2, "same"),
    ((2, 2, 5, 5), 3, 1, 1),
    ((1, 1, 6, 9), (2, 3), (2, 3), 0),
]


@pytest.mark.parametrize("x_shape,k,stride,pad", POOL_CASES)
def test_max_pool2d_matches_nested_loops(x_shape, k, stride, pad):
    x = np.random.default_rng(1).standard_normal(x_shape)
    y = F.max_pool2d(x, k, stride, pad).data
    kk = (k, k) if isinstance(k, int) else k
    ss = kk if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    expected = naive_max_pool2d(x, kk, ss, resolve_padding(pad, x_shape[2:], kk, ss))
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize(
    "size,kernel,stride,expected_out",
    [(48, 5, 1, 48), (48, 3, 2, 24), (24, 3, 2, 12), (7, 3, 2, 4), (5, 4, 1, 5), (10, 3, 3, 4),
     (1, 3, 2, 1)],
)
def test_same_output_sizes(size, kernel, stride, expected_out):
    x = np.zeros((1, 1, size, size), np.float32)
    W = np.zeros((1, 1, kernel, kernel), np.float32)
    assert F.conv2d(x, W, stride=stride, pad="same").shape[2:] == (expected_out, expected_out)
    assert F.max_pool2d(x, kernel, stride, pad="same").shape[2:] == (expected_out, expected_out)


def test_same_padding_puts_the_odd_pixel_at_the_end():
    # TensorFlow: total padding 3 for size 6, kernel 4, stride 1 -> 1 before, 2 after.
    assert F.same_padding(6, 4, 1) == (1, 2)
    assert F.same_padding(7, 3, 2) == (1, 1)
    assert F.same_padding(8, 3, 2) == (0, 1)


def test_local_response_norm_matches_its_formula():
    x = np.random.default_rng(2).standard_normal((2, 6, 3, 3))
    size, alpha, beta, k = 5, 1e-1, 0.75, 2.0
    y = F.local_response_norm(x, size, alpha, beta, k).data
    expected = np.empty_like(x)
    for c in range(6):
        lo, hi = max(0, c - size // 2), min(6, c + (size - 1) // 2 + 1)
        expected[:, c] = x[:, c] / (k + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)) ** beta
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_softmax_cross_entropy_is_stable_and_correct():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    labels = np.array([0, 2])
    loss = F.softmax_cross_entropy(logits, labels).data
    second = -np.log(np.exp(3) / np.exp([1, 2, 3]).sum())
    np.testing.assert_allclose(loss, second / 2, rtol=1e-12)
    assert np.isfinite(loss)


def test_dropout_is_identity_in_eval_and_keeps_the_mean_in_training():
    x = nnlite.Tensor(np.ones((200, 200), np.float32))
    assert F.dropout(x, 0.7, train=False) is x
    y = F.dropout(x, 0.7, train=True).data
    assert abs(y.mean() - 1.0) < 0.05
    assert abs((y == 0).mean() - 0.7) < 0.02  # p is the DROP probability


def _float32_inputs():
    rng = np.random.default_rng(0)
    return {
        "conv2d": (lambda x: F.conv2d(x, nnlite.Tensor(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), requires_grad=True), pad="same"), (2, 3, 6, 6)),
        "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, "same"), (2, 3, 6, 6)),
        "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), (2, 3, 6, 6)),
        "lrn": (lambda x: F.local_response_norm(x, 5), (2, 6, 4, 4)),
        "relu": (F.relu, (4, 5)),
        "softmax": (F.softmax, (4, 5)),
        "dropout": (lambda x: F.dropout(x, 0.5), (4, 5)),
        "batch_norm": (lambda x: F.batch_norm(x, nnlite.Tensor(np.ones(3, np.float32)), nnlite.Tensor(np.zeros(3, np.float32))), (4, 3, 2, 2)),
        "linear": (lambda x: F.linear(x, nnlite.Tensor(np.ones((2, 5), np.float32))), (4, 5)),
        "global_avg_pool2d": (F.global_avg_pool2d, (2, 3, 4, 4)),
    }


@pytest.mark.parametrize("name", list(_float32_inputs()))
def test_float32_in_gives_float32_out_and_float32_gradients(name):
    fn, shape = _float32_inputs()[name]
    x = nnlite.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32),
                      requires_grad=True)
    y = fn(x)
    assert y.dtype == np.float32
    (y * 2.0).sum().backward()
    assert x.grad.dtype == np.float32


def test_loss_and_its_gradient_stay_float32():
    logits = nnlite.Tensor(np.random.default_rng(0).standard_normal((4, 7)).astype(np.float32),
                           requires_grad=True)
    loss = F.softmax_cross_entropy(logits, np.array([0, 1, 2, 3]), class_weights=np.ones(7),
                                   label_smoothing=0.1)
    assert loss.dtype == np.float32
    loss.backward()
    assert logits.grad.dtype == np.float32
