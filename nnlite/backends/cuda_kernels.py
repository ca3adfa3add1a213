"""CUDA kernels: CuPy arrays in and out, the hot loops as Numba CUDA kernels.

Same names and signatures as `numpy_kernels.py` (the specification). GEMMs are CuPy's
`W @ col`, which is cuBLAS. What is here:

    conv2d_forward/backward      im2col + one cuBLAS GEMM for the whole batch (as NumPy does)
    im2col, col2im               one thread per col element / per input pixel (col2im is a
                                 GATHER: each pixel sums the columns that touch it, so there
                                 are no atomics and the result is deterministic)
    max_pool_forward/backward    one thread per output / per input pixel (backward gathers too)
    lrn_forward/backward         one thread per element, summing its channel window
    dropout_mask                 cuRAND uniforms (nnlite.random) then one fused threshold+scale
    sgd_update, adam_update      one fused elementwise launch per parameter, in place

Batch-norm statistics, ReLU, log-softmax and softmax cross-entropy on (N, 7) logits gain
nothing from a custom kernel: they are the `xp` code of numpy_kernels, run on CuPy's reductions.

Every kernel is one 1-D grid of 256-thread blocks with a grid-stride loop, and is
dtype-generic: Numba compiles one specialization per dtype (float32, float64).

Streams: a kernel is launched on CuPy's current stream (normally the legacy default stream,
which Numba also uses by default), so it is ordered after the CuPy ops that produced its
inputs and before those that read its outputs, without any host synchronization. For the same
reason CuPy arrays are handed to Numba with `as_cuda_array(a, sync=False)`: the default
(sync=True) would block the host on the producer's stream at every launch.

Under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1, no GPU needed) the same wrappers run the
same kernels on NumPy arrays, which is how the tests check this module on a machine without
a GPU. Outside the simulator a NumPy array is refused: nnlite never copies implicitly.
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

from nnlite.backends import get_array_module
from nnlite.backends import numpy_kernels as _reference
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
    blocks = min(-(-total // THREADS), MAX_BLOCKS)
    args = [_device_view(a) if hasattr(a, "shape") and hasattr(a, "dtype") and
            not isinstance(a, np.generic) else a for a in args]
    stream = _current_stream()
    if stream is None:
        kernel[blocks, THREADS](*args)
    else:
        kernel[blocks, THREADS, stream](*args)


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
@cuda.jit(cache=True)
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


@cuda.jit(cache=True)
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
    return _reference._gemm_conv2d_forward(im2col, x, W, stride, pad)


def conv2d_backward(gy, x, W, stride, pad, input_grad=True):
    """See numpy_kernels.conv2d_backward: im2col again, two cuBLAS GEMMs and col2im."""
    return _reference._gemm_conv2d_backward(im2col, col2im, gy, x, W, stride, pad, input_grad)


# -- pooling -----------------------------------------------------------------------------------
@cuda.jit(cache=True)
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


@cuda.jit(cache=True)
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
@cuda.jit(cache=True)
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


@cuda.jit(cache=True)
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


def lrn_backward(x, y, scale, gy, size, alpha, beta, k):
    """dL/dx for LRN; see numpy_kernels.lrn_backward for the formula."""
    xp = get_array_module(gy)
    x, y, scale, gy = (_contiguous(xp, a) for a in (x, y, scale, gy))
    gx = xp.empty_like(gy)
    t = gy.dtype.type
    _launch(_lrn_backward_kernel, gx.size, x, y, scale, gy, gx, (size - 1) // 2, size // 2,
            t(2.0 * alpha * beta / size), t(-beta), t(0))
    return gx


# -- batch normalization, ReLU, softmax cross-entropy: CuPy's own kernels, no custom one -----------
batch_norm_stats = _reference.batch_norm_stats
batch_norm_forward = _reference.batch_norm_forward
batch_norm_backward = _reference.batch_norm_backward
relu_forward = _reference.relu_forward
relu_backward = _reference.relu_backward
log_softmax = _reference.log_softmax
softmax_cross_entropy_forward = _reference.softmax_cross_entropy_forward
softmax_cross_entropy_backward = _reference.softmax_cross_entropy_backward


# -- dropout -----------------------------------------------------------------------------------
@cuda.jit(cache=True)
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
@cuda.jit(cache=True)
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


@cuda.jit(cache=True)
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
