"""Convolution algorithms written once against `xp`, that the kernel modules build on.

Each takes the backend's own pieces as arguments (its im2col, col2im and output_size, or its
dense convolution), so the NumPy specification and the CUDA backend run the same steps with
their own kernels (the GEMM is then NumPy's BLAS or cuBLAS), and the Numba backend groups its
own dense convolution the same way.

    gemm_conv2d_forward / _backward   a convolution as im2col + ONE GEMM over the whole batch
    per_group_forward / _backward     a grouped convolution as one dense convolution a group
"""

from nnlite.device import get_array_module


def gemm_conv2d_forward(im2col, output_size, x, W, stride, pad):
    """conv2d_forward as im2col + ONE GEMM, with the backend's own im2col and output_size."""
    xp = get_array_module(x)
    n, oc, kh, kw = x.shape[0], W.shape[0], W.shape[2], W.shape[3]
    col = im2col(x, kh, kw, stride, pad)  # (K, N*P), K = C*KH*KW
    oh = output_size(x.shape[2], kh, stride[0], pad[0], pad[1])
    ow = output_size(x.shape[3], kw, stride[1], pad[2], pad[3])
    y = W.reshape(oc, -1) @ col  # (OC, K) @ (K, N*P) -> (OC, N*P)
    return xp.ascontiguousarray(y.reshape(oc, n, oh, ow).transpose(1, 0, 2, 3))


def gemm_conv2d_backward(im2col, col2im, gy, x, W, stride, pad, input_grad):
    """conv2d_backward: the two GEMMs, with the backend's own im2col and col2im."""
    oc, kh, kw = W.shape[0], W.shape[2], W.shape[3]
    col = im2col(x, kh, kw, stride, pad)
    gy = gy.transpose(1, 0, 2, 3).reshape(oc, -1)  # (OC, N*P), the layout of y above
    gW = (gy @ col.T).reshape(W.shape)  # dW[o, k] = sum_p gy[o, p] col[k, p]
    if not input_grad:
        return None, gW
    gcol = W.reshape(oc, -1).T @ gy  # (K, OC) @ (OC, N*P) -> (K, N*P)
    return col2im(gcol, x.shape, kh, kw, stride, pad), gW


def per_group_forward(conv2d_forward, x, W, stride, pad, groups):
    """grouped_conv2d_forward as `groups` calls of the backend's own dense convolution."""
    xp = get_array_module(x)
    c, oc = x.shape[1] // groups, W.shape[0] // groups
    return xp.concatenate([conv2d_forward(x[:, g * c:(g + 1) * c], W[g * oc:(g + 1) * oc],
                                          stride, pad) for g in range(groups)], axis=1)


def per_group_backward(conv2d_backward, gy, x, W, stride, pad, groups, input_grad):
    """grouped_conv2d_backward, group by group, with the backend's own dense backward."""
    xp = get_array_module(gy)
    c, oc = x.shape[1] // groups, W.shape[0] // groups
    grads = [conv2d_backward(gy[:, g * oc:(g + 1) * oc], x[:, g * c:(g + 1) * c],
                             W[g * oc:(g + 1) * oc], stride, pad, input_grad)
             for g in range(groups)]
    gW = xp.concatenate([gw for _, gw in grads], axis=0)
    if not input_grad:
        return None, gW
    return xp.concatenate([gx for gx, _ in grads], axis=1), gW
