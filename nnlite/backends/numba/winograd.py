"""The Numba backend's convolution for 3x3 stride-1 'same' layers: Winograd's F(2x2, 3x3).

kernels.conv2d_forward and conv2d_backward send a layer here when `winograd_applies`
says so (the names keep their underscore: these are the Numba backend's own entry points, not
kernels that every backend has). The result is the NumPy specification's up to rounding, and
the parity tests hold it to that like every other kernel.

How it is organised, and why:

    winograd_forward    each thread draws a chunk of images from a shared queue, transforms
                         it into V, runs the 16 GEMMs U @ V with a single-threaded BLAS (Python
                         threads around nogil kernels, as the im2col convolution does; see
                         pool) and transforms M back into y; a chunk's buffers fit in a
                         core's cache. For fewer images than threads (batch 1) it all runs in
                         the calling thread.
    winograd_backward   the same chunks, each transformed again (cheaper than keeping V from
                         the forward): gU^T = V gM^T summed per fixed run of chunks, so the
                         weight gradient has the same bits however the threads took them, and
                         gx = B (U^T gM) B^T
    _winograd_filters_*  the filters' transform G g G^T and its adjoint: loops, not BLAS (a GEMM
                         outside the threads leaves BLAS's workers spinning on their cores); the
                         adjoint on the threads by input channel for large layers
    _winograd_input/     the transforms, written so that LLVM vectorizes them: flat loops over
    _output/_grad_*      the tiles of a plane, each padded row transformed once

Where it applies (`winograd_applies`) is measured: see benchmarks/RESULTS.md, "Why the Numba
thresholds are what they are".

The maths. A 3x3 convolution costs 9 multiply-adds per output pixel and input channel.
Winograd's algorithm (Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural Networks";
cuDNN and oneDNN both implement it) computes a 2x2 tile of outputs from the 4x4 input patch d
that covers it with 16 multiplications instead of 36:

    y = A^T [ (G g G^T) * (B^T d B) ] A        g the 3x3 filter, * elementwise (4x4)

    B^T = [1  0 -1  0]      G = [ 1    0    0 ]      A^T = [1  1  1  0]
          [0  1  1  0]          [1/2  1/2  1/2]            [0  1 -1 -1]
          [0 -1  1  0]          [1/2 -1/2  1/2]
          [0  1  0 -1]          [ 0    0    1 ]

The transforms are linear, so the sum over input channels can be taken between them: for
each of the 16 positions xi = 4a + s (row a, column s) of the 4x4, one GEMM over the channels,
    M[xi] (K, T) = U[xi] (K, C) @ V[xi] (C, T),   U = G g G^T per filter, V = B^T d B per tile,
that is 16 GEMMs of K x C x T where im2col runs one of K x 9C x 4T: 2.25x fewer multiply-adds,
and the transforms in between are additions only. The backward pass is the adjoint of each
linear step, in reverse:
    gM = A gy A^T  ->  gV = U^T gM  ->  gx = B gV B^T (overlapping patches added up)
                       gU = gM V^T  ->  gW = G^T gU G
Rounding: ~1e-6 of the largest output in float32 (measured), the order of the GEMM's own.
Non-finite inputs: an inf can turn into NaN in the outputs of its own tile, where im2col
gives inf, because the transforms subtract neighbouring values.
"""

import numba
import numpy as np
from numba import njit

from nnlite import blas
from nnlite.backends.numba import pool
from nnlite.backends.numba.compile import CACHE

# Where the transforms cost more than the multiplications they save, im2col stays: the
# 1-channel input layer, and maps under 6 x 6 (level with im2col at 3 x 3).
WINOGRAD_MIN_PIXELS = 36
WINOGRAD_MIN_CHANNELS = 16
# The filters' transform is paid once per call, so it pays when there are enough output tiles
# to share it: on the threads from 4 images on; for fewer images than threads (batch 1, the
# live demo) in the calling thread, from 144 output pixels on (12 x 12), and only when BLAS runs
# on one thread, as the face pipeline has it (with more, im2col's one big GEMM uses them all,
# where Winograd's 16 small ones do not).
WINOGRAD_MIN_IMAGES = 4
WINOGRAD_MIN_SMALL_BATCH_PIXELS = 144
WINOGRAD_CHUNK_BYTES = 1 << 20  # per thread, for its V and M (V, gV, gM); 0.5, 2 MiB were slower
# From this many filters (K * C) on, the backward's last step (the weight gradient: the blocks'
# sum, then G^T gU G) is spread over the threads; below it, one thread does it in ~0.5 ms or less.
WINOGRAD_FILTERS_MIN_THREADED = 8192


