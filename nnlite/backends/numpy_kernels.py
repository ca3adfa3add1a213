"""NumPy kernels: the readable reference, and the specification the other backends follow.

Every function here has a twin with the same name and signature in `numba_kernels.py` and
`cuda_kernels.py`; the parity tests compare them against these. The code is written against
`xp` (NumPy or CuPy, picked from the input), so a kernel that a faster backend does not
override still runs there.

Conventions:
    stride = (stride_h, stride_w)
    pad    = (top, bottom, left, right)   # asymmetric, for TensorFlow's "same"
    col    = (C*KH*KW, N*OH*OW)           # im2col layout: the whole batch side by side, so a
                                          # convolution is ONE large GEMM W(OC, K) @ col(K, N*P),
                                          # the simplest fast form (the Numba backend instead
                                          # runs one cache-sized GEMM per image, in parallel,
                                          # or Winograd F(2x2, 3x3) for 3x3 stride-1 layers).
"""

import numpy as np

from nnlite import random as nnrandom
from nnlite.backends import conv_algorithms
from nnlite.device import get_array_module


def _as_strided(xp, array, shape, strides):
    if xp is np:
        return np.lib.stride_tricks.as_strided(array, shape=shape, strides=strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(array, shape=shape, strides=strides)


def output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    return (size + pad_before + pad_after - kernel) // stride + 1


# -- convolution as a matrix product ---------------------------------------------------------
def im2col(x, kh, kw, stride, pad, fill=0.0):
    """Unfold every KHxKW window of x into a column.

    x (N, C, H, W) -> col (C*KH*KW, N*OH*OW) with
        col[(c*KH + i)*KW + j, (n*OH + oh)*OW + ow] = x_padded[n, c, oh*SH + i, ow*SW + j]
    `fill` is the value of the padding (0 for convolution, -inf for max-pooling).
    """
    xp = get_array_module(x)
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    n, c, h, w = x.shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    padded = xp.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    s_n, s_c, s_h, s_w = padded.strides
    # A strided view (C, KH, KW, N, OH, OW) of the padded input: no copy until the reshape.
    windows = _as_strided(
        xp, padded, (c, kh, kw, n, oh, ow), (s_c, s_h, s_w, s_n, s_h * sh, s_w * sw)
    )
    return windows.reshape(c * kh * kw, n * oh * ow)


def col2im(col, x_shape, kh, kw, stride, pad):
    """The adjoint of im2col: add every column back onto the window it came from.

    col (C*KH*KW, N*OH*OW) -> (N, C, H, W). Overlapping windows add up, which is exactly the
    gradient of im2col (each input pixel receives the gradient of every window it fell in).
    """
    xp = get_array_module(col)
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    n, c, h, w = x_shape
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    col = col.reshape(c, kh, kw, n, oh, ow)
    padded = xp.zeros((n, c, h + pt + pb, w + pl + pr), dtype=col.dtype)
    for i in range(kh):  # a loop over the kernel's KH*KW offsets, not over pixels
        for j in range(kw):
            padded[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] += col[:, i, j].transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(padded[:, :, pt : pt + h, pl : pl + w])


def conv2d_forward(x, W, stride, pad):
    """Convolution (no bias) as im2col + ONE GEMM over the whole batch.

    x (N, C, H, W), W (OC, C, KH, KW) -> y (N, OC, OH, OW), with
        y[n, o, i, j] = sum_{c,u,v} W[o, c, u, v] * x_padded[n, c, i*SH + u, j*SW + v]
    """
    return conv_algorithms.gemm_conv2d_forward(im2col, output_size, x, W, stride, pad)


def conv2d_backward(gy, x, W, stride, pad, input_grad=True):
    """Gradients of conv2d_forward: gy (N, OC, OH, OW) -> gx (N, C, H, W), gW (OC, C, KH, KW).

    input_grad=False skips gx (returned as None): the first layer's input is the image, which
    needs no gradient, and gx is half of the work.
    im2col is run again rather than kept from the forward pass: the col matrix is KH*KW times
    the size of x (170 MB for one layer of the compact net at batch 64), and recomputing it
    costs less than one of the two GEMMs below.
    """
    return conv_algorithms.gemm_conv2d_backward(im2col, col2im, gy, x, W, stride, pad, input_grad)


# -- grouped and depthwise convolution -------------------------------------------------------
def grouped_conv2d_forward(x, W, stride, pad, groups):
    """Grouped convolution: the channels in `groups` slices, each convolved on its own.

    x (N, C, H, W), W (OC, C/G, KH, KW) -> y (N, OC, OH, OW), G = groups: output channels
    g*OC/G .. (g+1)*OC/G see only input channels g*C/G .. (g+1)*C/G,
        y[n, o, i, j] = sum_{c,u,v} W[o, c, u, v] * x_padded[n, g(o)*C/G + c, i*SH + u, j*SW + v]
    with g(o) = o // (OC/G). groups=C is the depthwise convolution of MobileNet and Xception:
    each channel filtered by its own OC/C filters (9 weights each for 3x3), no channel mixing.
    Written here as what it is, G independent convolutions side by side.
    """
    return conv_algorithms.per_group_forward(conv2d_forward, x, W, stride, pad, groups)


def grouped_conv2d_backward(gy, x, W, stride, pad, groups, input_grad=True):
    """Gradients of grouped_conv2d_forward, group by group: gx (N, C, H, W) or None, gW."""
    return conv_algorithms.per_group_backward(conv2d_backward, gy, x, W, stride, pad, groups, input_grad)


# -- pooling ---------------------------------------------------------------------------------
def max_pool_forward(x, kh, kw, stride, pad):
    """Max over each window. x (N, C, H, W) -> y (N, C, OH, OW), argmax (N, C, OH, OW).

    argmax is the winner's position inside its window (0 .. KH*KW-1, row-major); padding is
    -inf so it never wins.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (sh, sw), (pt, pb, pl, pr) = stride, pad
    oh, ow = output_size(h, kh, sh, pt, pb), output_size(w, kw, sw, pl, pr)
    # Treat each channel as its own 1-channel image: col (KH*KW, N*C*OH*OW).
    col = im2col(x.reshape(n * c, 1, h, w), kh, kw, stride, pad, fill=-xp.inf)
    argmax = col.argmax(axis=0)
    y = xp.take_along_axis(col, argmax[None, :], axis=0)
    return y.reshape(n, c, oh, ow), argmax.reshape(n, c, oh, ow)


def max_pool_backward(gy, argmax, x_shape, kh, kw, stride, pad):
    """Route each output gradient to the input pixel that won its window."""
    xp = get_array_module(gy)
    n, c, h, w = x_shape
    positions = xp.arange(kh * kw).reshape(kh * kw, 1)
    winner = positions == argmax.reshape(1, -1)  # (KH*KW, N*C*OH*OW), one-hot per column
    gcol = winner * gy.reshape(1, -1)
    return col2im(gcol, (n * c, 1, h, w), kh, kw, stride, pad).reshape(x_shape)


# -- local response normalization ------------------------------------------------------------
def _channel_window_sum(a, before, after):
    """s[:, c] = a[:, c-before] + ... + a[:, c+after] (zeros beyond the edges).

    A sliding sum over the channel axis: one shifted add per window offset, not a loop
    over channels.
    """
    xp = get_array_module(a)
    c = a.shape[1]
    pad = [(0, 0)] * a.ndim
    pad[1] = (before, after)
    padded = xp.pad(a, pad)
    total = padded[:, 0:c].copy()
    for d in range(1, before + after + 1):
        total += padded[:, d : d + c]
    return total


def lrn_forward(x, size, alpha, beta, k):
    """Local response normalization across channels (PyTorch's LocalResponseNorm).

    scale[c] = k + alpha/size * sum(x[c']^2 for c' in c-size//2 .. c+(size-1)//2)
    y[c]     = x[c] * scale[c]^-beta
    Returns y and scale (saved for backward).
    """
    scale = _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    scale *= alpha / size
    scale += k
    return x * scale ** (-beta), scale


def lrn_backward(gy, x, y, scale, size, alpha, beta, k):
    """dL/dx for LRN.

    dy[c']/dx[c] = [c==c'] scale[c]^-beta - 2*alpha*beta/size * x[c] * y[c'] / scale[c']
    (the second term for every c' whose window holds c). Summing over c' is a window sum
    with the window mirrored: c' runs over c-(size-1)//2 .. c+size//2.
    """
    gathered = _channel_window_sum(gy * y / scale, (size - 1) // 2, size // 2)
    return gy * scale ** (-beta) - (2.0 * alpha * beta / size) * x * gathered


# -- batch normalization ---------------------------------------------------------------------
def _reduce_axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(v, ndim):
    return v.reshape((1, -1) if ndim == 2 else (1, -1, 1, 1))


def batch_norm_stats(x):
    """Per-channel mean and (biased) variance of x (N, C) or (N, C, H, W)."""
    axes = _reduce_axes(x)
    mean = x.mean(axis=axes)
    var = ((x - _per_channel(mean, x.ndim)) ** 2).mean(axis=axes)
    return mean, var


def batch_norm_running_update(running_mean, running_var, mean, var, momentum, count):
    """Move the running statistics towards this batch's, in place (PyTorch's rule):
        running = (1 - momentum) * running + momentum * batch statistic
    with the batch's variance made unbiased first (var * count / (count - 1)), count being
    the N*H*W values each channel's statistics were taken over."""
    unbiased = var * (count / max(count - 1, 1))
    running_mean *= 1.0 - momentum
    running_mean += momentum * mean
    running_var *= 1.0 - momentum
    running_var += momentum * unbiased


def batch_norm_forward(x, gamma, beta, mean, var, eps, relu=False):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta. Returns y and inv_std = 1/sqrt(var + eps).

    relu=True fuses the ReLU that follows batch norm in most CNNs: y = max(that, 0). The
    faster backends then write y in the same pass, where a separate ReLU reads and writes
    the whole activation once more (and, on the GPU, costs one more launch).
    xhat = (x - mean) * inv_std is not returned: the backward pass recomputes it from x,
    which the graph keeps anyway, instead of a second array of x's size being kept.
    """
    inv_std = 1.0 / (var + eps) ** 0.5
    xhat = (x - _per_channel(mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    y = _per_channel(gamma, x.ndim) * xhat + _per_channel(beta, x.ndim)
    if relu:
        y = relu_forward(y)
    return y, inv_std


def batch_norm_backward(gy, x, mean, gamma, inv_std, train, relu_beta=None):
    """Gradients of batch norm. Returns gx, ggamma, gbeta.

    With xhat = (x - mean) * inv_std: in training mean and var depend on x, which gives the
    classic
        gx = gamma * inv_std / m * (m*gy - sum(gy) - xhat * sum(gy * xhat))
    over the m = N*H*W values of a channel; in eval they are constants: gx = gamma*inv_std*gy.
    relu_beta: the forward's beta when it fused a ReLU (relu=True). The ReLU's gradient comes
    first: gy is kept only where gamma * xhat + beta > 0, recomputed from x by the forward's
    own formula (so the same bits), where a separate ReLU would have kept its output.
    """
    axes = _reduce_axes(gy)
    xhat = (x - _per_channel(mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    if relu_beta is not None:
        y = _per_channel(gamma, x.ndim) * xhat + _per_channel(relu_beta, x.ndim)
        gy = relu_backward(gy, y)
    gbeta = gy.sum(axis=axes)
    ggamma = (gy * xhat).sum(axis=axes)
    scale = _per_channel(gamma * inv_std, gy.ndim)
    if not train:
        return gy * scale, ggamma, gbeta
    m = gy.size // gy.shape[1]
    gx = scale / m * (
        m * gy - _per_channel(gbeta, gy.ndim) - xhat * _per_channel(ggamma, gy.ndim)
    )
    return gx, ggamma, gbeta


# -- ReLU ------------------------------------------------------------------------------------
def relu_forward(x):
    """y = max(x, 0)."""
    xp = get_array_module(x)
    return xp.maximum(x, 0)


def relu_backward(gy, y):
    """gx = gy where y > 0, else 0 (y > 0 exactly where x > 0, so y is all that is saved)."""
    return gy * (y > 0)


# -- softmax cross-entropy -------------------------------------------------------------------
def log_softmax(x):
    """log(softmax(x)) along axis 1, stable: subtract the row max before exp (log-sum-exp)."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def _targets(labels, num_classes, smoothing, dtype):
    """One-hot targets, smoothed: (1 - smoothing) on the label plus smoothing / K everywhere."""
    xp = get_array_module(labels)
    onehot = (xp.arange(num_classes)[None, :] == labels[:, None]).astype(dtype)
    return onehot * (1.0 - smoothing) + smoothing / num_classes


def softmax_cross_entropy_forward(logits, labels, sample_weights, smoothing):
    """Weighted mean cross-entropy. Returns (loss (), probs (N, K)).

    loss = sum_i w_i * (-sum_k q_ik log p_ik) / sum_i w_i, p = softmax(logits), q = targets.
    """
    logp = log_softmax(logits)
    q = _targets(labels, logits.shape[1], smoothing, logits.dtype)
    per_sample = -(q * logp).sum(axis=1)
    loss = (sample_weights * per_sample).sum() / sample_weights.sum()
    xp = get_array_module(logits)
    return xp.asarray(loss, dtype=logits.dtype), xp.exp(logp)


def softmax_cross_entropy_backward(gloss, probs, labels, sample_weights, smoothing):
    """dloss/dlogits = w_i / sum(w) * (p_i - q_i), times the upstream gradient."""
    q = _targets(labels, probs.shape[1], smoothing, probs.dtype)
    w = (sample_weights / sample_weights.sum())[:, None]
    return (gloss * w * (probs - q)).astype(probs.dtype)


# -- dropout ---------------------------------------------------------------------------------
def dropout_mask(shape, p, dtype, like):
    """Inverted-dropout mask: 0 with probability p, else 1/(1-p), so E[mask] = 1."""
    xp = get_array_module(like)
    keep = nnrandom.uniform(shape, like) >= p
    return keep.astype(dtype) * xp.asarray(1.0 / (1.0 - p), dtype=dtype)


# -- optimizer updates (in place) ------------------------------------------------------------
def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """Momentum SGD, PyTorch's form:
        g = grad + weight_decay * param
        v = momentum * v + g
        param -= lr * (g + momentum * v  if nesterov else  v)
    """
    g = grad + weight_decay * param if weight_decay else grad
    velocity *= momentum
    velocity += g
    param -= lr * (g + momentum * velocity if nesterov else velocity)


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """Adam with bias correction (L2 weight decay added to the gradient, as in PyTorch's Adam)."""
    xp = get_array_module(param)
    g = grad + weight_decay * param if weight_decay else grad
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * g * g
    m_hat_scale = 1.0 / (1.0 - beta1**step)
    v_hat_scale = 1.0 / (1.0 - beta2**step)
    param -= lr * (m * m_hat_scale) / (xp.sqrt(v * v_hat_scale) + eps)
