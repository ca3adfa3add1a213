"""Forward-only Numba kernels that write into buffers the caller owns: what nnlite.plan runs.

The kernel contract (kernels.py) returns a new array from every call, as an op that records a
graph must. An inference plan knows every shape in advance, so it allocates each output
once and passes it in; these are the same computations with an `out` argument, reusing the
backend's own compiled loops wherever one exists (one maths, one definition):

    conv2d_into        a dense (or grouped) convolution: Winograd (winograd.py's transforms,
                       the filters transformed once by the plan) where kernels.conv2d_forward
                       would take it, else one image at a time unfolded into a scratch im2col
                       buffer and one GEMM straight into y; large calls go to the backend's
                       threaded kernel instead, as they would unplanned
    depthwise_into     depthwise.py's kernel, into y
    bias_relu          the epilogue: y += b per channel, then max(y, 0), in one pass
    add_relu           a residual sum (and the ReLU after it) in one pass
    relu_into          a ReLU that no step before it could take
    max_pool_into      kernels.py's pooling loops, the argmax kept in a scratch buffer
    global_avg_pool_into, linear_into, batch_norm_into (eval mode, not folded)

Everything runs in the calling thread except the large convolutions: a plan is built for the
few faces of a frame, where waking threads costs more than the work (pool.POOL_MIN_COST).
"""

import numba
import numpy as np
from numba import njit

from nnlite.backends.numba import depthwise, kernels, pool, unfold, winograd
from nnlite.backends.numba.compile import CACHE, FAST


@njit(cache=CACHE, fastmath=FAST)
def _bias_relu(y, b, has_bias, relu):
    # y (N, C, P) in place: one pass, where `y += b` then a ReLU would make two
    n, c, p = y.shape
    for i in range(n):
        for ci in range(c):
            shift = b[ci] if has_bias else y.dtype.type(0)
            row = y[i, ci]
            if relu:
                for k in range(p):
                    v = row[k] + shift
                    row[k] = 0 if v < 0 else v  # (a NaN passes, as in relu_forward)
            else:
                for k in range(p):
                    row[k] += shift


def bias_relu(y, b, relu):
    """y (N, C, ...) += b (C,) or None, then max(y, 0) if relu; in place."""
    if b is None and not relu:
        return
    has_bias = b is not None
    _bias_relu(y.reshape(y.shape[0], y.shape[1], -1), b if has_bias else y.reshape(-1)[:1],
               has_bias, relu)


@njit(cache=CACHE, fastmath=FAST)
def _add_relu(a, b, relu, out):
    for k in range(out.size):
        v = a[k] + b[k]
        out[k] = 0 if relu and v < 0 else v


def add_relu(a, b, relu, out):
    """out = a + b, then max(out, 0) if relu (out may be a or b)."""
    _add_relu(a.reshape(-1), b.reshape(-1), relu, out.reshape(-1))


def relu_into(x, y):
    """y = max(x, 0): kernels.py's loop (the serial twin: see compile)."""
    kernels._relu_forward[0](x.reshape(-1), y.reshape(-1))


# -- convolutions ----------------------------------------------------------------------------
def winograd_filters(W):
    """The filters' Winograd transform U (16, OC, C): paid once by the plan, not per call."""
    U = np.empty((16, W.shape[0], W.shape[1]), dtype=W.dtype)
    winograd._winograd_filters_kernel(W, U)
    return U


def winograd_buffers(per, c, h, w, k, dtype):
    """winograd_into's buffers for chunks of up to `per` images: (V, M, E, Q, S)."""
    th, tw = (h + 1) // 2, (w + 1) // 2
    return (np.empty((16, c, per, th * tw), dtype), np.empty((16, k, per, th * tw), dtype),
            np.empty((2, tw + 1), dtype), np.empty((4, 2, th + 1, tw), dtype),
            np.empty((2, 4, th, tw), dtype))