def winograd_applies(x, W, stride, pad):
    n, _, h, w = x.shape
    if not (x.dtype.kind == "f"  # the transforms halve: integers would round
            and W.shape[2:] == (3, 3) and tuple(stride) == (1, 1) and tuple(pad) == (1, 1, 1, 1)
            and W.shape[1] >= WINOGRAD_MIN_CHANNELS and h * w >= WINOGRAD_MIN_PIXELS):
        return False
    threads = numba.get_num_threads()  # asked only now: it costs microseconds (a lock)
    return (n >= max(threads, WINOGRAD_MIN_IMAGES)  # on the threads
            or (n < threads  # in the calling thread
                and n * h * w >= WINOGRAD_MIN_SMALL_BATCH_PIXELS
                and blas.numpy_blas_threads() == 1))


@njit(nogil=True, cache=CACHE, inline="always")
def _g_times(v0, v1, v2, half):
    # G v for a column v of 3 (G's rows: 1 0 0 / 1/2 1/2 1/2 / 1/2 -1/2 1/2 / 0 0 1); half is
    # 0.5 in the arrays' dtype (a Python 0.5 would turn float32 arithmetic into float64)
    return v0, (v0 + v1 + v2) * half, (v0 - v1 + v2) * half, v2


@njit(nogil=True, cache=CACHE, inline="always")
def _gt_times(u0, u1, u2, u3, half):
    # G^T u for a column u of 4: the adjoint of _g_times
    return u0 + (u1 + u2) * half, (u1 - u2) * half, (u1 + u2) * half + u3


@njit(nogil=True, cache=CACHE)
def _winograd_filters_kernel(W, U):
    # U[4a+s, k, c] = (G g G^T)[a, s] for every filter g = W[k, c]: U (16, K, C), C-ordered
    # (the backward gets U^T by passing W's transpose). A loop, not BLAS: a GEMM here, outside
    # the convolution's threads, left BLAS's workers spinning on the cores the threads then
    # needed (the training step took longer).
    # A row of K's filters goes through `rows` (16, C) before U: writing each filter's 16
    # values straight into U's 16 planes, whose distance is a power of two for these layer
    # sizes, sent all 16 stores to the same cache set, which holds 8 lines, so nearly every
    # store missed. Through `rows`, which stays in the cache, then one plane at a time: 5-8x
    # faster, same bits.
    half = W.dtype.type(0.5)
    rows = np.empty((16, W.shape[1]), dtype=U.dtype)
    for k in range(W.shape[0]):
        for c in range(W.shape[1]):
            g = W[k, c]
            c0 = _g_times(g[0, 0], g[1, 0], g[2, 0], half)  # G g, column by column
            c1 = _g_times(g[0, 1], g[1, 1], g[2, 1], half)
            c2 = _g_times(g[0, 2], g[1, 2], g[2, 2], half)
            # (G g) G^T, row by row
            rows[0, c], rows[1, c], rows[2, c], rows[3, c] = _g_times(c0[0], c1[0], c2[0], half)
            rows[4, c], rows[5, c], rows[6, c], rows[7, c] = _g_times(c0[1], c1[1], c2[1], half)
            rows[8, c], rows[9, c], rows[10, c], rows[11, c] = _g_times(c0[2], c1[2], c2[2], half)
            rows[12, c], rows[13, c], rows[14, c], rows[15, c] = _g_times(c0[3], c1[3], c2[3],
                                                                          half)
        for p in range(16):
            U[p, k, :] = rows[p]


