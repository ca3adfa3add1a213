"""Numba CPU kernels: the NumPy kernels compiled, with the same names and signatures.

`numpy_kernels.py` is the specification; every function here computes the same thing (the
parity tests in tests/test_backends.py hold them to it), only faster, in the same sections and
order, so that the two read side by side. Beside it: unfold.py (one image's im2col and
col2im, for the convolution's threads), winograd.py (the 3x3 convolution's fast path),
depthwise.py, pool.py (the convolutions' thread pool; BLAS's threads are nnlite/blas.py) and
compile.py (the cache folder, the threading layer, serial and parallel twins).

How each kernel is organised, and why:

    im2col               NumPy's (used by average pooling; the convolution has its own below)
    col2im               parallel over images, each added up by the convolution's per-image
                         adjoint: one thread owns each image, so there are no races or atomics
    conv2d_forward/      parallel over images: each thread unfolds one image at a time into
    conv2d_backward      a cache-sized im2col buffer and multiplies it at once with a
                         single-threaded BLAS GEMM (Python threads around nogil kernels;
                         a call too small to pay for waking them stays in the calling
                         thread: pool.POOL_MIN_COST);
                         3x3 stride-1 'same' layers with 16 input channels or more take
                         Winograd's F(2x2, 3x3) where it pays (winograd: 2.25x fewer
                         multiplications, the same result up to rounding)
    max_pool_forward     the window max and its position computed directly (no im2col, no
                         -inf padded copy): padding is simply never visited; the common 2x2
                         stride-2 pool has its own written-out loop, which vectorizes
    max_pool_backward    one plane per thread again: the gradient goes to the saved winner
    lrn_forward/backward a running sum along the channel axis (add the channel entering the
                         window, subtract the one leaving it): O(C) per pixel, not O(C*size)
    batch_norm_stats     one pass per channel (sum and sum of squares in float64)
    batch_norm_forward   one pass over each (image, channel) plane, y = a*x + d, the ReLU
                         (relu=True) applied as y is written
    batch_norm_backward  in training two passes per channel, the two sums then gx; xhat is
                         recomputed from x, never stored, and so is the fused ReLU's mask
    batch_norm_running_update  NumPy's (C values: nothing to compile)
    relu_forward/backward one pass each (NumPy's backward, x * mask, takes two and a bool
                         array); unused by the compact net, whose ReLUs are all fused
    softmax CE           one fused loop over the (N, K) logits: tiny, so serial (starting
                         threads would cost more than the work)
    dropout_mask         the same uniforms as NumPy (nnlite.random, so a seed gives the same
                         mask on both backends), thresholded and scaled in place in one pass
    sgd/adam_update      one fused pass over each parameter, in place, no temporaries

Every kernel is dtype-generic: Numba compiles one specialization per argument types, so
float32 stays float32 (scalars are cast to the array dtype before the call, otherwise a
Python float would make the arithmetic float64) and the float64 gradient checks also run.
`cache=CACHE` stores the machine code in the user's cache folder (compile), so a new
process does not recompile. fastmath (FAST): only on loops that are reductions or plain
arithmetic on finite numbers.

error_model="numpy" on the kernels that divide once per value (LRN, Adam): a float divided by
zero gives inf or NaN, as in NumPy (the specification), instead of Python's ZeroDivisionError.
(Numba's default model tests every divisor; the timings are in benchmarks/RESULTS.md.)
"""

import math

import numba
import numpy as np
from numba import njit, prange

from nnlite import random as nnrandom
from nnlite.backends.numba import depthwise, pool, winograd
from nnlite.backends import conv_algorithms
from nnlite.backends import numpy_kernels as _reference
from nnlite.backends.numba.compile import CACHE, FAST, pick, serial_and_parallel
from nnlite.backends.numba.unfold import col2im_image, unfold_image

output_size = _reference.output_size  # integer arithmetic: nothing to compile


def _scalar(value, like):
    """A Python number as a scalar of like's dtype, so the kernel computes in that dtype."""
    return like.dtype.type(value)


# -- convolution as a matrix product ---------------------------------------------------------
# Per image, not per batch: each thread unfolds one image at a time into its own cache-sized
# buffer and multiplies it with single-threaded BLAS (unfold says why).

