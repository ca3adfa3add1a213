"""Numba kernels for the depthwise convolution (groups == channels), computed directly.

numba_kernels.grouped_conv2d_forward/backward call these when every group holds one input
channel; other group counts run the dense convolution group by group, as NumPy does.

Why direct and not im2col + GEMM: a depthwise 3x3 filter has 9 weights, so each output is
9 multiply-adds over data that im2col would first copy 9 times. The GEMM would be (M, 9) @
(9, P) per channel: far too thin to gain from BLAS, and the copy alone costs more than the
arithmetic. So the work is bound by memory traffic, and the kernel that reads x once per
filter tap (from cache: a 48x48 plane is 9 KB) and writes y in place is the fast one.

    depthwise_forward    one (image, output channel) plane per task: for each filter tap
                         (u, v), y's valid rows/columns += w[u, v] * the shifted input row;
                         the valid ranges are worked out once per tap, so the inner loop has
                         no bounds test and vectorizes (stride 1; stride 2 reads every other
                         input)
    depthwise_grad_input one (image, input channel) plane per task: the same shifted rows,
                         added into gx from each of the channel's OC/C filters; a thread owns
                         its plane, so there are no races
    depthwise_grad_weight one output channel per task, summing over the batch: each task owns
                         its 9 weights, so again no races and no atomics

Layout: x (N, C, H, W), W (OC, 1, KH, KW) with OC = M*C (M filters per channel: output
channel o reads input channel o // M), y (N, OC, OH, OW), as everywhere in nnlite.
"""

import numpy as np
from numba import njit, prange

from nnlite.backends.numba_compile import CACHE, FAST, pick, serial_and_parallel


@njit(cache=CACHE, inline="always")
def _padded(plane, pt, pl, buf):
    # The input plane copied into a zeroed buffer with the padding around it: the loops
    # below then read buf[i*SH + u, j*SW + v] with no bounds test, and the j loop vectorizes.
    # (Testing the bounds in the loop, or ranges per filter tap, ran 3-4x slower, measured.)
    buf[:] = 0
    h, w = plane.shape
    for r in range(h):
        for s in range(w):
            buf[r + pt, s + pl] = plane[r, s]


@serial_and_parallel(fastmath=FAST)
def _depthwise_forward(x, W, sh, sw, pt, pl, ph, pw, y):
    n, c = x.shape[:2]
    oc, _, kh, kw = W.shape
    m, oh, ow = oc // c, y.shape[2], y.shape[3]
    for task in prange(n * oc):
        b, o = task // oc, task % oc
        buf = np.empty((ph, pw), dtype=x.dtype)
        _padded(x[b, o // m], pt, pl, buf)
        for i in range(oh):
            for j in range(ow):
                y[b, o, i, j] = 0
            for u in range(kh):
                for v in range(kw):
                    weight, r = W[o, 0, u, v], i * sh + u
                    if sw == 1:  # written apart: a unit stride is what LLVM vectorizes
                        for j in range(ow):
                            y[b, o, i, j] += weight * buf[r, j + v]
                    else:
                        for j in range(ow):
                            y[b, o, i, j] += weight * buf[r, j * sw + v]


@serial_and_parallel(fastmath=FAST)
def _depthwise_grad_input(gy, W, sh, sw, pt, pl, ph, pw, gx):
    # The forward's adjoint: every gy[i, j] * W[u, v] goes back to the padded input position
    # it was read from; the padding is then cut away.
    n, c, h, w = gx.shape
    oc, _, kh, kw = W.shape
    m, oh, ow = oc // c, gy.shape[2], gy.shape[3]
    for task in prange(n * c):
        b, ci = task // c, task % c
        buf = np.zeros((ph, pw), dtype=gx.dtype)
        for o in range(ci * m, (ci + 1) * m):
            for i in range(oh):
                for u in range(kh):
                    for v in range(kw):
                        weight, r = W[o, 0, u, v], i * sh + u
                        if sw == 1:
                            for j in range(ow):
                                buf[r, j + v] += weight * gy[b, o, i, j]
                        else:
                            for j in range(ow):
                                buf[r, j * sw + v] += weight * gy[b, o, i, j]
        for r in range(h):
            for s in range(w):
                gx[b, ci, r, s] = buf[r + pt, s + pl]


@serial_and_parallel(fastmath=FAST)
def _depthwise_grad_weight(gy, x, sh, sw, pt, pl, ph, pw, gW):
    # gW[o, u, v] = sum over images and outputs of gy * the input it multiplied: a dot
    # product per filter tap, one output channel per task (the task owns its weights). The
    # products are summed into a row of partial sums, added up once per tap at the end: a
    # single running total would need a horizontal vector sum after every short row.
    n, c = x.shape[:2]
    oc, _, kh, kw = gW.shape
    m, oh, ow = oc // c, gy.shape[2], gy.shape[3]
    for o in prange(oc):
        buf = np.empty((ph, pw), dtype=x.dtype)
        partial = np.zeros((kh, kw, ow), dtype=gW.dtype)
        for b in range(n):
            _padded(x[b, o // m], pt, pl, buf)
            for i in range(oh):
                for u in range(kh):
                    r = i * sh + u
                    for v in range(kw):
                        if sw == 1:
                            for j in range(ow):
                                partial[u, v, j] += gy[b, o, i, j] * buf[r, j + v]
                        else:
                            for j in range(ow):
                                partial[u, v, j] += gy[b, o, i, j] * buf[r, j * sw + v]
        for u in range(kh):
            for v in range(kw):
                gW[o, 0, u, v] = partial[u, v].sum()


def _buffer_shape(h, w, oh, ow, kh, kw, stride, pad):
    # Room for every position a filter tap reads, and for the whole input at its offset.
    (sh, sw), (pt, _, pl, _) = stride, pad
    return max((oh - 1) * sh + kh, pt + h), max((ow - 1) * sw + kw, pl + w)


def depthwise_forward(x, W, stride, pad, y):
    (sh, sw), (pt, _, pl, _) = stride, pad
    ph, pw = _buffer_shape(*x.shape[2:], *y.shape[2:], *W.shape[2:], stride, pad)
    pick(_depthwise_forward, y.size * W.shape[2] * W.shape[3])(x, W, sh, sw, pt, pl, ph, pw, y)


def depthwise_grad_input(gy, W, stride, pad, gx):
    (sh, sw), (pt, _, pl, _) = stride, pad
    ph, pw = _buffer_shape(*gx.shape[2:], *gy.shape[2:], *W.shape[2:], stride, pad)
    pick(_depthwise_grad_input, gy.size * W.shape[2] * W.shape[3])(
        gy, W, sh, sw, pt, pl, ph, pw, gx)


def depthwise_grad_weight(gy, x, stride, pad, gW):
    (sh, sw), (pt, _, pl, _) = stride, pad
    ph, pw = _buffer_shape(*x.shape[2:], *gy.shape[2:], *gW.shape[2:], stride, pad)
    pick(_depthwise_grad_weight, gy.size * gW.shape[2] * gW.shape[3])(
        gy, x, sh, sw, pt, pl, ph, pw, gW)
