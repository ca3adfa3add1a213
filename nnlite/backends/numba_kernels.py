"""Numba CPU kernels: the NumPy kernels compiled, with the same names and signatures.

`numpy_kernels.py` is the specification; every function here computes the same thing (the
parity tests in tests/test_backends.py hold them to it), only faster.

How each kernel is organised, and why:

    conv2d_forward/      parallel over images: each thread unfolds one image at a time into
    conv2d_backward      a cache-sized im2col buffer and multiplies it at once with a
                         single-threaded BLAS GEMM (Python threads around nogil kernels);
                         3x3 stride-1 'same' layers with 16 input channels or more use
                         Winograd's F(2x2, 3x3) instead (2.25x fewer multiplications, the same
                         result up to rounding) on batches of 4 images or more, and, for
                         fewer images than threads (batch 1), from 144 output pixels on
                         (12 x 12 maps) when BLAS runs on one thread, in the calling thread
    im2col               NumPy's (used by average pooling; the convolution has its own above)
    col2im               parallel over images, each added up by the convolution's per-image
                         adjoint: each image is owned by one thread, so there are no races
                         and no atomics
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
`cache=True` stores the machine code next to this file, so a new process does not recompile.

fastmath: only the reassociation/contraction flags, and only on loops that are reductions or
plain arithmetic on finite numbers; never "nnan"/"ninf", which would let LLVM assume away
the -inf of max-pool padding or a NaN that should propagate.

error_model="numpy" on the kernels that divide once per value (LRN, Adam): a float divided by
zero gives inf or NaN, as in NumPy (the specification), instead of Python's ZeroDivisionError.
(Numba's default model tests every divisor, a branch that also keeps the loop from
vectorizing; the LRN loops are vectorized with it, although their time did not change
measurably.)
"""

import math
import os
import threading
import types
from concurrent.futures import ThreadPoolExecutor, wait

import numba
import numpy as np
from numba import njit, prange
from threadpoolctl import ThreadpoolController

from nnlite import random as nnrandom
from nnlite.backends import numpy_kernels as _reference

# Numba's default OpenMP workers spin-wait after every kernel, and so do OpenBLAS's workers
# after every GEMM: on a small CPU the two pools then steal each other's cores for
# milliseconds per op (measured on 2 cores: compact net, batch-1 inference 300 ms instead of
# 5 ms). The workqueue layer's workers sleep when idle. An explicit NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

# Reassociation lets LLVM vectorize a float reduction (sum += v) with several partial sums.
FAST = {"reassoc", "contract", "nsz"}

output_size = _reference.output_size  # integer arithmetic: nothing to compile


def _scalar(value, like):
    """A Python number as a scalar of like's dtype, so the kernel computes in that dtype."""
    return like.dtype.type(value)


# Starting the worker threads costs little on an idle machine but up to a scheduler time slice
# on a busy one (a worker that is not running must be woken and scheduled), and small layers
# (batch 1, the late 6x6 maps) are many and cheap. So each parallel kernel is compiled twice,
# and the serial twin runs any call with less than PARALLEL_MIN elements of work.
PARALLEL_MIN = 1 << 21  # measured on a busy 2-core machine; a launch there can cost ~5 ms


def _serial_and_parallel(fastmath=False, error_model="python"):
    """Decorator: (serial, parallel) compilations of one kernel; `prange` is `range` in the
    serial one. The parallel copy gets its own name so the two never share a cache entry."""

    def compile_both(fn):
        serial = njit(cache=True, fastmath=fastmath, error_model=error_model)(fn)
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel")
        twin.__qualname__ = fn.__qualname__ + "_parallel"
        return serial, njit(parallel=True, cache=True, fastmath=fastmath,
                            error_model=error_model)(twin)

    return compile_both


def _pick(kernels, work):
    return kernels[1] if work >= PARALLEL_MIN else kernels[0]