# The whole batch at once: average pooling's im2col, and the parity tests'.
def im2col(x, kh, kw, stride, pad, fill=0.0):
    """x (N, C, H, W) -> col (C*KH*KW, N*OH*OW); see numpy_kernels.im2col.

    This is NumPy's version: its copy out of a strided view was as fast as a compiled Numba
    loop at batch 64 and faster at batch 1, the live demo's case, so the loop was dropped.
    """
    return _reference.im2col(x, kh, kw, stride, pad, fill)


@serial_and_parallel()
def _col2im(col, kh, kw, sh, sw, pt, pl, oh, ow, x):
    # Image b's windows are columns b*OH*OW .. (b+1)*OH*OW of col; each image is owned by one
    # thread, so no two threads add into the same pixel.
    p = oh * ow
    for b in prange(x.shape[0]):
        col2im_image(col[:, b * p : (b + 1) * p], kh, kw, sh, sw, pt, pl, oh, ow, x[b])


def col2im(col, x_shape, kh, kw, stride, pad):
    """col (C*KH*KW, N*OH*OW) -> (N, C, H, W), overlapping windows added up."""
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    n, c, h, w = x_shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    x = np.empty(x_shape, dtype=col.dtype)
    pick(_col2im, col.size)(col, kh, kw, sh, sw, pt, pl, oh, ow, x)
    return x


def _conv_operands(x, W):
    dtype = np.result_type(x, W)
    return np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(W, dtype=dtype)


def conv2d_forward(x, W, stride, pad):
    """y (N, OC, OH, OW) = conv2d(x, W); see numpy_kernels.conv2d_forward."""
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    (n, c, h, w), (oc, _, kh, kw) = x.shape, W.shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    x, W = _conv_operands(x, W)
    if winograd.winograd_applies(x, W, stride, pad):
        return winograd.winograd_forward(x, W)
    W2 = W.reshape(oc, -1)  # (OC, K)
    y = np.empty((n, oc, oh * ow), dtype=x.dtype)
    threads = numba.get_num_threads()  # numba.set_num_threads(k) limits our threads too
    if n < threads:
        # Fewer images than threads (batch 1, the live demo): unfold each image whole and let
        # BLAS spread its GEMM over the cores itself, which costs less than a hand-off to our
        # threads per layer.
        col = np.empty((W2.shape[1], oh * ow), dtype=x.dtype)
        for b in range(n):
            np.matmul(W2, unfold_image(x[b], kh, kw, sh, sw, pt, pl, oh, ow, col), out=y[b])
        return y.reshape(n, oc, oh, ow)

    images = pool.Shared(range(n))  # each image to whichever thread is free

    def work(t):
        col = np.empty((W2.shape[1], oh * ow), dtype=x.dtype)  # this thread's buffer
        for b in images:
            # (OC, K) @ (K, OH*OW), straight into y[b]
            np.matmul(W2, unfold_image(x[b], kh, kw, sh, sw, pt, pl, oh, ow, col), out=y[b])

    pool.run_on_threads(work, threads, cost=n * W2.size * oh * ow)
    return y.reshape(n, oc, oh, ow)


