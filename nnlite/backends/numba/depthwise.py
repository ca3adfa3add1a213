"""Numba kernels for the depthwise convolution (groups == channels), computed directly.

kernels.grouped_conv2d_forward/backward call these when every group holds one input
channel; other group counts run the dense convolution group by group, as NumPy does.

Why direct and not im2col + GEMM: a depthwise 3x3 filter has 9 weights, so each output is
9 multiply-adds over data that im2col would first copy 9 times. The GEMM would be (M, 9) @
(9, P) per channel: far too thin to gain from BLAS, and the copy alone costs more than the
arithmetic. So the work is bound by memory traffic, and the kernel that reads x once per
filter tap (from cache: a 48x48 plane is 9 KB) and writes y in place is the fast one.

    depthwise_forward    one (image, output channel) plane per task, the plane copied once
                         into a zero-padded buffer: at stride 1, for each filter tap (u, v),
                         one long run of outputs += w[u, v] * the buffer shifted by the tap,
                         over the flattened rows (so that 6-wide rows still vectorize; the
                         few outputs that fall in the padding columns are dropped); at
                         stride 2, row by row, reading every other input
    depthwise_grad_input one (image, input channel) plane per task: the same shifted runs,
                         added into gx from each of the channel's OC/C filters (gy laid out
                         wide, zeros between its rows); a thread owns its plane, so there are
                         no races
    depthwise_grad_weight one output channel per task, summing over the batch: a dot product
                         per tap over the same runs; each task owns its 9 weights, so again
                         no races and no atomics

Layout: x (N, C, H, W), W (OC, 1, KH, KW) with OC = M*C (M filters per channel: output
channel o reads input channel o // M), y (N, OC, OH, OW), as everywhere in nnlite.
"""

import numpy as np
from numba import njit, prange

from nnlite.backends.numba.compile import CACHE, FAST, pick, serial_and_parallel


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
    # Stride 1: "wide" outputs, one per pixel of the padded plane's rows. Output (i, j) and
    # its tap (u, v) read the padded plane at flat index (i + u)*PW + (j + v) = k + offset,
    # with k = i*PW + j and offset = u*PW + v: one long loop over k per tap, whose PW - OW
    # extra outputs per row are computed and dropped. On a 6x6 or 12x12 map a row of OW is
    # too short to vectorize; the flat run of (OH-1)*PW + OW is not (2x faster, measured).
    length = (oh - 1) * pw + ow
    for task in prange(n * oc):
        b, o = task // oc, task % oc
        buf = np.empty((ph, pw), dtype=x.dtype)
        _padded(x[b, o // m], pt, pl, buf)
        if sh == 1 and sw == 1:
            flat = buf.reshape(ph * pw)
            wide = np.zeros(length, dtype=x.dtype)
            for u in range(kh):
                for v in range(kw):
                    weight, offset = W[o, 0, u, v], u * pw + v
                    for k in range(length):
                        wide[k] += weight * flat[k + offset]
            for i in range(oh):
                for j in range(ow):
                    y[b, o, i, j] = wide[i * pw + j]
            continue
        for i in range(oh):  # stride 2: row by row, every other input
            for j in range(ow):
                y[b, o, i, j] = 0
            for u in range(kh):
                for v in range(kw):
                    weight, r = W[o, 0, u, v], i * sh + u
                    for j in range(ow):
                        y[b, o, i, j] += weight * buf[r, j * sw + v]


@njit(cache=CACHE, inline="always")
def _widened(plane, pw, wide):
    # A gradient plane (OH, OW) in the forward's wide layout: row i at i*PW, the PW - OW
    # outputs between rows zero, so that they add nothing in the adjoint's long runs.
    wide[:] = 0
    oh, ow = plane.shape
    for i in range(oh):
        for j in range(ow):
            wide[i * pw + j] = plane[i, j]


@serial_and_parallel(fastmath=FAST)
def _depthwise_grad_input(gy, W, sh, sw, pt, pl, ph, pw, gx):
    # The forward's adjoint: every gy[i, j] * W[u, v] goes back to the padded input position
    # it was read from; the padding is then cut away. At stride 1 over the wide layout, as
    # the forward runs.
    n, c, h, w = gx.shape
    oc, _, kh, kw = W.shape
    m, oh, ow = oc // c, gy.shape[2], gy.shape[3]
    length = (oh - 1) * pw + ow
    for task in prange(n * c):
        b, ci = task // c, task % c
        buf = np.zeros((ph, pw), dtype=gx.dtype)
        flat, wide = buf.reshape(ph * pw), np.empty(length, dtype=gx.dtype)
        for o in range(ci * m, (ci + 1) * m):
            if sh == 1 and sw == 1:
                _widened(gy[b, o], pw, wide)
                for u in range(kh):
                    for v in range(kw):
                        weight, offset = W[o, 0, u, v], u * pw + v
                        for k in range(length):
                            flat[k + offset] += weight * wide[k]
                continue
            for i in range(oh):
                for u in range(kh):
                    for v in range(kw):
                        weight, r = W[o, 0, u, v], i * sh + u
                        for j in range(ow):
                            buf[r, j * sw + v] += weight * gy[b, o, i, j]
        for r in range(h):
            for s in range(w):
                gx[b, ci, r, s] = buf[r + pt, s + pl]


@serial_and_parallel(fastmath=FAST)
def _depthwise_grad_weight(gy, x, sh, sw, pt, pl, ph, pw, gW):
    # gW[o, u, v] = sum over images and outputs of gy * the input it multiplied: a dot
    # product per filter tap, one output channel per task (the task owns its weights). At
    # stride 1, one long dot product per tap and image over the wide layout; otherwise the
    # products are summed into a row of partial sums, added up once per tap at the end (a
    # single running total would need a horizontal vector sum after every short row).
    n, c = x.shape[:2]
    oc, _, kh, kw = gW.shape
    m, oh, ow = oc // c, gy.shape[2], gy.shape[3]
    length = (oh - 1) * pw + ow
    for o in prange(oc):
        buf = np.empty((ph, pw), dtype=x.dtype)
        flat, wide = buf.reshape(ph * pw), np.empty(length, dtype=x.dtype)
        partial = np.zeros((kh, kw, ow), dtype=gW.dtype)
        zero = partial[0, 0, 0]  # a 0 of gW's dtype: a float32 sum stays float32
        for b in range(n):
            _padded(x[b, o // m], pt, pl, buf)
            if sh == 1 and sw == 1:
                _widened(gy[b, o], pw, wide)
                for u in range(kh):
                    for v in range(kw):
                        offset, total = u * pw + v, zero
                        for k in range(length):
                            total += wide[k] * flat[k + offset]
                        partial[u, v, 0] += total
                continue
            for i in range(oh):
                for u in range(kh):
                    r = i * sh + u
                    for v in range(kw):
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
