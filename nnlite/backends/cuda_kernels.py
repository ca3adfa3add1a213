"""CUDA kernels: CuPy arrays in and out, the hot loops as Numba CUDA kernels.

Same names and signatures as `numpy_kernels.py` (the specification). GEMMs are CuPy's
`W @ col`, which is cuBLAS. What is here:

    conv2d_forward/backward      forward: im2col + one cuBLAS GEMM for the whole batch (as NumPy
                                 does); backward: im2col again, two GEMMs and col2im
    im2col, col2im               one thread per col element / per input pixel (col2im is a
                                 GATHER: each pixel sums the columns that touch it, so there
                                 are no atomics and the result is deterministic)
    max_pool_forward/backward    one thread per output / per input pixel (backward gathers too)
    lrn_forward/backward         one thread per element, summing its channel window
    batch_norm_stats             one block per channel, its sums added in shared memory
    batch_norm_forward           one thread per element, the ReLU fused when asked (relu=True)
    batch_norm_backward          the per-channel sums (a block per channel), then one thread per
                                 element of gx; the fused ReLU's mask recomputed from x
    batch_norm_running_update    one thread per channel
    relu_backward                one thread per element
    softmax_cross_entropy_*      one block: a thread per row, the loss's sums in shared memory
    dropout_mask                 cuRAND uniforms (nnlite.random) then one fused threshold+scale
    sgd_update, adam_update      one fused elementwise launch per parameter, in place

ReLU's forward and log_softmax are the `xp` code of numpy_kernels (one CuPy launch, and a
function the training step does not call). Most of the custom kernels replace several CuPy
launches with one: at batch 64 these nets leave a big GPU waiting on the host, which spends
tens of microseconds per launch, so the number of launches sets the step's time.

Every kernel but the per-channel sums and the loss is one 1-D grid of 256-thread blocks with a
grid-stride loop, and every kernel is dtype-generic: Numba compiles one specialization per
dtype (float32, float64).

Streams: a kernel is launched on CuPy's current stream (normally the legacy default stream,
which Numba also uses by default), so it is ordered after the CuPy ops that produced its
inputs and before those that read its outputs, without any host synchronization. For the same
reason CuPy arrays are handed to Numba with `as_cuda_array(a, sync=False)`: the default
(sync=True) would block the host on the producer's stream at every launch.

Under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1, no GPU needed) the same wrappers run the
same kernels on NumPy arrays (nnlite.backends then lets the "cuda" backend run on host
arrays), which is how tests/test_backends.py checks this module on a machine without a GPU.
Outside the simulator a NumPy array is refused: nnlite never copies implicitly.
"""

import math
import sys
import warnings

import numpy as np

# numba-cuda (seen with numba-cuda on NumPy 2.5, on the H100 test machine) still registers an
# overload for np.row_stack, which NumPy 2.5 removed, and its kernel machinery then fails to
# import. np.row_stack was always an alias of np.vstack, so restoring the alias is exact.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

from numba import cuda  # noqa: E402  (after the compatibility alias above)

from nnlite.device import get_array_module
from nnlite.backends import conv_algorithms
from nnlite.backends import numpy_kernels as _reference
from nnlite.backends.numba.compile import CACHE  # the cache folder: see numba/compile.py
from nnlite import random as nnrandom

# A small grid on a big GPU is expected for small layers: Numba's low-occupancy warning
# ("Grid size N will likely result in GPU under-utilization") is noise here.
# The message starts with a terminal colour code, hence the leading ".*".
warnings.filterwarnings("ignore", message=".*Grid size")

THREADS = 256  # threads per block
MAX_BLOCKS = 8192  # enough to fill any current GPU; the grid-stride loop covers the rest
SIMULATOR = ".simulator" in cuda.jit.__module__  # NUMBA_ENABLE_CUDASIM=1 was set before import

output_size = _reference.output_size


# -- launching ---------------------------------------------------------------------------------
def _device_view(a):
    """What a kernel receives: a Numba view of a CuPy array (no copy, no host sync), or the
    NumPy array itself under the simulator."""
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a, sync=False)
    if isinstance(a, np.ndarray) and not SIMULATOR:
        raise TypeError(
            "cuda kernels got a NumPy (host) array; move the data to the GPU first with "
            "tensor.to('cuda') (nnlite never copies between host and GPU implicitly)"
        )
    return a