def conv2d_into(x, W, U, stride, pad, groups, scratch, y):
    """y (N, OC, OH, OW) = conv2d(x, W), groups >= 1 (not depthwise: depthwise_into).

    U: winograd_filters(W), or None where Winograd never applies. scratch: a dict the plan
    keeps; the im2col and Winograd buffers are made in it on first use (and the Winograd
    ones again for a larger chunk of images)."""
    n, oc, oh, ow = y.shape
    c, kh, kw = W.shape[1], W.shape[2], W.shape[3]
    threads = numba.get_num_threads()
    if U is not None and winograd.winograd_applies(x, W, stride, pad):
        if n >= threads:  # the threaded path, as unplanned (it allocates: a big batch)
            y[...] = winograd.winograd_forward(x, W)
            return
        h, w = x.shape[2:]
        per, chunks = winograd._winograd_chunks(n, h, w, 16 * (c + oc) * x.itemsize)
        if "winograd" not in scratch or scratch["winograd"][0].shape[2] < per:
            scratch["winograd"] = winograd_buffers(per, c, h, w, oc, x.dtype)  # (too small:
            # the kernels do not check bounds)
        V, M, E, Q, S = scratch["winograd"]
        V2, M2 = V.reshape(16, c, -1), M.reshape(16, oc, -1)
        for b0, b1 in chunks:
            tiles = (b1 - b0) * V.shape[3]
            winograd._winograd_input(x, b0, b1, E, Q, V)
            np.matmul(U, V2[:, :, :tiles], out=M2[:, :, :tiles])
            winograd._winograd_output(M, b0, b1, S, y)
        return
    if groups == 1 and n >= threads > 1 and n * W.size * oh * ow >= pool.POOL_MIN_COST:
        y[...] = kernels.conv2d_forward(x, W, stride, pad)  # the backend's threads
        return
    (sh, sw), (pt, _, pl, _) = stride, pad
    if "col" not in scratch:
        scratch["col"] = np.empty((c * kh * kw, oh * ow), x.dtype)
    col, g_oc = scratch["col"], oc // groups
    W2 = W.reshape(groups, g_oc, -1)
    for b in range(n):
        for g in range(groups):
            image = x[b, g * c:(g + 1) * c]  # a contiguous run of channels
            np.matmul(W2[g], unfold.unfold_image(image, kh, kw, sh, sw, pt, pl, oh, ow, col),
                      out=y[b, g * g_oc:(g + 1) * g_oc].reshape(g_oc, oh * ow))


def depthwise_into(x, W, stride, pad, y):
    """y = the depthwise convolution (groups = channels) of x; depthwise.py's kernel."""
    depthwise.depthwise_forward(x, W, stride, pad, y)


# -- pooling, dense, batch norm --------------------------------------------------------------
def max_pool_into(x, kh, kw, stride, pad, argmax, y):
    """y = max pooling of x; argmax: a scratch int64 array of y's shape (the winners, unread:
    the loops are kernels.py's, which record them for the backward)."""
    (sh, sw), (pt, _, pl, _) = stride, pad
    if (kh, kw, sh, sw) == (2, 2, 2, 2) and tuple(pad) == (0, 0, 0, 0):
        kernels._max_pool_2x2_forward[0](x, y, argmax)  # [0]: the serial twin (compile)
    else:
        kernels._max_pool_forward[0](x, kh, kw, sh, sw, pt, pl, y, argmax)


def global_avg_pool_into(x, y):
    """y (N, C) = the mean of each (H, W) plane of x (N, C, H, W)."""
    np.mean(x.reshape(x.shape[0], x.shape[1], -1), axis=2, out=y)


def linear_into(x, WT, b, relu, y):
    """y (N, OUT) = x (N, IN) @ W.T + b, then max(y, 0) if relu. WT: W.T (a view)."""
    np.matmul(x, WT, out=y)
    bias_relu(y.reshape(y.shape[0], y.shape[1], 1), b, relu)


def batch_norm_into(x, gamma, beta, mean, inv_std, relu, y):
    """y = gamma * (x - mean) * inv_std + beta per channel (a batch norm in eval mode that
    nothing was folded into), then max(y, 0) if relu: kernels.py's batch-norm loop."""
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    kernels._batch_norm_forward[0](x3, gamma, beta, mean, inv_std, relu, y.reshape(x3.shape))
