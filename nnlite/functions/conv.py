"""2-D convolution as im2col + one batched matrix product.

Each KHxKW window of the input is unfolded into a column (im2col); the convolution is then
one matrix product W(OC, C*KH*KW) @ col(C*KH*KW, N*OH*OW), which is exactly what BLAS and
cuBLAS are fastest at.
Backward is two more products and col2im, the adjoint of im2col.
"""

from nnlite.autograd import Function
from nnlite.backends import get_array_module, kernels_for


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def same_padding(size: int, kernel: int, stride: int):
    """TensorFlow's "same": output = ceil(size / stride); an odd total puts the extra pixel
    at the end (bottom/right), as TensorFlow does."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def resolve_padding(pad, in_hw, kernel_hw, stride_hw):
    """pad as an int, a pair (pad_h, pad_w), a 4-tuple (top, bottom, left, right) or "same"
    (or "valid") -> (top, bottom, left, right)."""
    if isinstance(pad, str):
        if pad.lower() == "valid":
            return (0, 0, 0, 0)
        if pad.lower() != "same":
            raise ValueError(f"pad must be an int, a pair, 'same' or 'valid', got {pad!r}")
        top, bottom = same_padding(in_hw[0], kernel_hw[0], stride_hw[0])
        left, right = same_padding(in_hw[1], kernel_hw[1], stride_hw[1])
        return (top, bottom, left, right)
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    if len(pad) == 2:
        return (pad[0], pad[0], pad[1], pad[1])
    if len(pad) == 4:
        return tuple(pad)
    raise ValueError(f"pad must be an int, a pair, a 4-tuple, 'same' or 'valid', got {pad!r}")


class Conv2d(Function):
    """y = conv2d(x, W) + b.

    Shapes: x (N, C, H, W), W (OC, C, KH, KW), b (OC,) -> y (N, OC, OH, OW),
            OH = (H + top + bottom - KH) // SH + 1 (likewise OW).
    Formula: y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] * x_pad[n, c, i*SH + u, j*SW + v]
    Saved for backward: the im2col matrix `col` and W.
    """

    def __init__(self, stride=1, pad=0):
        self.stride, self.pad = _pair(stride), pad

    def forward(self, x, W, b=None):
        kernels = kernels_for(x)
        n, c, h, w = x.shape
        oc, wc, kh, kw = W.shape
        if wc != c:
            raise ValueError(f"conv2d: input has {c} channels, weights expect {wc}")
        self.pad = resolve_padding(self.pad, (h, w), (kh, kw), self.stride)
        self.x_shape = x.shape
        self.col = kernels.im2col(x, kh, kw, self.stride, self.pad)  # (K, N*P)
        self.W = W
        oh = (h + self.pad[0] + self.pad[1] - kh) // self.stride[0] + 1
        ow = (w + self.pad[2] + self.pad[3] - kw) // self.stride[1] + 1
        y = W.reshape(oc, -1) @ self.col  # (OC, K) @ (K, N*P) -> (OC, N*P)
        y = y.reshape(oc, n, oh, ow).transpose(1, 0, 2, 3)  # -> (N, OC, OH, OW)
        if b is not None:
            y = y + b.reshape(1, oc, 1, 1)  # the add also makes y contiguous again
        return get_array_module(y).ascontiguousarray(y)

    def backward(self, gy):
        oc, kh, kw = self.W.shape[0], self.W.shape[2], self.W.shape[3]
        gb = gy.sum(axis=(0, 2, 3))
        gy = gy.transpose(1, 0, 2, 3).reshape(oc, -1)  # (OC, N*P), the layout of y above
        gW = (gy @ self.col.T).reshape(self.W.shape)  # dW[o, k] = sum_p gy[o, p] col[k, p]
        gcol = self.W.reshape(oc, -1).T @ gy  # (K, OC) @ (OC, N*P) -> (K, N*P)
        gx = kernels_for(gy).col2im(gcol, self.x_shape, kh, kw, self.stride, self.pad)
        return gx, gW, gb


def conv2d(x, W, b=None, stride=1, pad=0):
    """2-D convolution (cross-correlation, as in every DL library). See `Conv2d`.

    pad: an int, a pair (pad_h, pad_w), (top, bottom, left, right), "valid", or "same"
    (TensorFlow semantics: output size ceil(H / stride), odd totals padded more at the end).
    """
    function = Conv2d(stride, pad)
    return function(x, W) if b is None else function(x, W, b)