def conv2d_backward(gy, x, W, stride, pad, input_grad=True):
    """gx (N, C, H, W) or None, gW (OC, C, KH, KW); see numpy_kernels.conv2d_backward."""
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    (n, c, h, w), (oc, _, kh, kw) = x.shape, W.shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    if gy.shape != (n, oc, oh, ow):  # the loops below would read past gy's end, not fail
        raise ValueError(f"conv2d_backward: gy has shape {gy.shape}, "
                         f"the convolution's output has {(n, oc, oh, ow)}")
    x, W = _conv_operands(x, W)
    if winograd.winograd_applies(x, W, stride, pad):
        gy = np.ascontiguousarray(gy, dtype=x.dtype)
        return winograd.winograd_backward(gy, x, W, input_grad)
    W2 = W.reshape(oc, -1)
    gy = np.ascontiguousarray(gy, dtype=x.dtype).reshape(n, oc, oh * ow)
    gx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
    threads = numba.get_num_threads()
    runs = pool.blocks(range(n), threads)
    gWT = np.zeros((len(runs), W2.shape[1], oc), dtype=x.dtype)  # one weight gradient per run
    queue = pool.Shared(enumerate(runs))

    def work(t):
        col, gcol = np.empty((2, W2.shape[1], oh * ow), dtype=x.dtype)
        part = np.empty((W2.shape[1], oc), dtype=x.dtype)
        for i, block in queue:
            for b in block:
                unfolded = unfold_image(x[b], kh, kw, sh, sw, pt, pl, oh, ow, col)
                # dW[o, k] = sum_p gy[o, p] col[k, p], computed transposed: col @ gy^T ran 1.5x
                # faster than gy @ col^T for the compact net's (32, 2304) @ (2304, 288) (measured)
                np.matmul(unfolded, gy[b].T, out=part)
                gWT[i] += part
                if input_grad and unfolded is col:
                    np.matmul(W2.T, gy[b], out=gcol)  # dcol = W^T gy
                    col2im_image(gcol, kh, kw, sh, sw, pt, pl, oh, ow, gx[b])
                elif input_grad:  # a 1x1 convolution: dcol is dx itself
                    np.matmul(W2.T, gy[b], out=gx[b].reshape(c, h * w))

    pool.run_on_threads(work, threads, cost=(1 + input_grad) * n * W2.size * oh * ow)
    return gx, np.ascontiguousarray(gWT.sum(axis=0).T).reshape(W.shape)


# -- grouped and depthwise convolution -------------------------------------------------------
# Depthwise (one input channel a group) has direct kernels of its own (depthwise: far
# less memory traffic than im2col for 9-weight filters); other group counts run the dense
# convolution above group by group, as in NumPy.
def grouped_conv2d_forward(x, W, stride, pad, groups):
    """y (N, OC, OH, OW); see numpy_kernels.grouped_conv2d_forward."""
    (n, c, h, w), (oc, _, kh, kw) = x.shape, W.shape
    if groups != c:
        return conv_algorithms.per_group_forward(conv2d_forward, x, W, stride, pad, groups)
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    x, W = _conv_operands(x, W)
    y = np.empty((n, oc, output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)),
                 dtype=x.dtype)
    depthwise.depthwise_forward(x, W, stride, pad, y)
    return y


def grouped_conv2d_backward(gy, x, W, stride, pad, groups, input_grad=True):
    """gx (N, C, H, W) or None, gW (OC, C/G, KH, KW); see numpy_kernels.grouped_conv2d_backward."""
    if groups != x.shape[1]:
        return conv_algorithms.per_group_backward(conv2d_backward, gy, x, W, stride, pad, groups,
                                              input_grad)
    x, W = _conv_operands(x, W)
    gy = np.ascontiguousarray(gy, dtype=x.dtype)
    gW = np.empty_like(W)
    depthwise.depthwise_grad_weight(gy, x, stride, pad, gW)
    if not input_grad:
        return None, gW
    gx = np.empty_like(x)
    depthwise.depthwise_grad_input(gy, W, stride, pad, gx)
    return gx, gW


# -- pooling ---------------------------------------------------------------------------------
@serial_and_parallel()
def _max_pool_forward(x, kh, kw, sh, sw, pt, pl, y, argmax):
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    # Outputs whose window lies wholly inside the image, rows p_lo..p_hi-1 and columns
    # q_lo..q_hi-1, need no bounds tests: only the border takes the careful path (2x faster
    # on the compact net's pools, measured).
    p_lo, p_hi = (pt + sh - 1) // sh, min(oh, (h - kh + pt) // sh + 1)
    q_lo, q_hi = (pl + sw - 1) // sw, min(ow, (w - kw + pl) // sw + 1)
    for plane in prange(n * c):
        b, ci = plane // c, plane % c
        image = x[b, ci]
        for p in range(oh):
            inside_rows = p_lo <= p < p_hi
            for q in range(ow):
                best, winner = -np.inf, 0  # what an all-padding window gives in NumPy too
                for i in range(kh):
                    yy = p * sh + i - pt
                    if inside_rows or 0 <= yy < h:
                        for j in range(kw):
                            xx = q * sw + j - pl
                            if (inside_rows and q_lo <= q < q_hi) or 0 <= xx < w:
                                v = image[yy, xx]
                                better = v > best  # ">": the first maximum wins ties
                                best = v if better else best
                                winner = i * kw + j if better else winner
                y[b, ci, p, q] = best
                argmax[b, ci, p, q] = winner