# -- convolution: im2col + GEMM one image at a time, the images spread over threads --------
# The NumPy backend unfolds the whole batch into one im2col matrix: 170 MB for the compact
# net's second layer at batch 64, so the copy and every GEMM stream it from main memory (40-70
# GFLOPS measured on the 2-core EPYC). Here each thread takes whole images, unfolds one image
# into its own buffer, which stays in cache, and multiplies it at once with NumPy's BLAS,
# single-threaded: 110-170 GFLOPS on the compact net's layers (measured alone, both cores).
# The threads are plain Python threads: the im2col/col2im kernels are compiled with
# nogil=True and BLAS releases the GIL too, so they run side by side. (BLAS called from
# inside a parallel Numba loop was tried: Numba's np.dot needs SciPy's BLAS, which ran up to
# 25% slower here than NumPy's.)
@njit(nogil=True, cache=True)
def _im2col_image(x, kh, kw, sh, sw, pt, pl, oh, ow, col):
    # One image x (C, H, W) -> col (C*KH*KW, OH*OW), numpy_kernels.im2col's layout for one
    # image. Written this way LLVM vectorizes the copy; two innocent-looking variants ran 4-7x
    # slower (measured): splitting each row into zero / copy / zero ranges, and output rows
    # counted from a start row r0 instead of from 0.
    c, h, w = x.shape
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = (ci * kh + i) * kw + j
                for p in range(oh):
                    base, y = p * ow, p * sh + i - pt
                    if y < 0 or y >= h:
                        for q in range(ow):
                            col[row, base + q] = 0
                    else:
                        for q in range(ow):
                            xx = q * sw + j - pl
                            col[row, base + q] = x[ci, y, xx] if 0 <= xx < w else 0


@njit(nogil=True, cache=True)
def _col2im_image(col, kh, kw, sh, sw, pt, pl, oh, ow, x):
    # The adjoint of _im2col_image: x (C, H, W) = the windows in col, added up.
    c, h, w = x.shape
    x[:] = 0
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = (ci * kh + i) * kw + j
                for p in range(oh):
                    y = p * sh + i - pt
                    if 0 <= y < h:
                        for q in range(ow):
                            xx = q * sw + j - pl
                            if 0 <= xx < w:
                                x[ci, y, xx] += col[row, p * ow + q]


def _on_threads(work, threads):
    """Run work(t) for t = 0..threads-1 on a pool of Python threads, BLAS single-threaded
    meanwhile. An exception in any of them is raised here, after all have stopped (none still
    writes into the caller's arrays)."""
    global _pool, _pool_threads
    # One call at a time: two Python threads running convolutions would otherwise replace each
    # other's pool, and interleave the BLAS limit's save/restore (leaving BLAS at 1 thread).
    with _pool_lock:
        if _pool is None or _pool_threads != threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_threads = ThreadPoolExecutor(threads, thread_name_prefix="nnlite"), threads
        with _one_blas_thread():
            futures = [_pool.submit(work, t) for t in range(threads)]
            wait(futures)
    for f in futures:
        f.result()  # re-raises a worker's exception


class _Shared:
    """Items that several threads draw from together, each item going to whichever thread asks
    first: a thread that the machine slows down takes fewer, where a fixed split would make
    everyone wait for it."""

    def __init__(self, items):
        self._items, self._lock = iter(items), threading.Lock()

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            return next(self._items)