def _launch(kernel, total, *args):
    """Run `kernel` over `total` work items: one 1-D grid, grid-stride loop inside."""
    if total == 0:
        return
    _launch_grid(kernel, min(-(-total // THREADS), MAX_BLOCKS), THREADS, *args)


def _launch_grid(kernel, blocks, threads, *args):
    """Run `kernel` on `blocks` blocks of `threads` threads, on CuPy's current stream."""
    if blocks == 0:
        return
    args = [_device_view(a) if hasattr(a, "shape") and hasattr(a, "dtype") and
            not isinstance(a, np.generic) else a for a in args]
    stream = _current_stream()
    if stream is None:
        kernel[blocks, threads](*args)
    else:
        kernel[blocks, threads, stream](*args)


def _current_stream():
    """CuPy's current stream as a Numba stream, or None for the default stream."""
    if SIMULATOR:
        return None
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return None
    ptr = cupy.cuda.get_current_stream().ptr
    return None if ptr == 0 else cuda.external_stream(ptr)


def _contiguous(xp, a):
    """Kernels index plain C-ordered arrays (one compiled layout, coalesced reads)."""
    return xp.ascontiguousarray(a)


# -- im2col / col2im ---------------------------------------------------------------------------
@cuda.jit(cache=CACHE)
def _im2col_kernel(x, col, kh, kw, sh, sw, pt, pl, oh, ow, fill):
    # col[(c*KH + i)*KW + j, (n*OH + y)*OW + z] = x[n, c, y*SH + i - pt, z*SW + j - pl]
    n, c, h, w = x.shape
    p = n * oh * ow
    total = col.shape[0] * p
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        row, q = idx // p, idx % p
        ci, j = row // kw, row % kw
        ch, i = ci // kh, ci % kh
        b, r = q // (oh * ow), q % (oh * ow)
        y, z = r // ow, r % ow
        hy = y * sh + i - pt
        wz = z * sw + j - pl
        if 0 <= hy < h and 0 <= wz < w:
            col[row, q] = x[b, ch, hy, wz]
        else:
            col[row, q] = fill


def im2col(x, kh, kw, stride, pad, fill=0.0):
    """x (N, C, H, W) -> col (C*KH*KW, N*OH*OW); see numpy_kernels.im2col."""
    xp = get_array_module(x)
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    n, c, h, w = x.shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    x = _contiguous(xp, x)
    col = xp.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    _launch(_im2col_kernel, col.size, x, col, kh, kw, sh, sw, pt, pl, oh, ow, x.dtype.type(fill))
    return col


@cuda.jit(cache=CACHE)
def _col2im_kernel(col, x, kh, kw, sh, sw, pt, pl, oh, ow, zero):
    # Pixel (hp, wp) of the padded image sat at kernel offset i = hp - y*SH in output row y,
    # for the rows y with 0 <= i < KH: y from ceil((hp - KH + 1) / SH) to hp // SH.
    n, c, h, w = x.shape
    total = n * c * h * w
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        b, r = idx // (c * h * w), idx % (c * h * w)
        ch, r = r // (h * w), r % (h * w)
        hp, wp = r // w + pt, r % w + pl
        y_lo = 0 if hp < kh else (hp - kh) // sh + 1
        y_hi = min(hp // sh + 1, oh)
        z_lo = 0 if wp < kw else (wp - kw) // sw + 1
        z_hi = min(wp // sw + 1, ow)
        acc = zero  # typed like col (a literal 0.0 would make the sum float64)
        for y in range(y_lo, y_hi):
            i = hp - y * sh
            for z in range(z_lo, z_hi):
                j = wp - z * sw
                acc += col[(ch * kh + i) * kw + j, (b * oh + y) * ow + z]
        x[b, ch, r // w, r % w] = acc


def col2im(col, x_shape, kh, kw, stride, pad):
    """col (C*KH*KW, N*OH*OW) -> (N, C, H, W), overlaps summed; see numpy_kernels.col2im."""
    xp = get_array_module(col)
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    n, c, h, w = x_shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    col = _contiguous(xp, col)
    x = xp.empty((n, c, h, w), dtype=col.dtype)
    if col.size == 0:
        x.fill(0)
        return x
    _launch(_col2im_kernel, x.size, col, x, kh, kw, sh, sw, pt, pl, oh, ow, col.dtype.type(0))
    return x


def conv2d_forward(x, W, stride, pad):
    """im2col above + one cuBLAS GEMM for the whole batch; see numpy_kernels.conv2d_forward."""
    return conv_algorithms.gemm_conv2d_forward(im2col, output_size, x, W, stride, pad)


def conv2d_backward(gy, x, W, stride, pad, input_grad=True):
    """See numpy_kernels.conv2d_backward: im2col again, two cuBLAS GEMMs and col2im."""
    return conv_algorithms.gemm_conv2d_backward(im2col, col2im, gy, x, W, stride, pad, input_grad)


# -- pooling -----------------------------------------------------------------------------------
@cuda.jit(cache=CACHE)
def _max_pool_forward_kernel(x, y, argmax, kh, kw, sh, sw, pt, pl, neg_inf):
    # Scan the window row-major; padding counts as -inf. A strictly greater value wins, so
    # ties go to the first position, and the first NaN wins and stays (as numpy's argmax).
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    total = n * c * oh * ow
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        b, r = idx // (c * oh * ow), idx % (c * oh * ow)
        ch, r = r // (oh * ow), r % (oh * ow)
        oy, oz = r // ow, r % ow
        best = neg_inf
        best_k = 0
        for i in range(kh):
            hy = oy * sh + i - pt
            for j in range(kw):
                wz = oz * sw + j - pl
                v = neg_inf
                if 0 <= hy < h and 0 <= wz < w:
                    v = x[b, ch, hy, wz]
                k = i * kw + j
                if k == 0 or v > best or (v != v and best == best):
                    best, best_k = v, k
        y[b, ch, oy, oz] = best
        argmax[b, ch, oy, oz] = best_k


def max_pool_forward(x, kh, kw, stride, pad):
    """x (N, C, H, W) -> y (N, C, OH, OW), argmax (N, C, OH, OW) int64 (position 0..KH*KW-1)."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    x = _contiguous(xp, x)
    y = xp.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = xp.empty((n, c, oh, ow), dtype=np.int64)
    _launch(_max_pool_forward_kernel, y.size, x, y, argmax, kh, kw, sh, sw, pt, pl,
            x.dtype.type(-np.inf))
    return y, argmax


@cuda.jit(cache=CACHE)
def _max_pool_backward_kernel(gy, argmax, gx, kh, kw, sh, sw, pt, pl, zero):
    # Each input pixel gathers gy from the windows that hold it and that it won.
    n, c, h, w = gx.shape
    oh, ow = gy.shape[2], gy.shape[3]
    total = n * c * h * w
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        b, r = idx // (c * h * w), idx % (c * h * w)
        ch, r = r // (h * w), r % (h * w)
        hp, wp = r // w + pt, r % w + pl
        y_lo = 0 if hp < kh else (hp - kh) // sh + 1
        y_hi = min(hp // sh + 1, oh)
        z_lo = 0 if wp < kw else (wp - kw) // sw + 1
        z_hi = min(wp // sw + 1, ow)
        acc = zero
        for y in range(y_lo, y_hi):
            i = hp - y * sh
            for z in range(z_lo, z_hi):
                if argmax[b, ch, y, z] == i * kw + (wp - z * sw):
                    acc += gy[b, ch, y, z]
        gx[b, ch, r // w, r % w] = acc


def max_pool_backward(gy, argmax, x_shape, kh, kw, stride, pad):
    """Route each output gradient to the input pixel that won its window -> (N, C, H, W)."""
    xp = get_array_module(gy)
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    gy, argmax = _contiguous(xp, gy), _contiguous(xp, argmax)
    gx = xp.empty(tuple(x_shape), dtype=gy.dtype)
    if gy.size == 0:
        gx.fill(0)
        return gx
    _launch(_max_pool_backward_kernel, gx.size, gy, argmax, gx, kh, kw, sh, sw, pt, pl,
            gy.dtype.type(0))
    return gx


# -- local response normalization --------------------------------------------------------------
@cuda.jit(cache=CACHE)
def _lrn_forward_kernel(x, y, scale, before, after, alpha_over_size, k, neg_beta, zero):
    n, c, h, w = x.shape
    total = n * c * h * w
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        b, r = idx // (c * h * w), idx % (c * h * w)
        ch, r = r // (h * w), r % (h * w)
        hy, wz = r // w, r % w
        acc = zero
        for d in range(max(ch - before, 0), min(ch + after + 1, c)):
            v = x[b, d, hy, wz]
            acc += v * v
        s = acc * alpha_over_size + k
        scale[b, ch, hy, wz] = s
        y[b, ch, hy, wz] = x[b, ch, hy, wz] * math.pow(s, neg_beta)


def lrn_forward(x, size, alpha, beta, k):
    """y = x * scale^-beta, scale = k + alpha/size * (window sum of x^2). Returns y, scale."""
    xp = get_array_module(x)
    x = _contiguous(xp, x)
    y, scale = xp.empty_like(x), xp.empty_like(x)
    t = x.dtype.type
    _launch(_lrn_forward_kernel, x.size, x, y, scale, size // 2, (size - 1) // 2,
            t(alpha / size), t(k), t(-beta), t(0))
    return y, scale


@cuda.jit(cache=CACHE)
def _lrn_backward_kernel(x, y, scale, gy, gx, before, after, coeff, neg_beta, zero):
    # The mirrored window: channel c receives from every c' whose forward window held c.
    n, c, h, w = x.shape
    total = n * c * h * w
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        b, r = idx // (c * h * w), idx % (c * h * w)
        ch, r = r // (h * w), r % (h * w)
        hy, wz = r // w, r % w
        acc = zero
        for d in range(max(ch - before, 0), min(ch + after + 1, c)):
            acc += gy[b, d, hy, wz] * y[b, d, hy, wz] / scale[b, d, hy, wz]
        g = gy[b, ch, hy, wz]
        gx[b, ch, hy, wz] = g * math.pow(scale[b, ch, hy, wz], neg_beta) - coeff * x[b, ch, hy, wz] * acc


def lrn_backward(gy, x, y, scale, size, alpha, beta, k):
    """dL/dx for LRN; see numpy_kernels.lrn_backward for the formula."""
    xp = get_array_module(gy)
    x, y, scale, gy = (_contiguous(xp, a) for a in (x, y, scale, gy))
    gx = xp.empty_like(gy)
    t = gy.dtype.type
    _launch(_lrn_backward_kernel, gx.size, x, y, scale, gy, gx, (size - 1) // 2, size // 2,
            t(2.0 * alpha * beta / size), t(-beta), t(0))
    return gx


# -- batch normalization -----------------------------------------------------------------------
# Written as NumPy expressions (the reference on CuPy arrays), batch norm was ~23 small launches
# per layer and training step, each a pass over the activations; here it is four: the
# statistics, the forward (with the fused ReLU), and the backward's sums and its gx.
# (N, C) and (N, C, H, W) are both viewed as (N, C, HW), as in the Numba CPU kernels.
#
# A per-channel sum is one block per channel: each thread adds a strided share of the channel's
# N*HW values (consecutive threads read consecutive addresses), then the block's partial sums
# are added pairwise in shared memory. The sums are float64, as in the Numba CPU kernels, so the
# one-pass variance E[x^2] - mean^2 loses nothing measurable; every value stored is x's dtype.
# One block per channel leaves most of a big GPU idle (32 channels: 32 blocks), so the blocks
# are large, for many loads in flight per channel. A GPU has 64K registers per multiprocessor,
# so a 512-thread block fits if each thread needs at most 128: the kernels below are compiled
# with that cap (they needed 56-94 when compiled for sm_90), and 1024 threads would halve it.
# REDUCE_THREADS sizes their shared arrays when they are compiled and their blocks when they
# are launched: on a GPU it must not change once they have run (under the simulator
# tests/conftest.py changes it before any kernel runs, to simulate small blocks).
REDUCE_THREADS = 512  # threads per block of a per-channel sum (a power of two)
# (the simulator's jit knows no max_registers)
_REDUCTION_OPTIONS = {} if SIMULATOR else {"max_registers": 128}


def _as_nchw(xp, a):
    a = _contiguous(xp, a)
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))  # (not -1: N may be 0)


@cuda.jit(device=True)
def _block_sum2(a, b, partial):
    # (sum of a, sum of b) over the block's threads, returned to every thread. partial: a
    # (2, blockDim) float64 shared array; blockDim must be a power of two.
    t = cuda.threadIdx.x
    partial[0, t] = a
    partial[1, t] = b
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if t < step:
            partial[0, t] += partial[0, t + step]
            partial[1, t] += partial[1, t + step]
        cuda.syncthreads()
        step //= 2
    a, b = partial[0, 0], partial[1, 0]
    cuda.syncthreads()  # every thread has read the result before partial is written again
    return a, b


@cuda.jit(device=True)
def _batch_norm_affine(gamma, beta, mean, inv_std, ci):
    # y = a*x + d, a = gamma*inv_std, d = beta - a*mean (as in the Numba CPU kernels). The
    # forward and the backward's recomputed ReLU mask both take a and d from here.
    a = gamma[ci] * inv_std
    return a, beta[ci] - a * mean[ci]


@cuda.jit(cache=CACHE, **_REDUCTION_OPTIONS)
def _batch_norm_stats_kernel(x, mean, var):
    n, c, hw = x.shape
    m = n * hw
    partial = cuda.shared.array((2, REDUCE_THREADS), np.float64)
    for ci in range(cuda.blockIdx.x, c, cuda.gridDim.x):
        total, squares = 0.0, 0.0
        for i in range(cuda.threadIdx.x, m, cuda.blockDim.x):
            v = np.float64(x[i // hw, ci, i % hw])
            total += v
            squares += v * v
        total, squares = _block_sum2(total, squares, partial)
        if cuda.threadIdx.x == 0:
            mu = total / m
            mean[ci] = mu
            var[ci] = max(squares / m - mu * mu, 0.0)


def _per_channel_launch(kernel, channels, *args):
    """One block of REDUCE_THREADS per channel (block-stride over channels past MAX_BLOCKS)."""
    _launch_grid(kernel, min(channels, MAX_BLOCKS), REDUCE_THREADS, *args)


def batch_norm_stats(x):
    """Per-channel mean and biased variance of x (N, C) or (N, C, H, W): one launch."""
    xp = get_array_module(x)
    c = x.shape[1]
    mean, var = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
    _per_channel_launch(_batch_norm_stats_kernel, c, _as_nchw(xp, x), mean, var)
    return mean, var


@cuda.jit(cache=CACHE)
def _batch_norm_forward_kernel(x, gamma, beta, mean, var, eps, one, relu, zero, y, inv_std):
    n, c, hw = x.shape
    for idx in range(cuda.grid(1), max(x.size, c), cuda.gridsize(1)):  # (max: a batch of 0)
        if idx < c:
            inv_std[idx] = one / math.sqrt(var[idx] + eps)
        if idx < x.size:
            ci = idx // hw % c
            s = one / math.sqrt(var[ci] + eps)  # the same expression, so the same bits
            a, d = _batch_norm_affine(gamma, beta, mean, s, ci)
            v = a * x[idx // (c * hw), ci, idx % hw] + d
            if relu and v < zero:  # the fused ReLU (a NaN passes, as in relu_forward)
                v = zero
            y[idx // (c * hw), ci, idx % hw] = v


def batch_norm_forward(x, gamma, beta, mean, var, eps, relu=False):
    """y = gamma * xhat + beta, then max(y, 0) if relu; returns y, inv_std. One launch."""
    xp = get_array_module(x)
    x3 = _as_nchw(xp, x)
    t = x.dtype.type
    y, inv_std = xp.empty_like(x3), xp.empty(x.shape[1], dtype=x.dtype)
    _launch(_batch_norm_forward_kernel, max(x3.size, x.shape[1]), x3, gamma, beta,
            mean.astype(x.dtype, copy=False), var.astype(x.dtype, copy=False), t(eps), t(1),
            bool(relu), t(0), y, inv_std)
    return y.reshape(x.shape), inv_std


@cuda.jit(device=True)
def _relu_masked(g, x, a, d, relu, zero):
    # g through the fused ReLU: kept where the forward's a*x + d was > 0
    return zero if relu and not a * x + d > zero else g


@cuda.jit(cache=CACHE, **_REDUCTION_OPTIONS)
def _batch_norm_backward_sums_kernel(gy, x, mean, gamma, beta, inv_std, relu, zero, ggamma, gbeta):
    # gbeta = sum(g), ggamma = sum(g * xhat) per channel, g = gy through the fused ReLU
    n, c, hw = gy.shape
    m = n * hw
    partial = cuda.shared.array((2, REDUCE_THREADS), np.float64)
    for ci in range(cuda.blockIdx.x, c, cuda.gridDim.x):
        s = inv_std[ci]
        a, d = _batch_norm_affine(gamma, beta, mean, s, ci)
        sum_g, sum_g_xhat = 0.0, 0.0
        for i in range(cuda.threadIdx.x, m, cuda.blockDim.x):
            b, t = i // hw, i % hw
            xv = x[b, ci, t]
            g = _relu_masked(gy[b, ci, t], xv, a, d, relu, zero)
            sum_g += np.float64(g)
            sum_g_xhat += np.float64(g) * np.float64((xv - mean[ci]) * s)
        sum_g, sum_g_xhat = _block_sum2(sum_g, sum_g_xhat, partial)
        if cuda.threadIdx.x == 0:
            gbeta[ci] = sum_g
            ggamma[ci] = sum_g_xhat


@cuda.jit(cache=CACHE)
def _batch_norm_backward_kernel(gy, x, mean, gamma, beta, inv_std, ggamma, gbeta, train, inv_m,
                                relu, zero, gx):
    # gx = gamma*inv_std * (g - sum(g)/m - xhat * sum(g*xhat)/m) in training, else gamma*inv_std*g
    n, c, hw = gy.shape
    for idx in range(cuda.grid(1), gy.size, cuda.gridsize(1)):
        b, ci, t = idx // (c * hw), idx // hw % c, idx % hw
        s = inv_std[ci]
        a, d = _batch_norm_affine(gamma, beta, mean, s, ci)
        xv = x[b, ci, t]
        g = _relu_masked(gy[b, ci, t], xv, a, d, relu, zero)
        if train:
            xhat = (xv - mean[ci]) * s
            gx[b, ci, t] = a * (g - gbeta[ci] * inv_m - xhat * (ggamma[ci] * inv_m))
        else:
            gx[b, ci, t] = a * g


def batch_norm_backward(gy, x, mean, gamma, inv_std, train, relu_beta=None):
    """Returns gx, ggamma, gbeta (see numpy_kernels.batch_norm_backward): two launches, the
    per-channel sums and then gx (relu_beta: the forward's beta, when it fused a ReLU)."""
    xp = get_array_module(gy)
    gy3, x3 = _as_nchw(xp, gy), _as_nchw(xp, x)
    c, t = gy.shape[1], gy.dtype.type
    mean = mean.astype(gy.dtype, copy=False)
    relu = relu_beta is not None
    beta = relu_beta if relu else gamma  # (unread without relu; any array of the right type)
    ggamma, gbeta = xp.empty(c, dtype=gy.dtype), xp.empty(c, dtype=gy.dtype)
    gx = xp.empty_like(gy3)
    _per_channel_launch(_batch_norm_backward_sums_kernel, c, gy3, x3, mean, gamma, beta, inv_std,
                        relu, t(0), ggamma, gbeta)
    m = max(gy3.shape[0] * gy3.shape[2], 1)  # (an empty batch: no gx element to compute)
    _launch(_batch_norm_backward_kernel, gy3.size, gy3, x3, mean, gamma, beta, inv_std, ggamma,
            gbeta, bool(train), t(1.0 / m), relu, t(0), gx)
    return gx.reshape(gy.shape), ggamma, gbeta


@cuda.jit(cache=CACHE)
def _batch_norm_running_update_kernel(running_mean, running_var, mean, var, momentum,
                                      keep, bessel):
    for ci in range(cuda.grid(1), mean.size, cuda.gridsize(1)):
        running_mean[ci] = keep * running_mean[ci] + momentum * mean[ci]
        running_var[ci] = keep * running_var[ci] + momentum * (var[ci] * bessel)


def batch_norm_running_update(running_mean, running_var, mean, var, momentum, count):
    """See numpy_kernels.batch_norm_running_update: one launch where its NumPy expressions
    are seven."""
    xp = get_array_module(mean)
    if not (running_mean.flags.c_contiguous and running_var.flags.c_contiguous):
        return _reference.batch_norm_running_update(running_mean, running_var, mean, var,
                                                    momentum, count)
    t = running_mean.dtype.type
    _launch(_batch_norm_running_update_kernel, mean.size, running_mean, running_var,
            _contiguous(xp, mean).astype(running_mean.dtype, copy=False),
            _contiguous(xp, var).astype(running_mean.dtype, copy=False),
            t(momentum), t(1.0 - momentum), t(count / max(count - 1, 1)))


# -- ReLU: forward is one CuPy launch (maximum); the backward, two there, is one here --------------
relu_forward = _reference.relu_forward


@cuda.jit(cache=CACHE)
def _relu_backward_kernel(gy, y, zero, gx):
    for i in range(cuda.grid(1), gx.size, cuda.gridsize(1)):
        gx[i] = gy[i] if y[i] > zero else zero


def relu_backward(gy, y):
    """gx = gy where y > 0, else 0: one launch (gy * (y > 0) is two, and a bool array)."""
    xp = get_array_module(gy)
    gy, y = _contiguous(xp, gy), _contiguous(xp, y)
    gx = xp.empty_like(gy)
    _launch(_relu_backward_kernel, gx.size, gy.reshape(-1), y.reshape(-1), gy.dtype.type(0),
            gx.reshape(-1))
    return gx


# -- softmax cross-entropy ------------------------------------------------------------------------
# (N, K) logits, K = 7: as NumPy expressions on CuPy arrays the loss was ~19 launches forward and
# ~10 backward, each on a few hundred numbers. Here each direction is one launch of one block:
# a thread per row (rows t, t + blockDim, ...), then the block's sums of w_i * loss_i and w_i
# added in shared memory, in float64 as in the Numba CPU kernel.
log_softmax = _reference.log_softmax


@cuda.jit(cache=CACHE, **_REDUCTION_OPTIONS)
def _softmax_cross_entropy_forward_kernel(logits, labels, weights, smoothing_over_k,
                                          one_minus_smoothing, zero, loss, probs):
    n, k = logits.shape
    partial = cuda.shared.array((2, REDUCE_THREADS), np.float64)
    weighted, weight_sum = 0.0, 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        top = logits[i, 0]
        for j in range(1, k):
            top = max(top, logits[i, j])
        total = zero
        for j in range(k):
            total += math.exp(logits[i, j] - top)  # log-sum-exp: exp of values <= 0
        log_total = math.log(total)
        cross_entropy = zero
        for j in range(k):
            log_p = logits[i, j] - top - log_total
            q = smoothing_over_k + (one_minus_smoothing if j == labels[i] else zero)
            cross_entropy -= q * log_p
            probs[i, j] = math.exp(log_p)
        weighted += np.float64(weights[i]) * np.float64(cross_entropy)
        weight_sum += np.float64(weights[i])
    weighted, weight_sum = _block_sum2(weighted, weight_sum, partial)
    if cuda.threadIdx.x == 0:
        loss[0] = weighted / weight_sum


def softmax_cross_entropy_forward(logits, labels, sample_weights, smoothing):
    """Weighted mean cross-entropy, (loss (), probs (N, K)); one launch of one block."""
    xp = get_array_module(logits)
    logits = _contiguous(xp, logits)
    t = logits.dtype.type
    loss, probs = xp.empty(1, dtype=logits.dtype), xp.empty_like(logits)
    _launch_grid(_softmax_cross_entropy_forward_kernel, 1, REDUCE_THREADS, logits,
                 _contiguous(xp, labels), _contiguous(xp, sample_weights).astype(logits.dtype, copy=False),
                 t(smoothing / logits.shape[1]), t(1.0 - smoothing), t(0), loss, probs)
    return loss.reshape(()), probs


@cuda.jit(cache=CACHE, **_REDUCTION_OPTIONS)
def _softmax_cross_entropy_backward_kernel(probs, labels, weights, smoothing_over_k,
                                           one_minus_smoothing, gloss, zero, glogits):
    n, k = probs.shape
    partial = cuda.shared.array((2, REDUCE_THREADS), np.float64)
    weight_sum = 0.0
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        weight_sum += np.float64(weights[i])
    weight_sum, _ = _block_sum2(weight_sum, 0.0, partial)
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        w = gloss[0] * weights[i] / weight_sum  # (float64, rounded once when stored below)
        for j in range(k):
            q = smoothing_over_k + (one_minus_smoothing if j == labels[i] else zero)
            glogits[i, j] = w * (probs[i, j] - q)


def softmax_cross_entropy_backward(gloss, probs, labels, sample_weights, smoothing):
    """dloss/dlogits = gloss * w_i / sum(w) * (p_i - q_i); one launch of one block."""
    xp = get_array_module(probs)
    probs = _contiguous(xp, probs)
    t = probs.dtype.type
    glogits = xp.empty_like(probs)
    _launch_grid(_softmax_cross_entropy_backward_kernel, 1, REDUCE_THREADS, probs,
                 _contiguous(xp, labels), _contiguous(xp, sample_weights).astype(probs.dtype, copy=False),
                 t(smoothing / probs.shape[1]), t(1.0 - smoothing),
                 xp.asarray(gloss, dtype=probs.dtype).reshape(1), t(0), glogits)
    return glogits


# -- dropout -----------------------------------------------------------------------------------
@cuda.jit(cache=CACHE)
def _dropout_mask_kernel(u, mask, p, keep_scale, zero):
    for i in range(cuda.grid(1), mask.size, cuda.gridsize(1)):
        mask[i] = keep_scale if u[i] >= p else zero


def dropout_mask(shape, p, dtype, like):
    """Inverted-dropout mask: 0 with probability p, else 1/(1-p). Uniforms from nnlite.random."""
    xp = get_array_module(like)
    dtype = np.dtype(dtype)
    u = nnrandom.uniform(shape, like).reshape(-1)
    mask = xp.empty(u.size, dtype=dtype)
    _launch(_dropout_mask_kernel, mask.size, u, mask, u.dtype.type(p),
            dtype.type(1.0 / (1.0 - p)), dtype.type(0))
    return mask.reshape(shape)


# -- optimizer updates (in place, one launch per parameter) ------------------------------------
@cuda.jit(cache=CACHE)
def _sgd_kernel(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = grad[i]
        if weight_decay != 0:
            g += weight_decay * param[i]
        v = momentum * velocity[i] + g
        velocity[i] = v
        if nesterov:
            param[i] -= lr * (g + momentum * v)
        else:
            param[i] -= lr * v


def _flat_views(*arrays):
    """1-D views of the arrays updated in place, or None if one is not contiguous (then a
    reshape would copy and the update would be lost)."""
    if not all(a.flags.c_contiguous for a in arrays):
        return None
    return [a.reshape(-1) for a in arrays]


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """Momentum SGD, in place; see numpy_kernels.sgd_update."""
    xp = get_array_module(param)
    views = _flat_views(param, velocity)
    if views is None:
        return _reference.sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov)
    t = param.dtype.type
    grad = _contiguous(xp, grad).reshape(-1)
    _launch(_sgd_kernel, param.size, views[0], grad, views[1], t(lr), t(momentum),
            t(weight_decay), bool(nesterov))


@cuda.jit(cache=CACHE)
def _adam_kernel(param, grad, m, v, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                 weight_decay, m_hat_scale, v_hat_scale):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = grad[i]
        if weight_decay != 0:
            g += weight_decay * param[i]
        mi = beta1 * m[i] + one_minus_beta1 * g
        vi = beta2 * v[i] + one_minus_beta2 * g * g
        m[i] = mi
        v[i] = vi
        param[i] -= lr * (mi * m_hat_scale) / (math.sqrt(vi * v_hat_scale) + eps)


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """Adam with bias correction, in place; see numpy_kernels.adam_update."""
    xp = get_array_module(param)
    views = _flat_views(param, m, v)
    if views is None:
        return _reference.adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step)
    t = param.dtype.type
    grad = _contiguous(xp, grad).reshape(-1)
    _launch(_adam_kernel, param.size, views[0], grad, views[1], views[2], t(lr), t(beta1),
            t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(eps), t(weight_decay),
            t(1.0 / (1.0 - beta1**step)), t(1.0 / (1.0 - beta2**step)))


# -- grouped and depthwise convolution -----------------------------------------------------------
# Depthwise (one input channel a group): three direct kernels, as in the Numba CPU backend
# (a 9-weight filter gains nothing from im2col + GEMM). Other group counts run the dense
# convolution above group by group (numpy_kernels._per_group_*), one cuBLAS GEMM a group.
@cuda.jit(cache=CACHE)
def _depthwise_forward_kernel(x, W, y, sh, sw, pt, pl, zero):
    # one thread per output element: y[b, o, i, j] = sum_{u,v} W[o, 0, u, v] * x[b, o // M, ...]
    n, c, h, w = x.shape
    oc, _, kh, kw = W.shape
    _, _, oh, ow = y.shape
    m = oc // c
    for idx in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        j, r = idx % ow, idx // ow
        i, r = r % oh, r // oh
        o, b = r % oc, r // oc
        acc = zero
        for u in range(kh):
            hy = i * sh + u - pt
            if 0 <= hy < h:
                for v in range(kw):
                    wz = j * sw + v - pl
                    if 0 <= wz < w:
                        acc += W[o, 0, u, v] * x[b, o // m, hy, wz]
        y[b, o, i, j] = acc


@cuda.jit(cache=CACHE)
def _depthwise_grad_input_kernel(gy, W, gx, sh, sw, pt, pl, zero):
    # one thread per input pixel, a GATHER (no atomics): pixel (r, s) was read by output
    # (i, j) at tap (u, v) when r = i*SH + u - PT and s = j*SW + v - PL.
    n, c, h, w = gx.shape
    oc, _, kh, kw = W.shape
    _, _, oh, ow = gy.shape
    m = oc // c
    for idx in range(cuda.grid(1), gx.size, cuda.gridsize(1)):
        s, rest = idx % w, idx // w
        r, rest = rest % h, rest // h
        ci, b = rest % c, rest // c
        acc = zero
        for o in range(ci * m, (ci + 1) * m):
            for u in range(kh):
                a = r + pt - u
                if a >= 0 and a % sh == 0 and a // sh < oh:
                    for v in range(kw):
                        e = s + pl - v
                        if e >= 0 and e % sw == 0 and e // sw < ow:
                            acc += W[o, 0, u, v] * gy[b, o, a // sh, e // sw]
        gx[b, ci, r, s] = acc


@cuda.jit(cache=CACHE, **_REDUCTION_OPTIONS)
def _depthwise_grad_weight_kernel(gy, x, gW, sh, sw, pt, pl):
    # one block per weight (o, u, v): its threads share the batch's outputs, sum in float64
    # and add up their partial sums in shared memory (as the batch-norm sums do).
    n, c, h, w = x.shape
    oc, _, kh, kw = gW.shape
    _, _, oh, ow = gy.shape
    m, p = oc // c, n * oh * ow
    partial = cuda.shared.array((2, REDUCE_THREADS), np.float64)
    for k in range(cuda.blockIdx.x, gW.size, cuda.gridDim.x):
        v, rest = k % kw, k // kw
        u, o = rest % kh, rest // kh
        total = 0.0
        for q in range(cuda.threadIdx.x, p, cuda.blockDim.x):
            j, rest = q % ow, q // ow
            i, b = rest % oh, rest // oh
            hy, wz = i * sh + u - pt, j * sw + v - pl
            if 0 <= hy < h and 0 <= wz < w:
                total += np.float64(gy[b, o, i, j]) * np.float64(x[b, o // m, hy, wz])
        total, _ = _block_sum2(total, 0.0, partial)
        if cuda.threadIdx.x == 0:
            gW[o, 0, u, v] = total


def grouped_conv2d_forward(x, W, stride, pad, groups):
    """Depthwise: one thread per output; else per group; see numpy_kernels.grouped_conv2d_forward."""
    if groups != x.shape[1]:
        return conv_algorithms.per_group_forward(conv2d_forward, x, W, stride, pad, groups)
    xp = get_array_module(x)
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    (n, c, h, w), (oc, _, kh, kw) = x.shape, W.shape
    x, W = _contiguous(xp, x), _contiguous(xp, W)
    y = xp.empty((n, oc, output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)),
                 dtype=x.dtype)
    _launch(_depthwise_forward_kernel, y.size, x, W, y, sh, sw, pt, pl, x.dtype.type(0))
    return y


def grouped_conv2d_backward(gy, x, W, stride, pad, groups, input_grad=True):
    """Depthwise: a gather for gx, a block per weight for gW; else per group."""
    if groups != x.shape[1]:
        return conv_algorithms.per_group_backward(conv2d_backward, gy, x, W, stride, pad, groups,
                                              input_grad)
    xp = get_array_module(gy)
    (sh, sw), (pt, _, pl, _) = stride, pad
    gy, x, W = _contiguous(xp, gy), _contiguous(xp, x), _contiguous(xp, W)
    gW = xp.empty_like(W)
    _launch_grid(_depthwise_grad_weight_kernel, min(gW.size, MAX_BLOCKS), REDUCE_THREADS,
                 gy, x, gW, sh, sw, pt, pl)
    if not input_grad:
        return None, gW
    gx = xp.empty_like(x)
    _launch(_depthwise_grad_input_kernel, gx.size, gy, W, gx, sh, sw, pt, pl, x.dtype.type(0))
    return gx, gW