@serial_and_parallel()
def _max_pool_2x2_forward(x, y, argmax):
    # The common pool (2x2 windows, stride 2, no padding) written out: the four values of a
    # window are named, so the loop over a row of windows has no inner loops or bounds tests
    # and LLVM vectorizes it. 4-5x faster than the general loop on the compact net's pools
    # (measured at batch 64, 2 threads). Same order and comparisons as the general loop, so
    # the same winners, ties and NaNs included.
    n, c = x.shape[0], x.shape[1]
    oh, ow = y.shape[2], y.shape[3]
    for plane in prange(n * c):
        b, ci = plane // c, plane % c
        for p in range(oh):
            top, bottom = x[b, ci, 2 * p], x[b, ci, 2 * p + 1]
            out, arg = y[b, ci, p], argmax[b, ci, p]
            for q in range(ow):
                best, winner = -np.inf, 0
                v = top[2 * q]
                if v > best:
                    best = v
                v = top[2 * q + 1]
                if v > best:
                    best, winner = v, 1
                v = bottom[2 * q]
                if v > best:
                    best, winner = v, 2
                v = bottom[2 * q + 1]
                if v > best:
                    best, winner = v, 3
                out[q] = best
                arg[q] = winner


def max_pool_forward(x, kh, kw, stride, pad):
    """y (N, C, OH, OW) and argmax (position inside the window, row-major, int64)."""
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    n, c, h, w = x.shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int64)
    if (kh, kw, sh, sw) == (2, 2, 2, 2) and tuple(pad) == (0, 0, 0, 0):
        pick(_max_pool_2x2_forward, x.size)(x, y, argmax)
    else:
        pick(_max_pool_forward, x.size)(x, kh, kw, sh, sw, pt, pl, y, argmax)
    return y, argmax


@serial_and_parallel()
def _max_pool_backward(gy, argmax, kh, kw, sh, sw, pt, pl, gx):
    n, c, h, w = gx.shape
    oh, ow = gy.shape[2], gy.shape[3]
    for plane in prange(n * c):
        b, ci = plane // c, plane % c
        gx[b, ci] = 0
        for p in range(oh):
            for q in range(ow):
                winner = argmax[b, ci, p, q]
                yy = p * sh + winner // kw - pt
                xx = q * sw + winner % kw - pl
                if 0 <= yy < h and 0 <= xx < w:  # overlapping windows (k3 s2) can share a winner
                    gx[b, ci, yy, xx] += gy[b, ci, p, q]


def max_pool_backward(gy, argmax, x_shape, kh, kw, stride, pad):
    """Each output gradient added to the input pixel that won its window."""
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    gx = np.empty(x_shape, dtype=gy.dtype)
    pick(_max_pool_backward, gx.size)(gy, argmax, kh, kw, sh, sw, pt, pl, gx)
    return gx


# -- local response normalization ------------------------------------------------------------
# Arrays are viewed as (N, C, H*W) and split into tasks of (image, block of pixels), so that
# even a batch of one keeps both cores busy. Inside a task the loop runs over channels, with a
# running window sum per pixel kept in float64 (adding and later subtracting the same squares
# then cancels exactly instead of drifting).
BLOCK = 512


@njit(cache=CACHE, inline="always")
def _pow_three_quarters(s):
    """s ** 0.75 (TFLearn's and AlexNet's beta) as two square roots, far cheaper than pow."""
    return np.sqrt(s * np.sqrt(s))