def _blocks(items, threads):
    """items cut into runs of consecutive items, for threads to draw from a _Shared queue when
    their results must be summed: one sum per run, the runs' sums added in order at the end.
    Which thread took which run then changes nothing, not even the last bit (float addition is
    not associative), so a training run is repeatable, and a resumed one matches an
    uninterrupted one on the same number of threads. 8 runs for up to 4 threads: the same
    floats on 1, 2 or 4 threads (as long as the batch takes the same path, im2col or Winograd,
    on each: see _winograd_applies)."""
    items = list(items)
    count = max(1, min(len(items), max(8, 2 * threads)))
    return [items[len(items) * i // count : len(items) * (i + 1) // count] for i in range(count)]


def _blas_threads():
    """How many threads NumPy's BLAS would give a GEMM called here now (a ctypes call, ~1 us),
    or 0 when we cannot tell which library is NumPy's.

    NumPy's own: SciPy and OpenCV bring BLAS libraries of their own, which a limit set before
    they were loaded does not reach. A NumPy wheel's lies under numpy's folder; a NumPy built
    against the system's BLAS (conda, a distribution) cannot be told apart from the others, and
    the caller then keeps to its default path."""
    global _numpy_blas
    if _numpy_blas is None:
        # site-packages/numpy.libs/ (Linux wheels), site-packages/numpy/.dylibs/ (macOS)
        prefix = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy")
        own = [lib for lib in _blas().lib_controllers
               if lib.user_api == "blas" and lib.filepath.startswith(prefix)]
        _numpy_blas = own[0] if own else False
    return _numpy_blas.num_threads if _numpy_blas else 0


def _one_blas_thread():
    return _blas().limit(limits=1, user_api="blas")


def _blas():
    """threadpoolctl's view of the BLAS libraries loaded, made once (it takes milliseconds)."""
    global _blas_controller
    if _blas_controller is None:
        _blas_controller = ThreadpoolController()
    return _blas_controller


def _forget_pool():
    # After os.fork() the child has the pool object but none of its threads: make a new one.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


_pool, _pool_threads, _pool_lock = None, 0, threading.Lock()
_blas_controller = None
_numpy_blas = None  # see _blas_threads
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _conv_operands(x, W):
    dtype = np.result_type(x, W)
    return np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(W, dtype=dtype)


def conv2d_forward(x, W, stride, pad):
    """y (N, OC, OH, OW) = conv2d(x, W); see numpy_kernels.conv2d_forward."""
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    (n, c, h, w), (oc, _, kh, kw) = x.shape, W.shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    x, W = _conv_operands(x, W)
    if _winograd_applies(x, W, stride, pad):
        return _winograd_forward(x, W)
    W2 = W.reshape(oc, -1)  # (OC, K)
    y = np.empty((n, oc, oh * ow), dtype=x.dtype)
    threads = numba.get_num_threads()  # numba.set_num_threads(k) limits our threads too
    if n < threads:
        # Fewer images than threads (batch 1, the live demo): unfold each image whole and let
        # BLAS spread its GEMM over the cores itself, which costs less than a hand-off to our
        # threads per layer.
        col = np.empty((W2.shape[1], oh * ow), dtype=x.dtype)
        for b in range(n):
            _im2col_image(x[b], kh, kw, sh, sw, pt, pl, oh, ow, col)
            np.matmul(W2, col, out=y[b])
        return y.reshape(n, oc, oh, ow)

    images = _Shared(range(n))  # each image to whichever thread is free

    def work(t):
        col = np.empty((W2.shape[1], oh * ow), dtype=x.dtype)  # this thread's buffer
        for b in images:
            _im2col_image(x[b], kh, kw, sh, sw, pt, pl, oh, ow, col)
            np.matmul(W2, col, out=y[b])  # (OC, K) @ (K, OH*OW), straight into y[b]

    _on_threads(work, threads)
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
    if _winograd_applies(x, W, stride, pad):
        return _winograd_backward(np.ascontiguousarray(gy, dtype=x.dtype), x, W, input_grad)
    W2 = W.reshape(oc, -1)
    gy = np.ascontiguousarray(gy, dtype=x.dtype).reshape(n, oc, oh * ow)
    gx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
    threads = numba.get_num_threads()
    blocks = _blocks(range(n), threads)
    gWT = np.zeros((len(blocks), W2.shape[1], oc), dtype=x.dtype)  # one weight gradient per block
    queue = _Shared(enumerate(blocks))

    def work(t):
        col, gcol = np.empty((2, W2.shape[1], oh * ow), dtype=x.dtype)
        part = np.empty((W2.shape[1], oc), dtype=x.dtype)
        for i, block in queue:
            for b in block:
                _im2col_image(x[b], kh, kw, sh, sw, pt, pl, oh, ow, col)
                # dW[o, k] = sum_p gy[o, p] col[k, p], computed transposed: col @ gy^T ran 1.5x
                # faster than gy @ col^T for the compact net's (32, 2304) @ (2304, 288) (measured)
                np.matmul(col, gy[b].T, out=part)
                gWT[i] += part
                if input_grad:
                    np.matmul(W2.T, gy[b], out=gcol)  # dcol = W^T gy
                    _col2im_image(gcol, kh, kw, sh, sw, pt, pl, oh, ow, gx[b])

    _on_threads(work, threads)
    return gx, np.ascontiguousarray(gWT.sum(axis=0).T).reshape(W.shape)


# -- convolution, 3x3 stride 1 'same': Winograd's minimal filtering F(2x2, 3x3) -------------
# A 3x3 convolution costs 9 multiply-adds per output pixel and input channel. Winograd's
# algorithm (Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural Networks"; cuDNN and
# oneDNN both implement it) computes a 2x2 tile of outputs from the 4x4 input patch d
# that covers it with 16 multiplications instead of 36:
#
#     y = A^T [ (G g G^T) * (B^T d B) ] A        g the 3x3 filter, * elementwise (4x4)
#
#     B^T = [1  0 -1  0]      G = [ 1    0    0 ]      A^T = [1  1  1  0]
#           [0  1  1  0]          [1/2  1/2  1/2]            [0  1 -1 -1]
#           [0 -1  1  0]          [1/2 -1/2  1/2]
#           [0  1  0 -1]          [ 0    0    1 ]
#
# The transforms are linear, so the sum over input channels can be taken between them: for
# each of the 16 positions xi = 4a + s (row a, column s) of the 4x4, one GEMM over the channels,
#     M[xi] (K, T) = U[xi] (K, C) @ V[xi] (C, T),   U = G g G^T per filter, V = B^T d B per tile,
# that is 16 GEMMs of K x C x T where im2col runs one of K x 9C x 4T: 2.25x fewer multiply-adds,
# and the transforms in between are additions only. The backward pass is the adjoint of each
# linear step, in reverse:
#     gM = A gy A^T  ->  gV = U^T gM  ->  gx = B gV B^T (overlapping patches added up)
#                        gU = gM V^T  ->  gW = G^T gU G
# Rounding: ~1e-6 of the largest output in float32 (measured), the order of the GEMM's own.
# Non-finite inputs: an inf can turn into NaN in the outputs of its own tile, where im2col
# gives inf, because the transforms subtract neighbouring values.
#
# Each thread transforms a chunk of images into V, multiplies, and transforms back; the chunk
# is sized so that its V and M (or V, gV and gM) stay in a core's cache. Where the transforms
# cost more than the multiplications they save, im2col stays (measured per layer shape of the
# compact and wide nets at batch 64: Winograd 1.3-1.8x faster forward and 1.15-1.55x backward
# from 6x6 to 48x48 images with 32 to 256 channels, level with im2col at 3x3, and 0.16x
# forward for the 1-channel input layer, whose GEMM is tiny).
WINOGRAD_MIN_PIXELS = 36
WINOGRAD_MIN_CHANNELS = 16
# The filters' transform is paid once per call, so it pays when there are enough output
# tiles to share it: on the threads from 4 images on, and for fewer images than threads (batch
# 1: the live demo), in the calling thread, from 144 output pixels on (12 x 12 at batch 1) when
# BLAS runs on one thread, as the face pipeline has it. Measured on the compact net's batch-1
# inference, two cores, im2col and Winograd interleaved: 3.2 against 2.4 ms (medians; with
# Winograd from 24 x 24 on only, 2.5 ms; on the 6 x 6 layer too, 2.4 ms, in separate runs where
# im2col took 3.0 ms). With BLAS on two threads im2col's one big GEMM uses both cores where
# Winograd's 16 small ones do not: 2.28 against 2.34 ms, and 4.0 against 4.3 ms for a call
# after 0.2 s idle. Keeping each layer's transformed filters for the next
# call (inference does not change them) gained nothing measurable.
WINOGRAD_MIN_IMAGES = 4
WINOGRAD_MIN_SMALL_BATCH_PIXELS = 144
WINOGRAD_CHUNK_BYTES = 1 << 20  # per thread, for its V and M (V, gV, gM); 0.5, 2 MiB were slower
# From this many filters (K * C) on, the backward's last step (the weight gradient: the blocks'
# sum, then G^T gU G) is spread over the threads; below it, one thread does it in ~0.5 ms or less.
WINOGRAD_FILTERS_MIN_THREADED = 8192


def _winograd_applies(x, W, stride, pad):
    n, _, h, w = x.shape
    threads = numba.get_num_threads()
    return (x.dtype.kind == "f"  # the transforms halve: integers would round
            and W.shape[2:] == (3, 3) and tuple(stride) == (1, 1) and tuple(pad) == (1, 1, 1, 1)
            and W.shape[1] >= WINOGRAD_MIN_CHANNELS and h * w >= WINOGRAD_MIN_PIXELS
            and (n >= max(threads, WINOGRAD_MIN_IMAGES)  # on the threads
                 or (n < threads  # in the calling thread
                     and n * h * w >= WINOGRAD_MIN_SMALL_BATCH_PIXELS and _blas_threads() == 1)))


@njit(nogil=True, cache=True, inline="always")
def _g_times(v0, v1, v2, half):
    # G v for a column v of 3 (G's rows: 1 0 0 / 1/2 1/2 1/2 / 1/2 -1/2 1/2 / 0 0 1); half is
    # 0.5 in the arrays' dtype (a Python 0.5 would turn float32 arithmetic into float64)
    return v0, (v0 + v1 + v2) * half, (v0 - v1 + v2) * half, v2


@njit(nogil=True, cache=True, inline="always")
def _gt_times(u0, u1, u2, u3, half):
    # G^T u for a column u of 4: the adjoint of _g_times
    return u0 + (u1 + u2) * half, (u1 - u2) * half, (u1 + u2) * half + u3


@njit(nogil=True, cache=True)
def _winograd_filters_kernel(W, U):
    # U[4a+s, k, c] = (G g G^T)[a, s] for every filter g = W[k, c]: U (16, K, C), C-ordered
    # (the backward gets U^T by passing W's transpose). A loop, not BLAS: a GEMM here, outside
    # the convolution's threads, left BLAS's workers spinning on the cores the threads then
    # needed (the training step took 36 ms longer, measured).
    # A row of K's filters goes through `rows` (16, C) before U: writing each filter's 16
    # values straight into U's 16 planes, whose distance is a power of two for these layer
    # sizes, sent all 16 stores to the same cache set, which holds 8 lines, so nearly every
    # store missed. Through `rows`, which stays in the cache, then one plane at a time: 1.47
    # -> 0.18 ms for 256 x 128 filters, 0.50 -> 0.10 for 128 x 128 (one thread, measured).
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


@njit(nogil=True, cache=True)
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
    gUT.sum(axis=0)), this took 5 of the 20 ms of the compact net's last backward (128 -> 256
    channels, batch 64; measured)."""
    k, c = W_shape[0], W_shape[1]
    gW = np.empty(W_shape, dtype=gUT.dtype)
    if threads == 1 or k * c < WINOGRAD_FILTERS_MIN_THREADED:
        _winograd_filters_backward_kernel(gUT, 0, c, np.empty((16, k), dtype=gUT.dtype), gW)
        return gW
    step = -(-c // (4 * threads))  # a few runs of channels per thread, for the queue to even out
    channels = _Shared((c0, min(c, c0 + step)) for c0 in range(0, c, step))

    def work(t):
        channel_sum = np.empty((16, k), dtype=gUT.dtype)  # this thread's scratch
        for c0, c1 in channels:
            _winograd_filters_backward_kernel(gUT, c0, c1, channel_sum, gW)

    _on_threads(work, threads)
    return gW


@njit(nogil=True, cache=True)
def _winograd_input(x, b0, b1, E, Q, V):
    # Images b0..b1-1 of x (N, C, H, W) -> V (16, C, chunk, TH*TW): V[4a+s, c, b, t] =
    # (B^T d B)[a, s] for the 4x4 patch d of tile t = TW*i + j, image rows 2i-1..2i+2 and
    # columns 2j-1..2j+2 (zero outside). Scratch: E (2, TW+1), and Q (4, 2, TH+1, TW) for the
    # column half of the transform, d B, computed once per padded row p: Q[s, p & 1, p >> 1, j]
    # = (d B)[r, s] for the patch of tile (i, j) whose row r is padded row p (p = 2i + r). Row
    # r = 0 or 1 of tile row i is then Q[s, r, i], and row r = 2 or 3 is Q[s, r - 2, i + 1]:
    # one tile row further in the same array, so that the row half reads both with flat loops.
    # (This layout computes each padded row once where a per-tile-row one did it twice, and
    # with the pairwise copy below the transform took half its former time, same bits: 10.6
    # -> 5.6 ms for 64 images of 32 x 48 x 48, 4.5 -> 2.8 at 128 x 12 x 12, one thread.)
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
                    # (The copy alone, measured: 4.1x faster on 48-pixel rows, 1.3x on 12.)
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
            # (a loop per output row, each index a plain counter: measured 3x faster than one
            # loop over tiles writing all 16). Rows 2 and 3 are read through 1-D views that
            # start a tile row on, not as Qf[s, 0, m + tw]: with that offset the whole transform
            # took 2.3x as long (12.1 against 5.3 ms for 64 images of 32 x 48 x 48, measured).
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


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
def _winograd_grad_input(gV, b0, b1, Q, gx):
    # The adjoint of _winograd_input: images b0..b1-1 of gx = the patches B gV B^T, added up
    # where neighbouring tiles overlap (each image pixel lies in up to 2x2 patches). Written as
    # a gather, so each pixel is written once. Scratch: Q (4, 2, TH+1, TW), laid out as in
    # _winograd_input: Q[s, p & 1, p >> 1, j] is the sum, over the two patches that hold padded
    # row p, of (B gV)[r, s] for their row r that is p. (Measured against summing the two rows
    # for every pixel: 8.3 -> 6.7 ms for 64 images of 32 x 48 x 48, 3.9 -> 2.8 at 128 x 12 x 12,
    # same bits: the two rows are added in the same order.)
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


def _winograd_forward(x, W):
    (n, c, h, w), k = x.shape, W.shape[0]
    th, tw = (h + 1) // 2, (w + 1) // 2
    per, chunks = _winograd_chunks(n, h, w, 16 * (c + k) * x.itemsize)
    chunks = _Shared(chunks)
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
        _on_threads(work, threads)
    return y


def _winograd_backward(gy, x, W, input_grad):
    (n, c, h, w), k = x.shape, W.shape[0]
    th, tw = (h + 1) // 2, (w + 1) // 2
    per, chunks = _winograd_chunks(n, h, w, 16 * (c * (1 + input_grad) + k) * x.itemsize)
    UT = np.empty((16, c, k), dtype=x.dtype)
    _winograd_filters_kernel(W.transpose(1, 0, 2, 3), UT)  # U^T (16, C, K): W^T's transform
    gx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
    threads = numba.get_num_threads()
    blocks = _blocks(chunks, threads)
    gUT = np.empty((len(blocks), 16, c, k), dtype=x.dtype)  # one sum of gU^T per block
    queue = _Shared(enumerate(blocks))

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

    _on_threads(work, threads)
    return gx, _winograd_filters_backward(gUT, W.shape, threads)


# -- im2col / col2im for the whole batch (average pooling, and the parity tests) -------------
def im2col(x, kh, kw, stride, pad, fill=0.0):
    """x (N, C, H, W) -> col (C*KH*KW, N*OH*OW); see numpy_kernels.im2col.

    This is NumPy's version: its copy out of a strided view was as fast as a compiled Numba
    loop at batch 64 and 2-3x faster at batch 1 (measured on the 2-core EPYC: 0.18 vs 0.52 ms
    for (1, 32, 48, 48), 3x3), the live demo's case, so the loop was dropped.
    """
    return _reference.im2col(x, kh, kw, stride, pad, fill)


@_serial_and_parallel()
def _col2im(col, kh, kw, sh, sw, pt, pl, oh, ow, x):
    # Image b's windows are columns b*OH*OW .. (b+1)*OH*OW of col; each image is owned by one
    # thread, so no two threads add into the same pixel.
    p = oh * ow
    for b in prange(x.shape[0]):
        _col2im_image(col[:, b * p : (b + 1) * p], kh, kw, sh, sw, pt, pl, oh, ow, x[b])


def col2im(col, x_shape, kh, kw, stride, pad):
    """col (C*KH*KW, N*OH*OW) -> (N, C, H, W), overlapping windows added up."""
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    n, c, h, w = x_shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    x = np.empty(x_shape, dtype=col.dtype)
    _pick(_col2im, col.size)(col, kh, kw, sh, sw, pt, pl, oh, ow, x)
    return x


# -- pooling ---------------------------------------------------------------------------------
@_serial_and_parallel()
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


@_serial_and_parallel()
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
        _pick(_max_pool_2x2_forward, x.size)(x, y, argmax)
    else:
        _pick(_max_pool_forward, x.size)(x, kh, kw, sh, sw, pt, pl, y, argmax)
    return y, argmax


@_serial_and_parallel()
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
    _pick(_max_pool_backward, gx.size)(gy, argmax, kh, kw, sh, sw, pt, pl, gx)
    return gx


# -- local response normalization ------------------------------------------------------------
# Arrays are viewed as (N, C, H*W) and split into tasks of (image, block of pixels), so that
# even a batch of one keeps both cores busy. Inside a task the loop runs over channels, with a
# running window sum per pixel kept in float64 (adding and later subtracting the same squares
# then cancels exactly instead of drifting).
BLOCK = 512


@njit(cache=True, inline="always")
def _pow_three_quarters(s):
    """s ** 0.75 (TFLearn's and AlexNet's beta) as two square roots, far cheaper than pow."""
    return np.sqrt(s * np.sqrt(s))


@_serial_and_parallel(fastmath=FAST, error_model="numpy")
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
    _pick(_lrn_forward, x.size)(x.reshape(n, c, -1), size // 2, (size - 1) // 2, alpha / size, float(k),
                 _scalar(beta, x), y.reshape(n, c, -1), scale.reshape(n, c, -1))
    return y, scale


@_serial_and_parallel(fastmath=FAST, error_model="numpy")
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


def lrn_backward(x, y, scale, gy, size, alpha, beta, k):
    """dL/dx for LRN; see numpy_kernels.lrn_backward for the formula."""
    x, y, scale, gy = (np.ascontiguousarray(a) for a in (x, y, scale, gy))
    n, c = x.shape[:2]
    gx = np.empty_like(gy)
    _pick(_lrn_backward, x.size)(x.reshape(n, c, -1), y.reshape(n, c, -1), scale.reshape(n, c, -1),
                  gy.reshape(n, c, -1), (size - 1) // 2, size // 2,
                  _scalar(2.0 * alpha * beta / size, x), _scalar(beta, x), gx.reshape(n, c, -1))
    return gx


# -- batch normalization ---------------------------------------------------------------------
# (N, C) and (N, C, H, W) are both viewed as (N, C, HW) with HW = 1 for the former; every
# kernel is parallel over channels, each channel's N*HW values visited by one thread.
def _as_nchw(a):
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))  # (not -1: N may be 0)


@_serial_and_parallel(fastmath=FAST)
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
    _pick(_batch_norm_stats, x.size)(_as_nchw(x), mean, var)
    return mean, var


@njit(cache=True, fastmath=FAST, inline="always")
def _batch_norm_affine(gamma, beta, mean, inv_std, ci):
    # y = a*x + d with a = gamma*inv_std, d = beta - a*mean: one multiply-add per value.
    # (In float32 this loses ~|mean|/std * 6e-8 of accuracy against gamma*xhat + beta:
    # nothing for activations, whose |mean|/std is small.) The forward and the fused ReLU's
    # mask in the backward both take a and d from here, so that they agree bit for bit.
    a = gamma[ci] * inv_std[ci]
    return a, beta[ci] - a * mean[ci]


@njit(cache=True, fastmath=FAST, inline="always")
def _relu_masked(g, x, a, d, relu, zero):
    # g through the fused ReLU: kept where the forward's a*x + d was > 0
    return zero if relu and not a * x + d > 0 else g


@_serial_and_parallel(fastmath=FAST)
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
    _pick(_batch_norm_forward, x.size)(x3, gamma, beta, mean.astype(x.dtype, copy=False), inv_std,
                                       bool(relu), y)
    return y.reshape(x.shape), inv_std


@_serial_and_parallel(fastmath=FAST)
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
    _pick(_batch_norm_backward, gy.size)(gy3, _as_nchw(x), mean.astype(gy.dtype, copy=False), gamma,
                                         inv_std, bool(train), relu, beta, gx, ggamma, gbeta)
    return gx.reshape(gy.shape), ggamma, gbeta


# -- ReLU ------------------------------------------------------------------------------------
@_serial_and_parallel()
def _relu_forward(x, y):
    for i in prange(x.size):
        y[i] = 0 if x[i] < 0 else x[i]  # written so that a NaN passes through, as in NumPy


@_serial_and_parallel()
def _relu_backward(gy, y, gx):
    for i in prange(gy.size):
        gx[i] = gy[i] if y[i] > 0 else 0


def relu_forward(x):
    """y = max(x, 0), one pass."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _pick(_relu_forward, x.size)(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(gy, y):
    """gx = gy where y > 0, else 0, one pass."""
    gy, y = np.ascontiguousarray(gy), np.ascontiguousarray(y)
    gx = np.empty_like(gy)
    _pick(_relu_backward, gy.size)(gy.reshape(-1), y.reshape(-1), gx.reshape(-1))
    return gx