@njit(nogil=True, cache=CACHE)
def _winograd_filters_backward_kernel(gUT, c0, c1, channel_sum, gW):
    # gW[k, c] = G^T gU[:, k, c] G, the adjoint of _winograd_filters_kernel, for the input
    # channels c0..c1-1, where gU^T is the sum of the blocks' gUT (blocks, 16, C, K), added in
    # block order whichever thread runs this. Scratch: channel_sum (16, K), gU[:, :, c].
    half = gW.dtype.type(0.5)
    for c in range(c0, c1):
        channel_sum[:, :] = gUT[0, :, c, :]
        for i in range(1, gUT.shape[0]):
            for xi in range(16):
                for k in range(channel_sum.shape[1]):
                    channel_sum[xi, k] += gUT[i, xi, c, k]
        for k in range(gW.shape[0]):
            u = channel_sum[:, k]
            r0 = _gt_times(u[0], u[1], u[2], u[3], half)  # gU G, row by row
            r1 = _gt_times(u[4], u[5], u[6], u[7], half)
            r2 = _gt_times(u[8], u[9], u[10], u[11], half)
            r3 = _gt_times(u[12], u[13], u[14], u[15], half)
            g = gW[k, c]
            g[0, 0], g[1, 0], g[2, 0] = _gt_times(r0[0], r1[0], r2[0], r3[0], half)  # G^T (gU G)
            g[0, 1], g[1, 1], g[2, 1] = _gt_times(r0[1], r1[1], r2[1], r3[1], half)
            g[0, 2], g[1, 2], g[2, 2] = _gt_times(r0[2], r1[2], r2[2], r3[2], half)