@serial_and_parallel(fastmath=FAST, error_model="numpy")
def _lrn_forward(x, before, after, coef, k, beta, y, scale):
    n, c, hw = x.shape
    blocks = (hw + BLOCK - 1) // BLOCK
    for task in prange(n * blocks):
        b, t0 = task // blocks, (task % blocks) * BLOCK
        t1 = min(t0 + BLOCK, hw)
        window = np.zeros(t1 - t0)
        for cc in range(min(after, c)):  # channels 0..after-1: the window of channel 0
            for t in range(t0, t1):
                window[t - t0] += np.float64(x[b, cc, t]) ** 2
        for ci in range(c):
            entering, leaving = ci + after, ci - before - 1
            if entering < c:  # tests outside the pixel loops, so those vectorize
                for t in range(t0, t1):
                    window[t - t0] += np.float64(x[b, entering, t]) ** 2
            if leaving >= 0:
                for t in range(t0, t1):
                    window[t - t0] -= np.float64(x[b, leaving, t]) ** 2
            if beta == 0.75:  # tested once here, not in every pixel
                for t in range(t0, t1):
                    s = x.dtype.type(k + coef * window[t - t0])
                    scale[b, ci, t] = s
                    y[b, ci, t] = x[b, ci, t] / _pow_three_quarters(s)
            else:
                for t in range(t0, t1):
                    s = x.dtype.type(k + coef * window[t - t0])
                    scale[b, ci, t] = s
                    y[b, ci, t] = x[b, ci, t] * s ** -beta


def lrn_forward(x, size, alpha, beta, k):
    """LRN across channels (PyTorch semantics); returns y and scale. See numpy_kernels."""
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    y, scale = np.empty_like(x), np.empty_like(x)
    pick(_lrn_forward, x.size)(x.reshape(n, c, -1), size // 2, (size - 1) // 2, alpha / size, float(k),
                 _scalar(beta, x), y.reshape(n, c, -1), scale.reshape(n, c, -1))
    return y, scale


@serial_and_parallel(fastmath=FAST, error_model="numpy")
def _lrn_backward(x, y, scale, gy, before, after, coef2, beta, gx):
    # gathered[c] = sum of t[c'] = gy*y/scale over c' in c-before .. c+after (the mirrored
    # window), gx = gy * scale^-beta - coef2 * x * gathered. Each t[c'] is computed once, when
    # channel c' enters the window, and kept in `terms` until it leaves (the same value is
    # added and subtracted, so the float64 window cancels exactly).
    n, c, hw = x.shape
    blocks = (hw + BLOCK - 1) // BLOCK
    for task in prange(n * blocks):
        b, t0 = task // blocks, (task % blocks) * BLOCK
        t1 = min(t0 + BLOCK, hw)
        window = np.zeros(t1 - t0)
        terms = np.empty((c, t1 - t0), dtype=x.dtype)
        for cc in range(min(after, c)):
            term = terms[cc]
            for t in range(t0, t1):
                term[t - t0] = gy[b, cc, t] * y[b, cc, t] / scale[b, cc, t]
            for u in range(t1 - t0):
                window[u] += term[u]
        for ci in range(c):
            entering, leaving = ci + after, ci - before - 1
            if entering < c:
                term = terms[entering]
                for t in range(t0, t1):
                    term[t - t0] = gy[b, entering, t] * y[b, entering, t] / scale[b, entering, t]
                for u in range(t1 - t0):
                    window[u] += term[u]
            if leaving >= 0:
                term = terms[leaving]
                for u in range(t1 - t0):
                    window[u] -= term[u]
            if beta == 0.75:
                for t in range(t0, t1):
                    gx[b, ci, t] = (gy[b, ci, t] / _pow_three_quarters(scale[b, ci, t])
                                    - coef2 * x[b, ci, t] * window[t - t0])
            else:
                for t in range(t0, t1):
                    gx[b, ci, t] = (gy[b, ci, t] * scale[b, ci, t] ** -beta
                                    - coef2 * x[b, ci, t] * window[t - t0])


def lrn_backward(gy, x, y, scale, size, alpha, beta, k):
    """dL/dx for LRN; see numpy_kernels.lrn_backward for the formula."""
    x, y, scale, gy = (np.ascontiguousarray(a) for a in (x, y, scale, gy))
    n, c = x.shape[:2]
    gx = np.empty_like(gy)
    pick(_lrn_backward, x.size)(x.reshape(n, c, -1), y.reshape(n, c, -1), scale.reshape(n, c, -1),
                  gy.reshape(n, c, -1), (size - 1) // 2, size // 2,
                  _scalar(2.0 * alpha * beta / size, x), _scalar(beta, x), gx.reshape(n, c, -1))
    return gx