# -- softmax cross-entropy -------------------------------------------------------------------
# (N, K) logits with K = 7: microseconds of work, so these run on one thread.
@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
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


def softmax_cross_entropy_backward(probs, labels, sample_weights, smoothing, gloss):
    """dloss/dlogits = gloss * w_i / sum(w) * (p_i - q_i)."""
    glogits = np.empty(probs.shape, probs.dtype)
    _softmax_cross_entropy_backward(probs, labels, sample_weights, float(smoothing),
                                    float(gloss), glogits)
    return glogits


# -- dropout ---------------------------------------------------------------------------------
@_serial_and_parallel()
def _threshold_and_scale(u, p, keep_scale):
    for i in prange(u.size):
        u[i] = keep_scale if u[i] >= p else 0.0


def dropout_mask(shape, p, dtype, like):
    """Inverted-dropout mask: 0 with probability p, else 1/(1-p). The uniforms come from
    nnlite.random exactly as in NumPy, so a seed gives the same mask on both backends."""
    u = nnrandom.uniform(shape, like)
    flat = u.reshape(-1)
    _pick(_threshold_and_scale, flat.size)(flat, _scalar(p, u), _scalar(1.0 / (1.0 - p), u))
    return u.astype(dtype, copy=False)


# -- optimizer updates (in place) ------------------------------------------------------------
@_serial_and_parallel(fastmath=FAST)
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
    _pick(_sgd_update, param.size)(flat[0], np.ascontiguousarray(grad).reshape(-1), flat[1], _scalar(lr, param),
                _scalar(momentum, param), _scalar(weight_decay, param), bool(nesterov))


@_serial_and_parallel(fastmath=FAST, error_model="numpy")
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
    _pick(_adam_update, param.size)(flat[0], np.ascontiguousarray(grad).reshape(-1), flat[1], flat[2], s(lr),
                 s(beta1), s(beta2), s(eps), s(weight_decay), s(1.0 / (1.0 - beta1**step)),
                 s(1.0 / (1.0 - beta2**step)))