def _winograd_filters_backward(gUT, W_shape, threads):
    """gW (K, C, 3, 3) = G^T gU G, the adjoint of the filters' transform, where gU is the sum
    of the blocks' partial sums gUT (blocks, 16, C, K). On the threads, by input channel, for
    WINOGRAD_FILTERS_MIN_THREADED filters or more: done in one thread after the rest (as
    gUT.sum(axis=0)), it took a quarter of the compact net's last backward."""
    k, c = W_shape[0], W_shape[1]
    gW = np.empty(W_shape, dtype=gUT.dtype)
    if threads == 1 or k * c < WINOGRAD_FILTERS_MIN_THREADED:
        _winograd_filters_backward_kernel(gUT, 0, c, np.empty((16, k), dtype=gUT.dtype), gW)
        return gW
    step = -(-c // (4 * threads))  # a few runs of channels per thread, for the queue to even out
    channels = pool.Shared((c0, min(c, c0 + step)) for c0 in range(0, c, step))

    def work(t):
        channel_sum = np.empty((16, k), dtype=gUT.dtype)  # this thread's scratch
        for c0, c1 in channels:
            _winograd_filters_backward_kernel(gUT, c0, c1, channel_sum, gW)

    pool.run_on_threads(work, threads)
    return gW


@njit(nogil=True, cache=CACHE)
def _winograd_input(x, b0, b1, E, Q, V):
    # Images b0..b1-1 of x (N, C, H, W) -> V (16, C, chunk, TH*TW): V[4a+s, c, b, t] =
    # (B^T d B)[a, s] for the 4x4 patch d of tile t = TW*i + j, image rows 2i-1..2i+2 and
    # columns 2j-1..2j+2 (zero outside). Scratch: E (2, TW+1), and Q (4, 2, TH+1, TW) for the
    # column half of the transform, d B, computed once per padded row p: Q[s, p & 1, p >> 1, j]
    # = (d B)[r, s] for the patch of tile (i, j) whose row r is padded row p (p = 2i + r). Row
    # r = 0 or 1 of tile row i is then Q[s, r, i], and row r = 2 or 3 is Q[s, r - 2, i + 1]:
    # one tile row further in the same array, so that the row half reads both with flat loops.
    # (This layout computes each padded row once where a per-tile-row one did it twice; with
    # the pairwise copy below the transform takes half its former time, same bits.)
    n, c, h, w = x.shape
    th, tw = Q.shape[2] - 1, Q.shape[3]
    nt = th * tw
    Qf = Q.reshape(4, 2, (th + 1) * tw)
    # E[0, j] is padded column 2j (image column 2j - 1), E[1, j] padded column 2j + 1 (image
    # column 2j): the row's even and odd padded columns apart, so that the column half below
    # reads contiguous memory
    half = w // 2
    zero = x.dtype.type(0)
    for b in range(b0, b1):
        bl = b - b0  # the image's place in the chunk
        for ci in range(c):
            for p in range(2 * th + 2):
                y = p - 1  # padded row p is image row p - 1
                if 0 <= y < h:
                    row = x[b, ci, y]
                    E[0, 0] = zero
                    # Both columns of a pair in one iteration: LLVM then loads whole vectors
                    # and shuffles them apart, where a loop per column ran as scalar code
                    for j in range(half):
                        even, odd = row[2 * j], row[2 * j + 1]
                        E[1, j] = even
                        E[0, j + 1] = odd
                    if w & 1:  # the last column has no pair
                        E[1, half] = row[w - 1]
                        E[0, tw] = zero
                    E[1, tw] = zero
                else:
                    E[:, :] = zero
                parity, i = p & 1, p >> 1
                for j in range(tw):
                    Q[0, parity, i, j] = E[0, j] - E[0, j + 1]
                for j in range(tw):
                    Q[1, parity, i, j] = E[1, j] + E[0, j + 1]
                for j in range(tw):
                    Q[2, parity, i, j] = E[0, j + 1] - E[1, j]
                for j in range(tw):
                    Q[3, parity, i, j] = E[1, j] - E[1, j + 1]
            # The row half, B^T (d B), for every tile at once: flat loops that LLVM vectorizes
            # (a loop per output row, each index a plain counter: 3x faster than one loop over
            # tiles writing all 16). Rows 2 and 3 are read through 1-D views that start a tile
            # row on, not as Qf[s, 0, m + tw]: with that offset the whole transform took 2.3x
            # as long.
            for s in range(4):
                r0, r1 = Qf[s, 0], Qf[s, 1]  # patch rows 0 and 1 of every tile
                r2, r3 = Qf[s, 0][tw:], Qf[s, 1][tw:]  # rows 2 and 3: one tile row on
                for m in range(nt):
                    V[s, ci, bl, m] = r0[m] - r2[m]
                for m in range(nt):
                    V[4 + s, ci, bl, m] = r1[m] + r2[m]
                for m in range(nt):
                    V[8 + s, ci, bl, m] = r2[m] - r1[m]
                for m in range(nt):
                    V[12 + s, ci, bl, m] = r1[m] - r3[m]


@njit(nogil=True, cache=CACHE)
def _winograd_output(M, b0, b1, S, y):
    # M (16, K, chunk, TH*TW) -> images b0..b1-1 of y (N, K, H, W), each 2x2 tile A^T m A.
    # Scratch: S (2, 4, TH, TW), the row half A^T m (tile rows 0 and 1).
    n, k, h, w = y.shape
    th, tw = S.shape[2], S.shape[3]
    nt = th * tw
    Sf = S.reshape(2, 4, nt)
    for b in range(b0, b1):
        bl = b - b0  # the image's place in the chunk
        for ki in range(k):
            for s in range(4):
                for m in range(nt):
                    Sf[0, s, m] = M[s, ki, bl, m] + M[4 + s, ki, bl, m] + M[8 + s, ki, bl, m]
                for m in range(nt):
                    Sf[1, s, m] = M[4 + s, ki, bl, m] - M[8 + s, ki, bl, m] - M[12 + s, ki, bl, m]
            for yy in range(h):
                tr, i = yy & 1, yy >> 1  # row tr of tile row i
                for j in range(w // 2):
                    y[b, ki, yy, 2 * j] = S[tr, 0, i, j] + S[tr, 1, i, j] + S[tr, 2, i, j]
                    y[b, ki, yy, 2 * j + 1] = S[tr, 1, i, j] - S[tr, 2, i, j] - S[tr, 3, i, j]
                if w & 1:  # an odd width: the last tile's second column falls outside
                    j = tw - 1
                    y[b, ki, yy, w - 1] = S[tr, 0, i, j] + S[tr, 1, i, j] + S[tr, 2, i, j]


@njit(nogil=True, cache=CACHE)
def _winograd_grad_output(gy, b0, b1, S, gM):
    # The adjoint of _winograd_output: gM[:, k, b, t] = A g A^T for each 2x2 tile g of gy
    # (zero outside the image). Scratch: S (2, 4, TH, TW), the column half g A^T.
    n, k, h, w = gy.shape
    th, tw = S.shape[2], S.shape[3]
    nt = th * tw
    Sf = S.reshape(2, 4, nt)
    for b in range(b0, b1):
        bl = b - b0  # the image's place in the chunk
        for ki in range(k):
            for yy in range(2 * th):
                tr, i = yy & 1, yy >> 1  # row tr of tile row i
                if yy >= h:
                    S[tr, :, i, :] = 0
                    continue
                for j in range(w // 2):
                    g0, g1 = gy[b, ki, yy, 2 * j], gy[b, ki, yy, 2 * j + 1]
                    S[tr, 0, i, j] = g0
                    S[tr, 1, i, j] = g0 + g1
                    S[tr, 2, i, j] = g0 - g1
                    S[tr, 3, i, j] = -g1
                if w & 1:
                    g0 = gy[b, ki, yy, w - 1]
                    S[tr, 0, i, tw - 1] = g0
                    S[tr, 1, i, tw - 1] = g0
                    S[tr, 2, i, tw - 1] = g0
                    S[tr, 3, i, tw - 1] = 0
            for s in range(4):
                for m in range(nt):
                    gM[s, ki, bl, m] = Sf[0, s, m]
                for m in range(nt):
                    gM[4 + s, ki, bl, m] = Sf[0, s, m] + Sf[1, s, m]
                for m in range(nt):
                    gM[8 + s, ki, bl, m] = Sf[0, s, m] - Sf[1, s, m]
                for m in range(nt):
                    gM[12 + s, ki, bl, m] = -Sf[1, s, m]


@njit(nogil=True, cache=CACHE)
def _winograd_grad_input(gV, b0, b1, Q, gx):
    # The adjoint of _winograd_input: images b0..b1-1 of gx = the patches B gV B^T, added up
    # where neighbouring tiles overlap (each image pixel lies in up to 2x2 patches). Written as
    # a gather, so each pixel is written once. Scratch: Q (4, 2, TH+1, TW), laid out as in
    # _winograd_input: Q[s, p & 1, p >> 1, j] is the sum, over the two patches that hold padded
    # row p, of (B gV)[r, s] for their row r that is p: faster than summing the two rows for
    # every pixel, and the same bits (the two rows are added in the same order).
    n, c, h, w = gx.shape
    th, tw = Q.shape[2] - 1, Q.shape[3]
    nt = th * tw
    Qf = Q.reshape(4, 2, (th + 1) * tw)
    zero = gx.dtype.type(0)
    for b in range(b0, b1):
        bl = b - b0  # the image's place in the chunk
        for ci in range(c):
            # The row half, B gV (the adjoint of the flat loops in _winograd_input): rows 0 and
            # 1 of every patch are written, then rows 2 and 3, one tile row on, added to them.
            for s in range(4):
                r0, r1 = Qf[s, 0], Qf[s, 1]
                r2, r3 = Qf[s, 0][tw:], Qf[s, 1][tw:]
                for m in range(nt):
                    r0[m] = gV[s, ci, bl, m]
                for m in range(nt, nt + tw):
                    r0[m] = zero  # tile row TH: only the last tile row's rows 2 and 3 reach it
                for m in range(nt):
                    r1[m] = gV[4 + s, ci, bl, m] - gV[8 + s, ci, bl, m] + gV[12 + s, ci, bl, m]
                for m in range(nt, nt + tw):
                    r1[m] = zero
                for m in range(nt):
                    r2[m] += gV[4 + s, ci, bl, m] + gV[8 + s, ci, bl, m] - gV[s, ci, bl, m]
                for m in range(nt):
                    r3[m] -= gV[12 + s, ci, bl, m]
            # The column half, (B gV) B^T, summed per pixel: image row yy is padded row yy + 1;
            # image column 2j is column 1 of tile j and column 3 of tile j - 1, image column
            # 2j + 1 is column 2 of tile j and column 0 of tile j + 1.
            for yy in range(h):
                parity, i = (yy + 1) & 1, (yy + 1) >> 1
                d0, d1, d2, d3 = Q[0, parity, i], Q[1, parity, i], Q[2, parity, i], Q[3, parity, i]
                for j in range(tw):
                    left3 = d3[j - 1] if j > 0 else zero
                    right0 = d0[j + 1] if j + 1 < tw else zero
                    # (the adjoint of the column half in _winograd_input, per padded column)
                    gx[b, ci, yy, 2 * j] = d1[j] - d2[j] + d3[j] - left3
                    if 2 * j + 1 < w:
                        gx[b, ci, yy, 2 * j + 1] = d1[j] + d2[j] - d0[j] + right0


def _winograd_chunks(n, h, w, bytes_per_tile):
    """(images per chunk, [(b0, b1), ...]): chunks whose buffers fill about
    WINOGRAD_CHUNK_BYTES."""
    tiles = ((h + 1) // 2) * ((w + 1) // 2)
    per = max(1, min(n, WINOGRAD_CHUNK_BYTES // (bytes_per_tile * tiles)))
    return per, [(b, min(n, b + per)) for b in range(0, n, per)]


def winograd_forward(x, W):
    (n, c, h, w), k = x.shape, W.shape[0]
    th, tw = (h + 1) // 2, (w + 1) // 2
    per, chunks = _winograd_chunks(n, h, w, 16 * (c + k) * x.itemsize)
    chunks = pool.Shared(chunks)
    U = np.empty((16, k, c), dtype=x.dtype)
    _winograd_filters_kernel(W, U)
    y = np.empty((n, k, h, w), dtype=x.dtype)
    threads = numba.get_num_threads()

    def work(t):
        V = np.empty((16, c, per, th * tw), dtype=x.dtype)  # this thread's buffers
        M = np.empty((16, k, per, th * tw), dtype=x.dtype)
        E = np.empty((2, tw + 1), x.dtype)  # scratch for the transforms
        Q, S = np.empty((4, 2, th + 1, tw), x.dtype), np.empty((2, 4, th, tw), x.dtype)
        V2, M2 = V.reshape(16, c, -1), M.reshape(16, k, -1)  # (16, C, tiles), tiles image by image
        for b0, b1 in chunks:
            tiles = (b1 - b0) * th * tw
            _winograd_input(x, b0, b1, E, Q, V)
            np.matmul(U, V2[:, :, :tiles], out=M2[:, :, :tiles])  # 16 GEMMs: (K, C) @ (C, tiles)
            _winograd_output(M, b0, b1, S, y)

    if n < threads:  # a small batch: handing it to a thread would cost more (~70 us a call)
        work(0)
    else:
        pool.run_on_threads(work, threads)
    return y


def winograd_backward(gy, x, W, input_grad):
    (n, c, h, w), k = x.shape, W.shape[0]
    th, tw = (h + 1) // 2, (w + 1) // 2
    per, chunks = _winograd_chunks(n, h, w, 16 * (c * (1 + input_grad) + k) * x.itemsize)
    UT = np.empty((16, c, k), dtype=x.dtype)
    _winograd_filters_kernel(W.transpose(1, 0, 2, 3), UT)  # U^T (16, C, K): W^T's transform
    gx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
    threads = numba.get_num_threads()
    runs = pool.blocks(chunks, threads)
    gUT = np.empty((len(runs), 16, c, k), dtype=x.dtype)  # one sum of gU^T per run of chunks
    queue = pool.Shared(enumerate(runs))

    def work(t):
        V = np.empty((16, c, per, th * tw), dtype=x.dtype)
        gV = np.empty((16, c, per, th * tw), dtype=x.dtype) if input_grad else None
        gM = np.empty((16, k, per, th * tw), dtype=x.dtype)
        E = np.empty((2, tw + 1), x.dtype)  # scratch for the transforms (Q: input and grad-input)
        Q, S = np.empty((4, 2, th + 1, tw), x.dtype), np.empty((2, 4, th, tw), x.dtype)
        V2, gM2 = V.reshape(16, c, -1), gM.reshape(16, k, -1)
        gV2 = gV.reshape(16, c, -1) if input_grad else None
        part = np.empty((16, c, k), dtype=x.dtype)
        for i, block in queue:
            for j, (b0, b1) in enumerate(block):
                tiles = (b1 - b0) * th * tw
                _winograd_input(x, b0, b1, E, Q, V)  # V again: cheaper than keeping it from forward
                _winograd_grad_output(gy, b0, b1, S, gM)
                # gU^T = V gM^T: measured up to 8% faster than gM V^T for these shapes. The
                # block's first chunk writes its sum directly, the others are added to it.
                np.matmul(V2[:, :, :tiles], gM2[:, :, :tiles].transpose(0, 2, 1),
                          out=gUT[i] if j == 0 else part)
                if j:
                    gUT[i] += part
                if input_grad:
                    np.matmul(UT, gM2[:, :, :tiles], out=gV2[:, :, :tiles])  # gV = U^T gM
                    _winograd_grad_input(gV, b0, b1, Q, gx)

    pool.run_on_threads(work, threads)
    return gx, _winograd_filters_backward(gUT, W.shape, threads)