# -- batch normalization ---------------------------------------------------------------------
# (N, C) and (N, C, H, W) are both viewed as (N, C, HW) with HW = 1 for the former; every
# kernel is parallel over channels, each channel's N*HW values visited by one thread.
def _as_nchw(a):
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))  # (not -1: N may be 0)


@serial_and_parallel(fastmath=FAST)
def _batch_norm_stats(x, mean, var):
    # One pass: var = E[x^2] - mean^2, with both sums in float64, so the cancellation costs
    # nothing measurable unless |mean| / std exceeds ~1e5 (activations are nowhere near).
    n, c, hw = x.shape
    m = n * hw
    for ci in prange(c):
        total, squares = 0.0, 0.0
        for b in range(n):
            for t in range(hw):
                v = np.float64(x[b, ci, t])
                total += v
                squares += v * v
        mu = total / m
        mean[ci] = mu
        var[ci] = max(squares / m - mu * mu, 0.0)


# C values: NumPy's few in-place operations cost microseconds, nothing to compile
batch_norm_running_update = _reference.batch_norm_running_update


def batch_norm_stats(x):
    """Per-channel mean and biased variance of x (N, C) or (N, C, H, W)."""
    c = x.shape[1]
    mean, var = np.empty(c, dtype=x.dtype), np.empty(c, dtype=x.dtype)
    pick(_batch_norm_stats, x.size)(_as_nchw(x), mean, var)
    return mean, var


@njit(cache=CACHE, fastmath=FAST, inline="always")
def _batch_norm_affine(gamma, beta, mean, inv_std, ci):
    # y = a*x + d with a = gamma*inv_std, d = beta - a*mean: one multiply-add per value.
    # (In float32 this loses ~|mean|/std * 6e-8 of accuracy against gamma*xhat + beta:
    # nothing for activations, whose |mean|/std is small.) The forward and the fused ReLU's
    # mask in the backward both take a and d from here, so that they agree bit for bit.
    a = gamma[ci] * inv_std[ci]
    return a, beta[ci] - a * mean[ci]


@njit(cache=CACHE, fastmath=FAST, inline="always")
def _relu_masked(g, x, a, d, relu, zero):
    # g through the fused ReLU: kept where the forward's a*x + d was > 0
    return zero if relu and not a * x + d > 0 else g


@serial_and_parallel(fastmath=FAST)
def _batch_norm_forward(x, gamma, beta, mean, inv_std, relu, y):
    n, c, hw = x.shape
    for plane in prange(n * c):
        b, ci = plane // c, plane % c
        a, d = _batch_norm_affine(gamma, beta, mean, inv_std, ci)
        if relu:  # the fused ReLU: in this pass, not one more over y
            for t in range(hw):
                v = a * x[b, ci, t] + d
                y[b, ci, t] = 0 if v < 0 else v  # (a NaN passes, as in relu_forward)
        else:
            for t in range(hw):
                y[b, ci, t] = a * x[b, ci, t] + d


def batch_norm_forward(x, gamma, beta, mean, var, eps, relu=False):
    """y = gamma * xhat + beta, xhat = (x - mean) * inv_std, then max(y, 0) if relu.
    Returns y, inv_std."""
    inv_std = (1.0 / (var + eps) ** 0.5).astype(x.dtype, copy=False)
    x3 = _as_nchw(x)
    y = np.empty(x3.shape, x.dtype)
    pick(_batch_norm_forward, x.size)(x3, gamma, beta, mean.astype(x.dtype, copy=False), inv_std,
                                       bool(relu), y)
    return y.reshape(x.shape), inv_std


