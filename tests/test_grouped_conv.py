"""Grouped and depthwise convolution: against a nested-loop reference, gradient-checked, and
the same on every CPU backend. (The grouped-conv kernels of every backend, CUDA included:
test_grouped_conv2d in tests/test_backends.py.)"""

import numpy as np
import pytest

import nnlite
import nnlite.functional as F
from nnlite import layers as L
from nnlite.gradcheck import gradcheck

CPU_BACKENDS = [name for name in ("numpy", "numba") if nnlite.available()[name] is None]


def nested_loops(x, W, stride, pad, groups):
    """The definition, one output at a time (float64)."""
    n, c, h, w = x.shape
    oc, cg, kh, kw = W.shape
    og = oc // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    y = np.zeros((n, oc, oh, ow))
    for b in range(n):
        for o in range(oc):
            g = o // og
            for i in range(oh):
                for j in range(ow):
                    for ci in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                y[b, o, i, j] += (W[o, ci, u, v] *
                                                  xp[b, g * cg + ci, i * stride + u, j * stride + v])
    return y


# (C, OC, groups): dense, two groups, depthwise, depthwise with two filters per channel
SHAPES = [(4, 6, 1), (4, 6, 2), (4, 4, 4), (3, 6, 3)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("c, oc, groups", SHAPES)
@pytest.mark.parametrize("stride, pad", [(1, 0), (1, 1), (2, 0), (2, 1)])
def test_matches_the_nested_loops(backend, c, oc, groups, stride, pad):
    nnlite.use(backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, c, 7, 6))
    W = rng.standard_normal((oc, c // groups, 3, 3))
    y = F.conv2d(nnlite.Tensor(x), W, stride=stride, pad=pad, groups=groups).data
    np.testing.assert_allclose(y, nested_loops(x, W, stride, pad, groups), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("c, oc, groups", SHAPES)
@pytest.mark.parametrize("stride, pad", [(1, 1), (2, 1), (2, 0)])
def test_gradient_check(backend, c, oc, groups, stride, pad):
    nnlite.use(backend)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((2, c, 6, 5)), rng.standard_normal((oc, c // groups, 3, 3)),
              rng.standard_normal(oc)]
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=stride, pad=pad, groups=groups), inputs)


@pytest.mark.skipif(len(CPU_BACKENDS) < 2, reason="needs the numba backend")
@pytest.mark.parametrize("n, c, hw, multiplier", [(1, 16, 12, 1), (5, 8, 9, 2), (3, 32, 6, 1)])
def test_numba_depthwise_equals_numpy_in_float32(n, c, hw, multiplier):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    W = rng.standard_normal((c * multiplier, 1, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((n, c * multiplier, hw, hw)).astype(np.float32)
    results = {}
    for backend in ("numpy", "numba"):
        nnlite.use(backend)
        xt, Wt = nnlite.Tensor(x.copy(), requires_grad=True), nnlite.Tensor(W.copy(), requires_grad=True)
        y = F.conv2d(xt, Wt, pad=1, groups=c)
        y.backward(gy)
        results[backend] = (y.data, xt.grad, Wt.grad)
        assert y.dtype == xt.grad.dtype == Wt.grad.dtype == np.float32
    for a, b in zip(results["numpy"], results["numba"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_input_without_gradient_skips_gx():
    x = nnlite.Tensor(np.ones((1, 2, 4, 4), np.float32))  # an image: no gradient wanted
    W = nnlite.Tensor(np.ones((2, 1, 3, 3), np.float32), requires_grad=True)
    F.conv2d(x, W, pad=1, groups=2).sum().backward()
    assert x.grad is None and W.grad.shape == (2, 1, 3, 3)


@pytest.mark.parametrize("x_shape, w_shape, groups, message", [
    ((1, 4, 5, 5), (4, 1, 3, 3), 3, "must divide the input channels"),
    ((1, 4, 5, 5), (6, 2, 3, 3), 4, "must divide"),
    ((1, 4, 5, 5), (4, 2, 3, 3), 4, "weights expect 8"),
    ((1, 4, 5, 5), (4, 1, 3, 3), 0, "positive int"),
])
def test_bad_shapes_say_what_is_wrong(x_shape, w_shape, groups, message):
    with pytest.raises(ValueError, match=message):
        F.conv2d(nnlite.Tensor(np.zeros(x_shape, np.float32)), np.zeros(w_shape, np.float32),
                 groups=groups)


def test_layer_shapes_initialisation_and_repr():
    nnlite.seed(0)
    layer = L.Conv2d(64, 64, 3, pad=1, groups=64, bias=False)
    assert layer.W.shape == (64, 1, 3, 3) and layer.b is None
    # He initialisation with the fan-in of one output: 1 channel x 3 x 3 = 9 products.
    assert abs(float(layer.W.data.std()) - np.sqrt(2 / 9)) < 0.1
    assert "groups=64" in repr(layer) and repr(layer).startswith("Conv2d(64, 64")
    with pytest.raises(ValueError, match="must divide"):
        L.Conv2d(6, 4, 3, groups=4)