@serial_and_parallel(fastmath=FAST)
def _batch_norm_backward(gy, x, mean, gamma, inv_std, train, relu, beta, gx, ggamma, gbeta):
    # relu: the forward fused a ReLU, so gy counts only where the forward's a*x + d > 0
    # (recomputed here in both passes: no mask is kept, and x is read anyway)
    n, c, hw = gy.shape
    m = n * hw
    zero = gy.dtype.type(0)
    for ci in prange(c):
        mu, s = mean[ci], inv_std[ci]
        a, d = _batch_norm_affine(gamma, beta, mean, inv_std, ci)
        sum_gy, sum_gy_xhat = 0.0, 0.0  # float64 accumulators
        for b in range(n):
            for t in range(hw):
                g = _relu_masked(gy[b, ci, t], x[b, ci, t], a, d, relu, zero)
                sum_gy += g
                sum_gy_xhat += g * np.float64((x[b, ci, t] - mu) * s)
        gbeta[ci], ggamma[ci] = sum_gy, sum_gy_xhat
        if train:
            # gx = a / m * (m*gy - sum(gy) - xhat * sum(gy*xhat)) with a = gamma * inv_std,
            # xhat recomputed from x
            mean_gy, mean_gy_xhat = sum_gy / m, sum_gy_xhat / m
            for b in range(n):
                for t in range(hw):
                    g = _relu_masked(gy[b, ci, t], x[b, ci, t], a, d, relu, zero)
                    xhat = (x[b, ci, t] - mu) * s
                    gx[b, ci, t] = a * (g - mean_gy - xhat * mean_gy_xhat)
        else:
            for b in range(n):
                for t in range(hw):
                    gx[b, ci, t] = a * _relu_masked(gy[b, ci, t], x[b, ci, t], a, d, relu, zero)


def batch_norm_backward(gy, x, mean, gamma, inv_std, train, relu_beta=None):
    """Returns gx, ggamma, gbeta; see numpy_kernels.batch_norm_backward for the formula
    (relu_beta: the forward's beta, when it fused a ReLU)."""
    c = gy.shape[1]
    gy3 = _as_nchw(gy)
    gx = np.empty(gy3.shape, gy.dtype)
    ggamma, gbeta = np.empty(c, gy.dtype), np.empty(c, gy.dtype)
    relu = relu_beta is not None
    beta = relu_beta if relu else gamma  # (unread without relu; any array of the right type)
    pick(_batch_norm_backward, gy.size)(gy3, _as_nchw(x), mean.astype(gy.dtype, copy=False), gamma,
                                         inv_std, bool(train), relu, beta, gx, ggamma, gbeta)
    return gx.reshape(gy.shape), ggamma, gbeta


# -- ReLU ------------------------------------------------------------------------------------
@serial_and_parallel()
def _relu_forward(x, y):
    for i in prange(x.size):
        y[i] = 0 if x[i] < 0 else x[i]  # written so that a NaN passes through, as in NumPy


@serial_and_parallel()
def _relu_backward(gy, y, gx):
    for i in prange(gy.size):
        gx[i] = gy[i] if y[i] > 0 else 0


def relu_forward(x):
    """y = max(x, 0), one pass."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    pick(_relu_forward, x.size)(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(gy, y):
    """gx = gy where y > 0, else 0, one pass."""
    gy, y = np.ascontiguousarray(gy), np.ascontiguousarray(y)
    gx = np.empty_like(gy)
    pick(_relu_backward, gy.size)(gy.reshape(-1), y.reshape(-1), gx.reshape(-1))
    return gx


# -- softmax cross-entropy -------------------------------------------------------------------
# (N, K) logits with K = 7: microseconds of work, so these run on one thread.
@njit(cache=CACHE)
def _log_softmax(x, out):
    n, k = x.shape
    for i in range(n):
        top = x[i, 0]
        for j in range(1, k):
            top = max(top, x[i, j])
        total = 0.0
        for j in range(k):
            total += np.exp(x[i, j] - top)  # log-sum-exp: exp of values <= 0 never overflows
        log_total = np.log(total)
        for j in range(k):
            out[i, j] = x[i, j] - top - log_total


def log_softmax(x):
    """log(softmax(x)) along axis 1 of (N, K)."""
    out = np.empty(x.shape, x.dtype)
    _log_softmax(x, out)
    return out


@njit(cache=CACHE)
def _softmax_cross_entropy_forward(logits, labels, sample_weights, smoothing, probs):
    n, k = logits.shape
    _log_softmax(logits, probs)  # log p, turned into p below
    loss, weight_sum = 0.0, 0.0
    for i in range(n):
        cross_entropy = 0.0
        for j in range(k):
            q = smoothing / k + (1.0 - smoothing if j == labels[i] else 0.0)
            cross_entropy -= q * probs[i, j]
            probs[i, j] = np.exp(probs[i, j])
        loss += sample_weights[i] * cross_entropy
        weight_sum += sample_weights[i]
    return loss / weight_sum


def softmax_cross_entropy_forward(logits, labels, sample_weights, smoothing):
    """Weighted mean cross-entropy. Returns (loss (), probs (N, K))."""
    probs = np.empty(logits.shape, logits.dtype)
    loss = _softmax_cross_entropy_forward(logits, labels, sample_weights, float(smoothing), probs)
    return np.asarray(loss, dtype=logits.dtype), probs


@njit(cache=CACHE)
def _softmax_cross_entropy_backward(probs, labels, sample_weights, smoothing, gloss, glogits):
    n, k = probs.shape
    weight_sum = 0.0
    for i in range(n):
        weight_sum += sample_weights[i]
    for i in range(n):
        w = gloss * sample_weights[i] / weight_sum
        for j in range(k):
            q = smoothing / k + (1.0 - smoothing if j == labels[i] else 0.0)
            glogits[i, j] = w * (probs[i, j] - q)


def softmax_cross_entropy_backward(gloss, probs, labels, sample_weights, smoothing):
    """dloss/dlogits = gloss * w_i / sum(w) * (p_i - q_i)."""
    glogits = np.empty(probs.shape, probs.dtype)
    _softmax_cross_entropy_backward(probs, labels, sample_weights, float(smoothing),
                                    float(gloss), glogits)
    return glogits


# -- dropout ---------------------------------------------------------------------------------
@serial_and_parallel()
def _threshold_and_scale(u, p, keep_scale):
    for i in prange(u.size):
        u[i] = keep_scale if u[i] >= p else 0.0


def dropout_mask(shape, p, dtype, like):
    """Inverted-dropout mask: 0 with probability p, else 1/(1-p). The uniforms come from
    nnlite.random exactly as in NumPy, so a seed gives the same mask on both backends."""
    u = nnrandom.uniform(shape, like)
    flat = u.reshape(-1)
    pick(_threshold_and_scale, flat.size)(flat, _scalar(p, u), _scalar(1.0 / (1.0 - p), u))
    return u.astype(dtype, copy=False)


# -- optimizer updates (in place) ------------------------------------------------------------
@serial_and_parallel(fastmath=FAST)
def _sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        v = momentum * velocity[i] + g
        velocity[i] = v
        param[i] -= lr * (g + momentum * v if nesterov else v)


def _flat_views(*arrays):
    """Flat views of arrays updated in place, or None if one is not contiguous."""
    if not all(a.flags.c_contiguous for a in arrays):
        return None
    return [a.reshape(-1) for a in arrays]


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """Momentum SGD (PyTorch's form), in place; see numpy_kernels.sgd_update."""
    flat = _flat_views(param, velocity)
    if flat is None:
        return _reference.sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov)
    pick(_sgd_update, param.size)(flat[0], np.ascontiguousarray(grad).reshape(-1), flat[1], _scalar(lr, param),
                _scalar(momentum, param), _scalar(weight_decay, param), bool(nesterov))


@serial_and_parallel(fastmath=FAST, error_model="numpy")
def _adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, m_scale, v_scale):
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * g * g
        param[i] -= lr * (m[i] * m_scale) / (np.sqrt(v[i] * v_scale) + eps)


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """Adam with bias correction, in place; see numpy_kernels.adam_update."""
    flat = _flat_views(param, m, v)
    if flat is None:
        return _reference.adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step)
    s = lambda value: _scalar(value, param)  # noqa: E731
    pick(_adam_update, param.size)(flat[0], np.ascontiguousarray(grad).reshape(-1), flat[1], flat[2], s(lr),
                 s(beta1), s(beta2), s(eps), s(weight_decay), s(1.0 / (1.0 - beta1**step)),
                 s(1.0 / (1.0 - beta2**step)))
